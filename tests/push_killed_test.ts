// A version push cut short. The replica host (its fanout and its rsync
// daemon, SIGKILL) is killed at each step of a signed version's push that
// leaves a trace on its disk: before any path of the version landed (its
// files still in rsync's `.~tmp~` holding dirs), with the paths in place but
// not the marker and release files, and once the marker landed; and the
// primary's fanout is killed while it pushes (its transfer in flight runs
// out, as when the OOM killer takes fanout alone). What a user asks the
// replica, while it is down and once it is back (its /status, GET /version,
// the tree-version metric, its read module's comment in the module
// listing), never names the new version unless its tree holds every file of
// it byte for byte; once back, the replica converges to the new version,
// its tree byte for byte the primary's (the servers' temp dirs aside), and
// announces it. A replica whose marker is gone (at an unknown version) gets
// the whole tree on the next push. One whose tree diverged under an intact
// marker (a file edited on its disk) stops announcing that version once its
// tree is quiet, and is repaired from its upstream.
//
// The kill points are events on the replica's disk, polled for: the kill
// lands at the event or a little after it, so each kill's state is
// classified (the old version, the new version's paths under the old
// marker, the new version) and the point tried again with the next version
// when the push got past it first. The primary is held (SIGSTOP) while the
// killed replica comes back, so what the replica announces is seen before
// the next push mends it. The states seen are printed.
import assert from "node:assert/strict";
import {
  canConnect,
  diffTrees,
  http,
  type Lab,
  type LabHost,
  type Proc,
  readText,
  rsync,
  sh,
  waitFor,
  withLab,
} from "./_helpers.ts";
import { alive, assertNothingLeft, GitRepo, killServer } from "./_fleet.ts";
import { signingSection } from "./_signed.ts";
import { markerFromComment, parseMarker } from "../lib/version/mod.ts";

/** What each version's push carries besides its small files: enough to take a moment. */
const NOISE_FILES = 16;
const NOISE_BYTES = 128 * 1024;

/** The root file every version changes: its content names the version. */
const A_TXT = (seq: number) => `a of version ${seq}\n`;

/**
 * What version `seq` commits: changed files (small ones, and incompressible
 * ones that take the transfer a moment), a new file, the previous version's
 * new file deleted; the first version adds a file no later one changes. No
 * new directory: rsync makes one as the transfer begins, before any file
 * lands.
 */
function changes(seq: number): Record<string, string | null> {
  const files: Record<string, string | null> = {
    "a.txt": A_TXT(seq),
    [`d0/only${seq}.txt`]: `only in version ${seq}\n`,
  };
  if (seq === 1) files["keep/k.txt"] = "the same in every version\n";
  else files[`d0/only${seq - 1}.txt`] = null;
  for (let i = 0; i < 30; i++) files[`d${i % 3}/f${i}.txt`] = `f${i} of version ${seq}\n`;
  for (let i = 0; i < NOISE_FILES; i++) files[`big/b${i}.txt`] = noise(NOISE_BYTES);
  return files;
}

/** `bytes` of random hex: neither rsync's delta nor git's compression gets it smaller. */
function noise(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes / 2));
  return Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What a tree holds besides its version: the servers' temp dirs (`.fanout-tmp` too, by diffTrees). */
const TEMP = [".~tmp~"];

/** A signed primary and one replica, and the versions published so far. */
interface Rig {
  lab: Lab;
  repo: GitRepo;
  primary: Proc;
  replica: Proc;
  /** The primary's tree and the replica's. */
  src: string;
  tree: string;
  host: LabHost;
  /** The last version published. */
  seq: number;
  /** A copy of the primary's tree at each version published, by seq. */
  trees: Map<number, string>;
}

/** Starts the rig and publishes version 1, landed on the replica. */
async function rig(lab: Lab): Promise<Rig> {
  await lab.fleet({
    replicas: [{ name: "rsync2" }],
    // The debounce gathers a publish's paths and its marker into one push: a version push.
    push: { exclude: "[.git]", reconcile: "1h", debounce: "300ms" },
    extra: await signingSection(lab),
  });
  const replica = await lab.server("replica", "rsync2");
  const primary = await lab.server("primary", "rsync1");
  const r: Rig = {
    lab,
    repo: await GitRepo.create(lab.dir),
    primary,
    replica,
    src: lab.hosts.rsync1.path,
    tree: lab.hosts.rsync2.path,
    host: lab.hosts.rsync2,
    seq: 0,
    trees: new Map(),
  };
  await publish(r);
  await converged(r, "version 1");
  return r;
}

