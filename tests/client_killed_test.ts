// A client SIGKILLed while it applies a new signed version (one that changes,
// adds and deletes files), in place and with --atomic: at points of the run
// that leave distinct traces on disk (the control files fetched, files
// fetched into the staging dir or the new tree with its rsync left running,
// the fetch done, files placed, the manifest, the marker, the new tree named,
// the swap, an old tree pruned, the state dir's record), and once more while
// the next run recovers. After each kill, dest is what a user would find
// acceptable: its marker names the old version and its tree is byte for byte
// the old one, or the same for the new one, or the state dir marks it
// unfinished (`client.dirty`, which makes the next run hash every file). The
// next run, not killed, and trusting a marker when it may (`--verify-every
// 1h`), ends with dest exactly the new version and exit 0, nothing left in
// dest or beside it, and nothing outside dest and the state dir written.
//
// Points whose kills land in a state one of these already leaves (the
// staging dir or the new tree just begun, a directory removed, the dirty
// flag taken down) are not killed at, nor the state dir's record dropped,
// gone too briefly for a poll to see: they would add runs, not states.
//
// The kill points are events on disk, polled for: the kill lands at the
// event or a little after it, so each kill's state is classified and the
// invariant asserted whatever it is; the states seen are printed.
import assert from "node:assert/strict";
import { type Lab, type Proc, readText, sh, sleep } from "./_helpers.ts";
import { LAYOUTS, publish, signedLab, V1, V2, withSigned } from "./_signed.ts";

/** Files each version changes. */
const CHANGED = 20;
/**
 * Files each version adds (and the next one deletes): enough that placing
 * them takes a while, so a kill at its start lands halfway through.
 */
const ADDED = 100;

/**
 * The two versions' content, by number: V1 or V2 of tests/_signed.ts,
 * {@linkcode CHANGED} files more that differ and {@linkcode ADDED} that only
 * one has. Each round publishes the other one under the next seq.
 */
const CONTENT = { 1: content(1), 2: content(2) };

function content(v: 1 | 2): Record<string, string> {
  const files = { ...(v === 1 ? V1 : V2) };
  for (let i = 0; i < Math.max(CHANGED, ADDED); i++) {
    const n = String(i).padStart(3, "0");
    if (i < CHANGED) files[`many/f${n}.txt`] = `file ${n} of version ${v}\n`.repeat(40);
    if (i < ADDED) files[`only${v}/g${n}.txt`] = `only in version ${v}: ${n}\n`;
  }
  return files;
}

/** What dest holds that is not the version's: never compared. */
const DEST_OWN = new Set([".fanout-dest"]);

/**
 * The tree at `root` as a user compares it: each path (symlinks not
 * followed) with its type, mode and bytes or target, in order; fanout's
 * destination marker and the unsigned version log left out.
 */
