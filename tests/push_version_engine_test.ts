// The version push on its own: a push engine in this process, with no
// watcher, pushes a real primary's tree (published by the real publisher)
// to a real replica. Only the marker's event is handed to it, as when every
// other event of a publish still lags in the watcher: what reaches the
// replica with the marker is what the version log says, nothing else.
import assert from "node:assert/strict";
import { assertSameTree, type Lab, type Ran, sleep, waitFor, withLab } from "./_helpers.ts";
import { GitRepo } from "./_fleet.ts";
import { loadFleet } from "../lib/config/mod.ts";
import { formatRsyncUrl, Logger } from "../lib/core/mod.ts";
import { Registry } from "../lib/health/mod.ts";
import { PushEngine } from "../lib/push/mod.ts";
import { parseMarker } from "../lib/version/mod.ts";

interface Rig {
  engine: PushEngine;
  repo: GitRepo;
  primary: string;
  replica: string;
  lines: string[];
  publish(): Promise<Ran>;
  /** Waits until the replica's marker says `seq`. */
  landed(seq: number): Promise<void>;
  /**
   * Publishes the commit made, tells the engine the marker changed, waits
   * for version `seq` on the replica, its tree the primary's; returns the
   * kind of the last push.
   */
  nextVersion(seq: number): Promise<string | undefined>;
}

/**
 * A primary with no downstreams of its own (the publisher's target), a
 * replica, and an engine here pushing the one to the other.
 */
async function rig(
  lab: Lab,
  push: Record<string, string | number> = {},
  engineOpts: {
    landingMaxMs?: number;
    /** A second replica, whose port nothing listens on: down the whole test. */
    withDown?: boolean;
    /** The wall clock the engine reads the temp dir's times against. */
    clock?: () => number;
  } = {},
): Promise<Rig> {
  const { landingMaxMs, withDown, clock } = engineOpts;
  await lab.fleet({ replicas: ["rsync2"], push: { exclude: "[.git]", reconcile: "1h", ...push } });
  const withReplica = lab.fleetFile;
  await lab.server("replica", "rsync2");
  const text = await Deno.readTextFile(withReplica);
  const alone = `${lab.dir}/alone.yaml`;
  await Deno.writeTextFile(alone, text.replace(/^replicas:\n(?: .*\n)+/m, ""));
  lab.fleetFile = alone;
  await lab.server("primary", "rsync1");
  const fleet = await loadFleet(withReplica);
  const r2 = lab.hosts.rsync2;
  const lines: string[] = [];
  const workDir = `${lab.dir}/engine`;
  await Deno.mkdir(workDir, { recursive: true });
  const engine = new PushEngine({
    source: lab.hosts.rsync1.path,
    targets: [{ name: "rsync2", port: r2.port }, ...(withDown ? [{ name: "down", port: 1 }] : [])]
      .map(({ name, port }) => ({
        name,
        url: formatRsyncUrl({
          host: r2.ip,
          port,
          module: fleet.modules.write,
          user: fleet.auth.user,
        }),
      })),
    push: { ...fleet.push, deleteHold: 300 },
    rsync: fleet.rsync,
    address: lab.hosts.rsync1.ip,
    passwordFile: fleet.auth.passwordFile,
    workDir,
    log: new Logger({ sink: (l) => lines.push(l) }),
    registry: new Registry(),
    landingMaxMs,
    clock,
  });
  const repo = await GitRepo.create(lab.dir);
  const replica = r2.path;
  const publish = async () => {
    assert.equal((await repo.push()).code, 0);
    return await lab.run(["--role", "publish", "-c", alone, "--repo", repo.bare]);
  };
  const landed = async (seq: number) => {
    await waitFor(`the replica at seq ${seq}`, async () => {
      const m = await Deno.readTextFile(`${replica}/.fanout-version`).catch(() => "");
      return parseMarker(m)?.seq === seq || null;
    });
    // The engine records the push once its marker's rsync has exited.
    await waitFor(`seq ${seq} acknowledged`, () => engine.status()[0].version?.seq === seq);
  };
  return {
    engine,
    repo,
    primary: lab.hosts.rsync1.path,
    replica,
    lines,
    publish,
    landed,
    nextVersion: async (seq: number) => {
      assert.equal((await publish()).code, 0);
      engine.notify(MARKER_EVENT);
      await landed(seq);
      await assertSameTree(lab.hosts.rsync1.path, replica, [".fanout-dest"]);
      return engine.status()[0].last_push?.kind;
    },
  };
}