/** Commits and publishes the next version (the real publisher); keeps a copy of its tree. */
async function publish(r: Rig): Promise<void> {
  const seq = ++r.seq;
  await r.repo.commit(changes(seq));
  assert.equal((await r.repo.push()).code, 0);
  const p = await r.lab.run(["--role", "publish", "-c", r.lab.fleetFile, "--repo", r.repo.bare]);
  assert.equal(p.code, 0, `publish of version ${seq}:\n${p.stderr}`);
  const copy = `${r.lab.dir}/versions/${seq}`;
  await Deno.mkdir(`${r.lab.dir}/versions`, { recursive: true });
  const cp = await sh("cp", ["-a", r.src, copy]);
  assert.equal(cp.code, 0, cp.stderr);
  r.trees.set(seq, copy);
}

/** The seq the marker of `tree` names, or null. */
function seqOn(tree: string): number | null {
  try {
    return parseMarker(Deno.readTextFileSync(`${tree}/.fanout-version`))?.seq ?? null;
  } catch {
    return null;
  }
}

/**
 * Where the replica's tree differs from version `seq`, a line a path (""
 * when it holds every file of it).
 */
async function missing(r: Rig, seq: number): Promise<string> {
  const copy = r.trees.get(seq);
  if (!copy) return `no version ${seq} was published`;
  const diff = await diffTrees(copy, r.tree, TEMP);
  const paths = diff.split("\n").filter((l) => /^(diff |Only in |File |Binary files )/.test(l));
  return (paths.length ? paths.join("\n") : diff).replaceAll(copy, `<version ${seq}>`)
    .replaceAll(r.tree, "<replica>");
}

/** The version each way of asking names (its seq, null for none); null when the replica is down. */
async function announced(h: LabHost): Promise<Record<string, number | null> | null> {
  if (!(await canConnect(h.ip, h.health))) return null;
  const base = `http://${h.ip}:${h.health}`;
  const status = JSON.parse((await http(`${base}/status`)).body);
  const version = JSON.parse((await http(`${base}/version`)).body);
  const metric = /^fanout_tree_version_seq (-?\d+)$/m.exec((await http(`${base}/metrics`)).body);
  const list = await rsync([`rsync://${h.ip}:${h.port}/`]);
  assert.equal(list.code, 0, list.stderr);
  const line = list.stdout.split("\n").find((l) => /^plugins\s/.test(l)) ?? "";
  return {
    "/status": status.tree.version?.seq ?? null,
    "GET /version": version.version?.seq ?? null,
    "fanout_tree_version_seq": metric && Number(metric[1]) >= 0 ? Number(metric[1]) : null,
    "the module comment": markerFromComment(line)?.seq ?? null,
  };
}

/**
 * Asserts that whatever version the replica announces, its tree holds every
 * file of it (an older version announced over the newer one's paths fails).
 */
async function assertVouched(r: Rig, what: string): Promise<void> {
  const said = await announced(r.host);
  assert.ok(said, `${what}: the replica answers`);
  const wrong: string[] = [];
  for (const [how, seq] of Object.entries(said)) {
    if (seq === null) continue;
    const diff = await missing(r, seq);
    if (diff) wrong.push(`${how} announces version ${seq}, which it does not fully hold:\n${diff}`);
  }
  assert.deepEqual(wrong, [], `${what}:\n${wrong.join("\n").slice(0, 3000)}`);
}

/**
 * Waits until the replica holds the last version exactly (its tree byte for
 * byte the primary's, the temp dirs aside) and announces it every way.
 */