function treeOf(root: string): string {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      if (!rel && (DEST_OWN.has(name) || name === ".fanout-changes")) continue;
      const full = `${dir}/${name}`;
      const st = Deno.lstatSync(full);
      const mode = (st.mode! & 0o7777).toString(8);
      if (st.isSymlink) out.push(`${path} -> ${Deno.readLinkSync(full)}`);
      else if (st.isDirectory) {
        out.push(`${path}/ ${mode}`);
        walk(full, path);
      } else out.push(`${path} ${mode} ${JSON.stringify(Deno.readTextFileSync(full))}`);
    }
  };
  walk(root, "");
  return out.join("\n");
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function names(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** The directory dest shows: the symlink's target (--atomic), or dest. */
function liveOf(dest: string): string | null {
  try {
    return Deno.realPathSync(dest);
  } catch {
    return null;
  }
}

/** What a kill point's predicate sees: the run's dest, state and the versions it goes between. */
interface Scene {
  dest: string;
  state: string;
  staging: string;
  trees: string;
  /** Version content of the old and the new version (1 or 2). */
  oldV: 1 | 2;
  newV: 1 | 2;
  /** The new version's marker and manifest, as served. */
  marker: string;
  manifest: string;
  /** The tree dest showed, and the trees kept, when the run started. */
  live: string;
  kept: string[];
  /** When the run started (ms since the epoch). */
  since: number;
}

/** A point to kill a run at: when `at` first holds (it may keep state across polls). */
interface KillPoint {
  name: string;
  at: () => (s: Scene) => boolean;
  /** Kill fanout alone: its rsync, mid-fetch, lives on (as after the OOM killer). */
  alone?: boolean;
  /** Kill the next run too, at this point, before a third run completes. */
  then?: KillPoint;
}

/** True once `a` held and `b` holds later. */
function after(a: (s: Scene) => boolean, b: (s: Scene) => boolean): () => (s: Scene) => boolean {
  return () => {
    let seen = false;
    return (s) => (seen ||= a(s)) && b(s);
  };
}

const is = (f: (s: Scene) => boolean) => () => f;
const changedSince = (path: string, s: Scene) => {
  try {
    return Deno.lstatSync(path).mtime!.getTime() >= s.since;
  } catch {
    return false;
  }
};
const controlFetched: KillPoint = {
  name: "the source's control files fetched",
  // By this run: its fetch dir changed since it started.
  at: is((s) =>
    readText(`${s.state}/release-fetch/.fanout-version`) === s.marker &&
    changedSince(`${s.state}/release-fetch`, s)
  ),
};
const applied = (s: Scene) => {
  const a = readText(`${s.state}/release-applied.json`);
  return a !== null && JSON.parse(a).tree === liveOf(s.dest) && liveOf(s.dest) !== null &&
    readText(`${s.dest}/.fanout-version`) === s.marker;
};
const rsyncRunning = (s: Scene) => exists(`${s.state}/client-rsync.pid`);

const IN_PLACE: KillPoint[] = [
  controlFetched,
  {
    name: "files fetched into the staging dir",
    at: is((s) => names(`${s.staging}/many`).length > 0),
    alone: true,
  },
  {
    name: "the fetch done, its files being checked",
    at: after(rsyncRunning, (s) => !rsyncRunning(s)),
  },
  {
    name: "a new directory placed",
    at: is((s) => exists(`${s.dest}/only${s.newV}`)),
    then: controlFetched,
  },
  {
    name: "changed files placed",
    at: is((s) => readText(`${s.dest}/many/f010.txt`) === CONTENT[s.newV]["many/f010.txt"]),
  },
  {
    name: "the new manifest written",
    at: is((s) => readText(`${s.dest}/.fanout-manifest`) === s.manifest),
  },
  {
    name: "the new marker written",
    at: is((s) => readText(`${s.dest}/.fanout-version`) === s.marker),
    then: controlFetched,
  },
  { name: "the state dir's record written", at: is(applied) },
];

const partial = (s: Scene) => names(s.trees).find((n) => n.endsWith(".partial"));
const inPartial = (path: string) => (s: Scene) => {
  const p = partial(s);
  return p !== undefined && exists(`${s.trees}/${p}/${path}`);
};
const newTree = (s: Scene) =>
  names(s.trees).some((n) => !n.endsWith(".partial") && !s.kept.includes(n));

const ATOMIC: KillPoint[] = [
  controlFetched,
  { name: "files fetched into a new tree", at: is(inPartial("many/f000.txt")), alone: true },
  {
    name: "the fetch done, the tree being checked",
    at: after(rsyncRunning, (s) => !rsyncRunning(s)),
    then: controlFetched,
  },
  { name: "the new tree named", at: is(newTree) },
  {
    name: "dest swapped to the new tree",
    at: is((s) => liveOf(s.dest) !== s.live),
    then: controlFetched,
  },
  { name: "an old tree pruned", at: is((s) => s.kept.some((n) => !names(s.trees).includes(n))) },
  { name: "the state dir's record written", at: is(applied) },
];

/** One client of the test: a layout, its dest and state dir, and the points to kill it at. */
interface Lane {
  layout: string;
  flags: string[];
  name: string;
  dest: string;
  state: string;
  staging: string;
  trees: string;
  points: KillPoint[];
  /** What each kill left, in words. */
  seen: string[];
}

/** `<parent>/.<name><suffix>`, a path beside dest. */
function beside(dest: string, suffix: string): string {
  return dest.replace(/\/([^/]+)$/, `/.$1${suffix}`);
}

/**
 * Every path under the lab dir with its type, size and mtime, but the
 * lanes' dests, their staging dirs and trees (beside them), their state
 * dirs and the client's fleet cache: what client runs must not change.
 */
async function outside(lab: Lab, lanes: Lane[]): Promise<string> {
  const skip = [
    ...lanes.flatMap((l) => [l.dest, l.staging, l.trees, `${l.trees}.swap`, l.state]),
    // The client's fleet cache (lib/config/fleet_cache.ts), in the lab's XDG_CACHE_HOME.
    `${lab.dir}/.cache/fanout`,
  ];
  const prune = skip.flatMap((p, i) => [...(i ? ["-o"] : []), "-path", p]);
  const r = await sh("find", [
    lab.dir,
    "(",
    ...prune,
    ")",
    "-prune",
    "-o",
    "-printf",
    "%p %y %s %T@\\n",
  ]);
  assert.equal(r.code, 0, r.stderr);
  // The dests' parent changes as staging dirs and trees come and go.
  const parents = new Set(lanes.map((l) => l.dest.slice(0, l.dest.lastIndexOf("/"))));
  return r.stdout.split("\n").filter((l) => !parents.has(l.slice(0, l.indexOf(" "))))
    .sort().join("\n");
}

/**
 * Polls `at` until it holds, then SIGKILLs `p` and (unless `alone`) the
 * rsync it runs, in a process group of its own; or until `p` exits.
 * Returns whether it was killed.
 */
async function killAt(p: Proc, s: Scene, point: KillPoint): Promise<boolean> {
  const at = point.at();
  while (!p.exited) {
    if (at(s)) {
      p.kill("SIGKILL");
      const rsync = Number(readText(`${s.state}/client-rsync.pid`)?.split("\n")[0]);
      const cmd = rsync > 1 ? readText(`/proc/${rsync}/cmdline`) : null;
      if (!point.alone && cmd?.split("\0")[0].endsWith("rsync")) {
        try {
          Deno.kill(-rsync, "SIGKILL");
        } catch { /* gone */ }
      }
      await p.status();
      return true;
    }
    await sleep(1);
  }
  return false;
}

Deno.test("killed: a client SIGKILLed at any point of applying a signed version leaves dest at the old version, the new one, or marked unfinished; the next run completes it (in place and --atomic)", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    // Each layout's kill points are shared by two clients, and the four run
    // side by side, one version at a time: half the rounds.
    const lanes: Lane[] = LAYOUTS.flatMap(([layout, flags], i) =>
      [0, 1].map((half) => {
        const n = 2 * i + half + 1;
        const dest = `${lab.dir}/apps/plugins${n}`;
        const all = layout === "in place" ? IN_PLACE : ATOMIC;
        return {
          layout,
          flags,
          name: `web${n}`,
          dest,
          state: s.stateDir(`web${n}`),
          staging: beside(dest, ".staging"),
          trees: beside(dest, ".trees"),
          points: all.filter((_, j) => j % 2 === half),
          seen: [],
        };
      })
    );
    const run = async (l: Lane, extra: string[] = []) =>
      lab.spawn(await s.args(l.name, l.dest, [...l.flags, ...extra]));
    let seq = 1;
    let oldV: 1 | 2 = 1;
    await publish(s.src, seq, CONTENT[oldV], s.key);
    let oldTree = treeOf(s.src);
    await Promise.all(lanes.map(async (l) => {
      const p = await run(l);
      assert.deepEqual([(await p.status()).code, p.stderr], [0, ""], `${l.layout}: ${p.stderr}`);
      assert.equal(treeOf(liveOf(l.dest)!), oldTree);
    }));
    const rounds = Math.max(...lanes.map((l) => l.points.length));
    for (let round = 0; round < rounds; round++) {
      const newV: 1 | 2 = oldV === 1 ? 2 : 1;
      await publish(s.src, ++seq, CONTENT[newV], s.key);
      const newTree = treeOf(s.src);
      const marker = Deno.readTextFileSync(`${s.src}/.fanout-version`);
      const manifest = Deno.readTextFileSync(`${s.src}/.fanout-manifest`);
      const world = await outside(lab, lanes);
      await Promise.all(lanes.map(async (l) => {
        const point: KillPoint | undefined = l.points[round];
        let what = `${l.layout}, killed at ${point?.name ?? "no point"}`;
        const verdicts: string[] = [];
        // The run killed at the point, then (for some points) the next run
        // killed as it recovers.
        for (let k: KillPoint | undefined = point; k; k = k.then) {
          if (k !== point) what += `, the next run at ${k.name}`;
          const scene: Scene = {
            dest: l.dest,
            state: l.state,
            staging: l.staging,
            trees: l.trees,
            oldV,
            newV,
            marker,
            manifest,
            live: liveOf(l.dest)!,
            kept: names(l.trees),
            since: Date.now(),
          };
          const p = await run(l);
          const killed = await killAt(p, scene, k);
          if (!killed) assert.equal(p.exited?.code, 0, `${what}: ${p.stderr}`);
          const verdict = classify(what, l, oldTree, newTree, marker);
          verdicts.push(`${killed ? "" : "(not killed) "}${verdict}`);
          assert.notEqual(verdict, "mixed", `${what}: dest passes for a version it does not hold`);
        }
        if (point) {
          const then = point.then ? ` (then ${point.then.name})` : "";
          l.seen.push(`${point.name}${then}: ${verdicts.join(" -> ")}`);
        }
        // The next run completes the new version, trusting the marker where it may.
        const next = await run(l, ["--verify-every", "1h"]);
        const code = (await next.status()).code;
        assert.equal(code, 0, `${what}: the next run: ${next.stderr}`);
        assert.equal(
          treeOf(liveOf(l.dest)!),
          newTree,
          `${what}: the next run leaves dest the new version`,
        );
        assert.ok(!exists(`${l.state}/client.dirty`), `${what}: not marked unfinished`);
        await assertNoLeftovers(what, l);
      }));
      assert.equal(
        await outside(lab, lanes),
        world,
        `round ${round}: nothing outside the dests and the state dirs written`,
      );
      oldV = newV;
      oldTree = newTree;
    }
    for (const [layout] of LAYOUTS) {
      const order = (layout === "in place" ? IN_PLACE : ATOMIC).map((k) => k.name);
      const at = (line: string) => order.findIndex((n) => line.startsWith(n));
      const seen = lanes.filter((l) => l.layout === layout).flatMap((l) => l.seen)
        .sort((a, b) => at(a) - at(b));
      const states = new Set(
        seen.flatMap((line) => line.split(": ")[1].split(" -> "))
          .map((v) => v.replace("(not killed) ", "")),
      );
      console.log(
        `${layout}: ${seen.length} kill points, ${states.size} states (${
          [...states].join("; ")
        }):\n  ${seen.join("\n  ")}`,
      );
    }
  });
});

