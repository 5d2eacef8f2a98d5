// The whole fleet as a system (see tests/fleet_test.ts): every kind of change
// published by `git push` reaches every server and every client exactly, and
// two pushes at once both go through the hook. A file of its own, named to
// sort after the rest: the suite's two workers then share its last minute
// instead of one of them running the last file alone.
import assert from "node:assert/strict";
import { sleep, waitFor } from "./_helpers.ts";
import { git, hookSaid, markerOf, onOneFleet, smallTree, type Topology } from "./_fleet.ts";

Deno.test("fleet: every git push reaches every server and every client, exactly; two pushes at once both go through the hook", async (ctx) => {
  await onOneFleet(ctx, {}, [
    ["every git push reaches every server and every client, exactly", everyPush],
    [
      "two pushes at once: both publishes go through the hook, every host ends at the newer",
      twoPushes,
    ],
  ]);
});

/** Versions of every kind of change, published by `git push`, reach every host of `t` exactly. */
async function everyPush(t: Topology): Promise<void> {
  // Two clients keep current with --watch from the start (an empty fleet
  // included); the other three run as cron runs them, one of them walking
  // the tree only hourly: between walks both it and the watchers follow
  // the version log the publisher writes.
  await t.startWatchers(["c4", "c5"]);
  t.clientFlags.set("c3", ["--verify-every", "1h"]);

  const v1 = await t.publish({
    ...smallTree(40, "v1"),
    "README.md": "plugins\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "assets/logo.bin": "\x00\x01binary\xff".repeat(3000),
    "old/name.txt": "will be renamed\n",
    "gone/soon.txt": "will be deleted\n",
    "kind": "a file that becomes a directory\n",
  }, { executable: ["bin/run.sh"], symlinks: { "current": "src/m0" } });
  await t.converged(v1);
  const c3Status = async () =>
    JSON.parse(await Deno.readTextFile(`${t.clientState("c3")}/client-status.json`));
  const c3Verified = (await c3Status()).verified_at;

  // Changes.
  const v2 = await t.publish({
    "src/m1/f1.php": "<?php // changed\n",
    "docs/café ünï.txt": "a name rsync prints escaped\n",
    "README.md": "plugins, v2\n",
    "assets/logo.bin": "\x00\x02binary\xfe".repeat(3000),
  });
  await t.converged(v2);

  // Deletes: a file and a whole directory.
  const v3 = await t.publish({ "src/m2/f2.php": null, "gone": null });
  await t.converged(v3);

  // Renames: a file into a new directory, a directory, a symlink retargeted.
  const v4 = await t.publish({}, {
    renames: [["old/name.txt", "new/dir/name.txt"], ["src/m3", "src/moved"]],
    symlinks: { "current": "src/m1" },
  });
  await t.converged(v4);

  // Kinds change: a file becomes a directory, a directory a file; and a same-size
  // change within the second (mtime to the nanosecond tells it apart).
  const v5 = await t.publish({
    "kind": null,
    "kind/inner.txt": "now a directory\n",
    "src/m0/f0.php": "<?php // v1 0\n".replace("v1", "v9"),
  });
  const v6 = await t.publish({ "src/moved": null, "src/moved.php": "<?php // a file now\n" });
  await t.converged(v6);
  assert.notEqual(v5, v6);
  // c3 got every version since v1 by the version log, without a tree walk.
  const c3 = await c3Status();
  assert.deepEqual([c3.mode, c3.verified_at], ["sync", c3Verified]);
  // Every server's copy of a version's marker has the same mtime (its
  // published_at), so a client reaching another server behind the proxy has
  // nothing to do. (A marker with each server's own mtime would be re-sent
  // on every run, and the tree walked a second time.)
  for (let i = 0; i < 3; i++) {
    const r = await t.runClient("c1");
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(await Deno.readTextFile(`${t.clientState("c1")}/client-status.json`));
    assert.deepEqual([st.mode, st.drift], ["verify", 0], `run ${i}: ${JSON.stringify(st)}`);
  }

  for (const name of [...t.servers, ...t.clients]) {
    const mode = (await Deno.stat(`${t.treeOf(name)}/bin/run.sh`)).mode! & 0o777;
    assert.equal(
      mode & 0o111,
      0o111,
      `${name}: bin/run.sh keeps its exec bits (${mode.toString(8)})`,
    );
    assert.equal(await Deno.readLink(`${t.treeOf(name)}/current`), "src/m1", name);
  }
  // The relay reports its downstream, the primary its replicas.
  const relay = await t.status("rsync3");
  assert.deepEqual(relay.replicas.map((r) => r.name), ["rsync4"]);
  const primary = await t.status("rsync1");
  assert.deepEqual(primary.replicas.map((r) => r.name).sort(), ["rsync2", "rsync3"]);
}

/**
 * Two developers push at once, twice: both publishes go through the hook, and
 * every host of `t` ends at the newer.
 */
async function twoPushes(t: Topology): Promise<void> {
  const dev2 = await t.repo.another("dev2");
  for (let round = 0; round < 2; round++) {
    // dev1 pushes A; dev2, who has A, pushes B on top while A's hook is publishing.
    await git(t.repo.work, "pull", "-q", "--ff-only", "origin", "main");
    const a = await t.repo.commit({
      [`round${round}/a.txt`]: "from dev1\n",
      "src/m0/f0.php": `a${round}\n`,
    });
    await git(dev2.work, "pull", "-q", "--ff-only", t.repo.work, "main");
    const b = await dev2.commit({
      [`round${round}/b.txt`]: "from dev2\n",
      "src/m1/f1.php": `b${round}\n`,
    });
    const pushA = t.repo.push();
    await waitFor(
      "main at A in the bare repository",
      async () => {
        return (await git(t.repo.bare, "rev-parse", "main")) === a;
      },
      10_000,
      5,
    );
    // Round 0: B lands before A's hook resolves main; round 1: while A's publish runs.
    if (round === 1) await sleep(250);
    const pushB = dev2.push();
    const [ra, rb] = await Promise.all([pushA, pushB]);
    for (const [r, who] of [[ra, "A"], [rb, "B"]] as const) {
      assert.equal(r.code, 0, `push ${who}: ${r.stderr}`);
      const said = hookSaid(r);
      assert.equal(said.length, 1, `push ${who}: one line:\n${r.stderr}`);
      assert.match(
        said[0],
        /^(published|already published:) seq \d+ \(\w{8} main\)/,
        `push ${who}`,
      );
    }
    await t.converged(b);
    const m = await markerOf(t.lab.hosts.rsync1.path);
    assert.equal(m?.commit, b);
  }
}