async function converged(r: Rig, what: string): Promise<void> {
  let diff = "";
  await waitFor(
    `${what}: the replica at version ${r.seq}`,
    async () => {
      diff = seqOn(r.tree) === r.seq ? await diffTrees(r.src, r.tree, TEMP) : "marker";
      return diff === "";
    },
    20_000,
    50,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}\n${diff.slice(0, 1500)}`);
  });
  await waitFor(`${what}: the replica announces version ${r.seq}`, async () => {
    const said = await announced(r.host);
    return said !== null && Object.values(said).every((s) => s === r.seq);
  });
}

/** What a kill left on the replica's disk, with the old version's seq r.seq - 1. */
type State = "old" | "paths" | "new";

/**
 * The replica's tree after a kill: the old version, the new version's paths
 * under the old marker, or the new version. Fails when its marker names the
 * new version over a tree that is not all of it, or names neither version.
 */
async function stateOf(r: Rig, what: string): Promise<State> {
  const on = seqOn(r.tree);
  if (on === r.seq) {
    const diff = await missing(r, r.seq);
    assert.equal(diff, "", `${what}: the marker names version ${on} over:\n${diff.slice(0, 3000)}`);
    return "new";
  }
  assert.equal(on, r.seq - 1, `${what}: the marker names version ${on}`);
  return (await missing(r, r.seq - 1)) === "" ? "old" : "paths";
}

/** A point of a version's push to kill at: when `at` first holds on the replica's disk. */
interface KillPoint {
  name: string;
  at: (r: Rig) => boolean;
  /** What a kill there leaves. */
  leaves: State;
}

const BEFORE: KillPoint = {
  name: "before any path landed (the new files held in .~tmp~)",
  at: (r) => readText(`${r.tree}/.~tmp~/a.txt`) === A_TXT(r.seq),
  leaves: "old",
};
const BETWEEN: KillPoint = {
  name: "the paths in place, not the marker",
  at: (r) => readText(`${r.tree}/a.txt`) === A_TXT(r.seq) && seqOn(r.tree) !== r.seq,
  leaves: "paths",
};
const AFTER: KillPoint = {
  name: "the marker landed",
  at: (r) => seqOn(r.tree) === r.seq,
  leaves: "new",
};

/** How many versions a kill point is tried with before the test gives up on reaching it. */
const TRIES = 5;

/**
 * Publishes the next version, watching the replica's disk for `point` (or the
 * version landing, when the push got past it first) while it is pushed.
 */
async function publishUntil(r: Rig, point: KillPoint): Promise<Promise<void>> {
  const published = publish(r);
  published.catch(() => {}); // awaited by the caller
  await waitFor(
    `${point.name} on the replica, version ${r.seq}`,
    () => point.at(r) || seqOn(r.tree) === r.seq,
    30_000,
    1,
  );
  return published;
}

/**
 * Kills the replica host at `point` of the next version's push, until a
 * kill leaves what the point does: checks it while down, brought back with
 * the primary held, and once the primary goes on. Returns what each kill left.
 */
async function killReplicaAt(r: Rig, point: KillPoint): Promise<string[]> {
  const seen: string[] = [];
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    const published = await publishUntil(r, point);
    await killServer(r.lab, "rsync2", r.replica);
    await published;
    const what = `replica killed at ${point.name}, version ${r.seq}`;
    r.primary.kill("SIGSTOP");
    try {
      const state = await stateOf(r, what);
      seen.push(state);
      const answers = await Promise.all(
        [r.host.health, r.host.port].map((p) => canConnect(r.host.ip, p)),
      );
      assert.deepEqual(answers, [false, false], `${what}: nothing answers while it is down`);
      r.replica = await r.lab.server("replica", "rsync2");
      await assertVouched(r, `${what}, back`);
    } finally {
      r.primary.kill("SIGCONT");
    }
    await converged(r, what);
    if (seen.at(-1) === point.leaves) return seen;
  }
  assert.fail(`${point.name}: never reached in ${TRIES} versions (${seen.join(", ")})`);
}

/** The processes `pid` started (their parent is `pid`). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const stat = /^\d+$/.test(e.name) ? readText(`/proc/${e.name}/stat`) : null;
    const ppid = stat ? Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) : 0;
    if (ppid === pid) out.push(Number(e.name));
  }
  return out;
}

/**
 * Kills the primary's fanout alone (SIGKILL) while it pushes the next
 * version, until a kill lands before the marker went: its transfer in
 * flight runs out and its daemon lives on, until the primary comes back.
 * Returns what each kill left on the replica.
 */
async function killPrimaryMidPush(r: Rig): Promise<string[]> {
  const seen: string[] = [];
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    const published = await publishUntil(r, BEFORE);
    const daemon = Number(readText(`${r.lab.dir}/state/rsync1/rsyncd.pid`));
    const transfers = childrenOf(r.primary.pid).filter((pid) => pid !== daemon);
    r.primary.kill("SIGKILL");
    await r.primary.status();
    const what = `primary killed mid-push, version ${r.seq}`;
    try {
      await published;
      await waitFor(`${what}: its transfers ended`, () => transfers.every((p) => !alive(p)));
      seen.push(await stateOf(r, what));
      // Its tree holds the new paths under the old marker: once quiet, it is refused.
      await waitFor(
        `${what}: the replica announces only what it holds`,
        () => assertVouched(r, `${what}, the replica meanwhile`).then(() => true),
      );
      r.primary = await r.lab.server("primary", "rsync1");
      await converged(r, what);
    } finally {
      for (const pid of transfers) {
        try {
          Deno.kill(-pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    if (seen.at(-1) !== "new") return seen;
  }
  assert.fail(`the primary's push: never killed before its marker in ${TRIES} versions`);
}