const MARKER_EVENT = [{ path: ".fanout-version", deep: false }];

Deno.test("version push alone: odd names, renames, type changes and deleted directories land by the log", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab);
    try {
      const many: Record<string, string> = {};
      for (let i = 0; i < 20; i++) many[`many/m${i}.txt`] = `m${i}\n`;
      await g.repo.commit({
        ...many,
        "plain.txt": "plain\n",
        "sp ace/file one.txt": "1\n",
        "-dash/-f.txt": "d\n",
        "glob/a*b.txt": "a\n",
        "glob/q?.txt": "q\n",
        "glob/[x].txt": "x\n",
        "br[ack]et/in.txt": "in\n",
        "back\\slash/f\\x.txt": "b\n",
        "unicodé/日本.txt": "u\n",
        "dir2file/a.txt": "a\n",
        "dir2file/sub/b.txt": "b\n",
        "file2dir": "f\n",
        "rename/from.txt": "r\n",
        "deldir/x.txt": "x\n",
        "deldir/y/z.txt": "z\n",
        ".env.sample": "A=1\n",
        "trail /x.txt": "t\n",
        " lead/y.txt": "l\n",
        "#hash/;semi.txt": "h\n",
        "+ plus/- minus.txt": "p\n",
      });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      await assertSameTree(g.primary, g.replica, [".fanout-dest"]);

      const changedMany: Record<string, string> = {};
      for (let i = 0; i < 20; i++) changedMany[`many/m${i}.txt`] = `m${i} v2\n`;
      await g.repo.commit(
        {
          ...changedMany,
          "sp ace/file one.txt": "1 v2\n",
          "-dash/-f.txt": "d v2\n",
          "glob/a*b.txt": "a v2\n",
          "glob/q?.txt": null,
          "glob/[x].txt": "x v2\n",
          "br[ack]et": null,
          "back\\slash/f\\x.txt": "b v2\n",
          "unicodé/日本.txt": "u v2\n",
          "dir2file": null,
          "file2dir": null,
          "deldir": null,
          ".env.sample": "A=2\n",
          "trail /x.txt": null,
          " lead/y.txt": "l v2\n",
          " lead/new.txt": "n\n",
          "#hash": null,
          "+ plus/- minus.txt": "p v2\n",
        },
        { renames: [["rename/from.txt", "rename/to.txt"]], executable: ["plain.txt"] },
      );
      await Deno.mkdir(`${g.repo.work}/file2dir`);
      await g.repo.commit({ "dir2file": "now a file\n", "file2dir/c.txt": "c\n" });
      assert.equal(await g.nextVersion(2), "version", g.lines.join(""));
    } finally {
      await g.engine.stop();
    }
  });
});

Deno.test("version push alone: symbolic links, one named with an arrow, land by the log", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab);
    try {
      await g.repo.commit({ "plain.txt": "plain\n", "other.txt": "other\n" }, {
        symlinks: { "ln": "plain.txt" },
      });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      await g.repo.commit({}, { symlinks: { "ln": "other.txt", "a -> b": "plain.txt" } });
      assert.equal(await g.nextVersion(2), "version");
    } finally {
      await g.engine.stop();
    }
  });
});

Deno.test("version push alone: a directory whose event arrived goes whole, even where the log names a file", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab);
    try {
      await g.repo.commit({ "p": "p\n", "q.txt": "q\n" });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      await g.repo.commit({ "p": "p v2\n" });
      assert.equal((await g.publish()).code, 0);
      // Then p becomes a directory on the primary, moved in whole: the
      // watcher sees one new directory (deep), and its marker event.
      await Deno.mkdir(`${lab.dir}/moved`);
      await Deno.writeTextFile(`${lab.dir}/moved/x.txt`, "x\n");
      await Deno.remove(`${g.primary}/p`);
      await Deno.rename(`${lab.dir}/moved`, `${g.primary}/p`);
      g.engine.notify([{ path: "p", deep: true, created: true }, ...MARKER_EVENT]);
      await g.landed(2);
      await assertSameTree(g.primary, g.replica, [".fanout-dest"]);
    } finally {
      await g.engine.stop();
    }
  });
});