/**
 * What a user finds in dest: "old" or "new" when its tree (marker, envelope
 * and manifest among it) is byte for byte that version, else "mixed";
 * ", unfinished" when the state dir says so. A tree the state dir vouches
 * for (its record names it) must be the version its marker names.
 */
function classify(
  what: string,
  l: Lane,
  oldTree: string,
  newTree: string,
  newMarker: string,
): string {
  const { dest, state } = l;
  const live = liveOf(dest);
  const tree = live ? treeOf(live) : "";
  const which = tree === oldTree ? "old" : tree === newTree ? "new" : "mixed";
  const unfinished = exists(`${state}/client.dirty`);
  const applied = readText(`${state}/release-applied.json`);
  if (!unfinished && applied !== null && JSON.parse(applied).tree === live) {
    const marker = readText(`${dest}/.fanout-version`);
    assert.notEqual(which, "mixed", `${what}: the state dir vouches for a tree of no version`);
    assert.equal(marker === newMarker, which === "new", `${what}: the marker is not the tree's`);
  }
  return which + (unfinished ? ", unfinished" : "");
}

/** Nothing of a run is left in dest, beside it or in the state dir once a run completed. */
async function assertNoLeftovers(what: string, l: Lane): Promise<void> {
  const { dest, state, staging, trees } = l;
  const live = liveOf(dest)!;
  const odd = await sh("find", [
    `${live}/`,
    "(",
    "-name",
    "*.fanout-tmp",
    "-o",
    "-name",
    ".~tmp~",
    "-o",
    "-name",
    "*.partial",
    ")",
  ]);
  assert.equal(odd.stdout, "", `${what}: temporary files in dest`);
  assert.ok(!exists(staging), `${what}: the staging dir is gone`);
  assert.ok(!exists(`${trees}.swap`), `${what}: no swap link`);
  assert.deepEqual(
    names(trees).filter((n) => n.endsWith(".partial")),
    [],
    `${what}: no half-built tree`,
  );
  // (A state file's `<name>.<pid>.tmp`, which a kill between its write and
  // its rename leaves, is not looked for: the state dir's own business.)
  assert.deepEqual(
    names(state).filter((n) => /^release-staging$|^client-rsync\.pid$/.test(n)),
    [],
    `${what}: no staging dir or rsync pid in the state dir`,
  );
}