Deno.test("push killed: a replica killed before the paths, between paths and marker, or after never announces a version it does not fully hold and converges when back; so after the primary is killed mid-push; a replica at an unknown version gets the whole tree", async () => {
  let left: Lab | null = null;
  await withLab(async (lab) => {
    left = lab;
    const r = await rig(lab);
    const seen: string[] = [];
    for (const point of [BEFORE, BETWEEN, AFTER]) {
      seen.push(`replica killed at ${point.name}: ${(await killReplicaAt(r, point)).join(" -> ")}`);
    }
    seen.push(`primary killed mid-push: ${(await killPrimaryMidPush(r)).join(" -> ")}`);

    // The restarted primary's first whole push is over: it would put the marker back.
    await waitFor("the primary's first push over", async () => {
      const h = r.lab.hosts.rsync1;
      const status = JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body);
      const s = status.replicas.find((x: { name: string }) => x.name === "rsync2");
      return s?.state === "ok" && s?.pending_full === null && s?.last_push !== null &&
        s?.version?.seq === r.seq;
    });
    // The replica's marker goes (an unknown version): the next version goes whole.
    await Deno.remove(`${r.tree}/.fanout-version`);
    await waitFor("the replica announces no version", async () => {
      const said = await announced(r.host);
      return said !== null && Object.values(said).every((s) => s === null);
    });
    // A push of the marker's own events may follow the whole push: count them.
    const wholePushes = () =>
      (r.primary.stderr.match(/msg=pushed [^\n]*replica=rsync2 kind=full/g) ?? []).length;
    const before = wholePushes();
    await publish(r);
    await converged(r, "a replica at an unknown version");
    await waitFor("a whole push recorded", () => wholePushes() > before);
    assert.match(r.primary.stderr, /replica not at the version it acknowledged/);
    console.log(seen.join("\n"));
  });
  // Nothing of the lab outlives it: no fanout, daemon or transfer a kill left.
  await assertNothingLeft(left!);
});

/** Edits a file no later version changes on the replica's disk, under its intact marker. */
async function diverge(r: Rig): Promise<void> {
  await Deno.writeTextFile(`${r.tree}/keep/k.txt`, "edited on the replica\n");
  assert.equal(seqOn(r.tree), r.seq);
}

Deno.test("push killed: a replica whose tree diverged under an intact marker stops announcing that version, and is repaired: it holds the next version exactly", () =>
  withLab(async (lab) => {
    const r = await rig(lab);
    await diverge(r);
    // Its watcher sees the edit; once the tree is quiet the check refuses it.
    await waitFor("the replica announces no version", async () => {
      const said = await announced(r.host);
      return said !== null && Object.values(said).every((s) => s === null);
    });
    await assertVouched(r, "a file edited on the replica");
    // The next version comes (its push names none of the edited paths):
    // repaired from its upstream, the replica holds it exactly.
    await publish(r);
    await converged(r, "the next version");
    assert.equal(await missing(r, r.seq), "", "the replica holds all of the next version");
    assert.match(r.replica.stderr + r.replica.stdout, /repairing the tree from upstream/);
  }));