Deno.test("a push given a path below what is now a symlink out of the tree sends nothing from outside it", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab);
    try {
      const outside = `${lab.dir}/outside`;
      await Deno.mkdir(outside);
      await Deno.writeTextFile(`${outside}/secret`, "SECRET of the primary host\n");
      await g.repo.commit({ "plain.txt": "plain\n", "link/secret": "nothing\n" });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      // link/secret changes, then link/ becomes a symbolic link out of the
      // tree, before the push of the change: the watcher hands over the
      // change, the new link, and the deletions (which the guard holds).
      await Deno.writeTextFile(`${g.primary}/link/secret`, "changed\n");
      await Deno.remove(`${g.primary}/link`, { recursive: true });
      await Deno.symlink(outside, `${g.primary}/link`);
      g.engine.notify([
        { path: "link/secret", deep: false },
        { path: "link/secret", deep: true, gone: true },
        { path: "link", deep: true, gone: true },
        { path: "link", deep: false, created: true },
      ]);
      await waitFor("a push recorded", () => g.engine.status()[0].last_push?.kind === "scoped");
      // (On this one machine the replica's link would point at the same
      // outside directory: what matters is that it is no copy of it.)
      if ((await Deno.lstat(`${g.replica}/link`)).isDirectory) {
        const got = await Deno.readTextFile(`${g.replica}/link/secret`);
        assert.fail(`a file from outside the primary's tree reached the replica: ${got}`);
      }
    } finally {
      await g.engine.stop();
    }
  });
});

Deno.test("version push alone: a version of more paths than push.max_paths goes whole, as any such change set does", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab, { max_paths: 10 });
    try {
      const files: Record<string, string> = {};
      for (let i = 0; i < 30; i++) files[`d${i % 3}/f${i}.txt`] = `f${i}\n`;
      await g.repo.commit(files);
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      // Every file deleted but one: 29 deletions, each two filter rules that
      // rsync tries on every entry it meets.
      await g.repo.commit(Object.fromEntries(Object.keys(files).slice(1).map((p) => [p, null])));
      assert.equal(await g.nextVersion(2), "full");
    } finally {
      await g.engine.stop();
    }
  });
});

Deno.test("version push alone: past push.max_paths but with nothing to delete, a version goes by its list", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab, { max_paths: 10 });
    try {
      await g.repo.commit({ "a.txt": "a\n" });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      // 30 new files in 3 new directories: a stat each, no rule tried on every entry.
      const files: Record<string, string> = {};
      for (let i = 0; i < 30; i++) files[`d${i % 3}/f${i}.txt`] = `f${i}\n`;
      await g.repo.commit(files);
      assert.equal(await g.nextVersion(2), "version");
    } finally {
      await g.engine.stop();
    }
  });
});

/** Keeps the primary's temp dir written "now" (an entry dated a minute ahead): a transfer landing. */
async function landing(primary: string): Promise<string> {
  const tmp = `${primary}/.fanout-tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  const file = `${tmp}/landing`;
  await Deno.writeTextFile(file, "");
  const ahead = new Date(Date.now() + 60_000);
  await Deno.utime(file, ahead, ahead);
  return file;
}

/** The kinds of the pushes the engine logged, in order. */
function pushKinds(lines: string[]): string[] {
  return lines.filter((l) => l.includes("msg=pushed")).map((l) => /kind=(\w+)/.exec(l)?.[1] ?? "?");
}

Deno.test("version push alone: paths landing through the temp dir wait for their marker, not pushed before it", async () => {
  await withLab((lab) => pathsWaitForTheirMarker(lab, false));
});

Deno.test("version push alone: a replica down does not end the wait for a landing transfer's marker for the others", async () => {
  await withLab((lab) => pathsWaitForTheirMarker(lab, true));
});

Deno.test("version push alone: the version files' own events after their version push send nothing", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab);
    try {
      await g.repo.commit({ "a.txt": "a\n" });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      await g.repo.commit({ "a.txt": "a v2\n" });
      assert.equal(await g.nextVersion(2), "version");
      const before = pushKinds(g.lines).length;
      // The log's and the marker's events, as the watcher hands them over
      // once the version push has begun: nothing is left to send.
      g.engine.notify([{ path: ".fanout-changes", deep: false }, ...MARKER_EVENT]);
      await sleep(1000);
      await Deno.writeTextFile(`${g.primary}/edit.txt`, "edited\n");
      g.engine.notify([{ path: "edit.txt", deep: false }]);
      await waitFor("the edit on the replica", async () => {
        return (await Deno.readTextFile(`${g.replica}/edit.txt`).catch(() => "")) === "edited\n";
      });
      await waitFor("the edit's push recorded", () => pushKinds(g.lines).length > before);
      assert.deepEqual(pushKinds(g.lines).slice(before), ["scoped"], g.lines.join("\n"));
      assert.equal(g.engine.status()[0].version?.seq, 2);
    } finally {
      await g.engine.stop();
    }
  });
});
/** A path's event while a transfer lands waits for its marker: one version push, nothing before it. */
async function pathsWaitForTheirMarker(lab: Lab, withDown: boolean): Promise<void> {
  const g = await rig(lab, {}, { landingMaxMs: 120_000, withDown });
  try {
    await g.repo.commit({ "a.txt": "a\n" });
    assert.equal((await g.publish()).code, 0);
    g.engine.start();
    await g.landed(1);
    const before = pushKinds(g.lines).length;
    await landing(g.primary);
    await Deno.writeTextFile(`${g.primary}/a.txt`, "a v2\n");
    // A path's event arrives while the transfer lands: it waits (a push of
    // it would have run within this second) for the version to follow.
    g.engine.notify([{ path: "a.txt", deep: false }]);
    await sleep(1000);
    await g.repo.commit({ "b.txt": "b\n", "a.txt": "a v2\n" });
    assert.equal((await g.publish()).code, 0);
    g.engine.notify(MARKER_EVENT);
    await g.landed(2);
    await assertSameTree(g.primary, g.replica, [".fanout-dest", ".fanout-tmp"]);
    assert.deepEqual(pushKinds(g.lines).slice(before), ["version"], g.lines.join(""));
  } finally {
    await g.engine.stop();
  }
}

Deno.test("version push alone: a temp dir that stays written holds pushes only for a while", async () => {
  await withLab((lab) => anEditGoesWhileLanding(lab, false));
});

Deno.test("version push alone: a wall clock stepped back while pushes wait for a landing holds them no longer than the wait", async () => {
  await withLab((lab) => anEditGoesWhileLanding(lab, true));
});

/**
 * An edit on the primary with no marker after it, while the temp dir stays
 * written, goes all the same; with `stepped`, the wall clock steps back an
 * hour within the wait (the engine's first look at it after the edit is as
 * it was, every later one an hour behind).
 */
async function anEditGoesWhileLanding(lab: Lab, stepped: boolean): Promise<void> {
  const step = { armed: false, looks: 0 };
  const clock = () => Date.now() - (step.armed && step.looks++ > 0 ? 3_600_000 : 0);
  const g = await rig(lab, {}, { landingMaxMs: 300, clock: stepped ? clock : undefined });
  try {
    await g.repo.commit({ "a.txt": "a\n" });
    assert.equal((await g.publish()).code, 0);
    g.engine.start();
    await g.landed(1);
    await landing(g.primary);
    await Deno.writeTextFile(`${g.primary}/edit.txt`, "edited\n");
    step.armed = true;
    g.engine.notify([{ path: "edit.txt", deep: false }]);
    await waitFor("the edit on the replica", async () => {
      return (await Deno.readTextFile(`${g.replica}/edit.txt`).catch(() => "")) === "edited\n";
    });
    await waitFor(
      "a scoped push recorded",
      () => g.engine.status()[0].last_push?.kind === "scoped",
    );
    if (stepped) assert.ok(step.looks > 1, "the engine looked at the clock again in the wait");
  } finally {
    await g.engine.stop();
  }
}

Deno.test("version push alone: a replica down stays failing while a landing transfer holds its retry back", async () => {
  await withLab(async (lab) => {
    const g = await rig(lab, { retry_min: "100ms", retry_max: "200ms" }, {
      landingMaxMs: 120_000,
      withDown: true,
    });
    try {
      await g.repo.commit({ "a.txt": "a\n" });
      assert.equal((await g.publish()).code, 0);
      g.engine.start();
      await g.landed(1);
      const down = () => g.engine.status().find((s) => s.name === "down")!;
      await waitFor("the down replica failing", () => down().failures > 0);
      await landing(g.primary);
      // Its retry comes due while the landing holds every push back: the
      // retry waits, and the replica is still one whose pushes fail.
      await waitFor("a retry due and held", () => down().next_retry === null);
      await sleep(500);
      const st = down();
      assert.equal(st.next_retry, null, "the retry is held, not run and failed again");
      assert.equal(st.state, "failing", JSON.stringify(st));
    } finally {
      await g.engine.stop();
    }
  });
});
