// The primary's guards against losing the fleet's files, end to end: real
// daemons on loopback aliases, real files; what is asserted is what is left
// on the replicas, the health answers and the watcher's mode.
import assert from "node:assert/strict";
import {
  canLowerInotify,
  converged,
  holding,
  http,
  type Lab,
  primaryWithWatches,
  sh,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";

async function status(lab: Lab) {
  const h = lab.hosts.rsync1;
  return JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body);
}

function healthz(lab: Lab) {
  const h = lab.hosts.rsync1;
  return http(`http://${h.ip}:${h.health}/healthz`);
}

/** `n` files `d<i % 10>/f<i>.txt`, each holding its own name. */
function files(n: number, from = 0): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = from; i < from + n; i++) out[`d${i % 10}/f${i}.txt`] = `f${i}\n`;
  return out;
}

function marker(seq: number): string {
  return JSON.stringify({
    seq,
    commit: "0123456789abcdef0123456789abcdef01234567",
    ref: "main",
    published_at: new Date().toISOString(),
  }) + "\n";
}

Deno.test("primary guard: rm -rf tree/* leaves the replicas whole; a publish, the flag lift it; a small deletion goes", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h", delete_hold: "300ms" } });
    const src = lab.hosts.rsync1.path;
    const all = files(60);
    await writeTree(src, { ...all, ".fanout-changes": "{}\n", ".fanout-version": marker(1) });
    await lab.server("replica", "rsync2");
    let primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    const replica = lab.hosts.rsync2.path;

    // Everything but fanout's own dotfiles goes.
    assert.equal((await sh("sh", ["-c", `rm -rf ${src}/*`])).code, 0);
    await primary.waitFor(/msg="mass deletion suspected: deletions held, not pushed"/);
    const h = await healthz(lab);
    assert.equal(h.status, 503);
    assert.match(
      h.body,
      /^mass deletion suspected, deletions held \(\d+ of \d+ entries: more than push\.max_delete_percent 50%/,
    );
    assert.match(h.body, /publish, or restart with --allow-mass-delete/);
    assert.equal((await status(lab)).push_guard.state, "blocked");
    await sleep(1000); // several holds: nothing may leave
    assert.equal(holding(replica, all), 60, "the replica keeps every file");

    // A publish (new files, then a new marker) lifts it: the replica follows the tree.
    const published = files(40, 100);
    await writeTree(src, published);
    await Deno.writeTextFile(`${src}/.fanout-version`, marker(2));
    await converged(lab, ["rsync2"]);
    await waitFor("healthy", async () => (await healthz(lab)).status === 200);
    assert.equal(holding(replica, all), 0);

    // A small deletion goes as usual.
    await Deno.remove(`${src}/d0/f100.txt`);
    await Deno.remove(`${src}/d1/f101.txt`);
    await converged(lab, ["rsync2"]);

    // Most of the tree going is held; a restart with --allow-mass-delete lets it go.
    for (let i = 110; i < 140; i++) await Deno.remove(`${src}/d${i % 10}/f${i}.txt`);
    await waitFor("blocked", async () => (await status(lab)).push_guard.state === "blocked");
    assert.equal((await healthz(lab)).status, 503);
    assert.equal(holding(replica, files(30, 110)), 30, "nothing deleted on the replica");
    await primary.stop();
    primary = await lab.server("primary", "rsync1", ["--allow-mass-delete"]);
    await converged(lab, ["rsync2"]);
    await waitFor("healthy", async () => (await healthz(lab)).status === 200);
  });
});

Deno.test("primary guard: a slow rm at a steady rate is caught before the replicas lose more than max_delete", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: ["rsync2"],
      push: { reconcile: "1h", max_delete: 100, delete_hold: "500ms" },
    });
    const src = lab.hosts.rsync1.path;
    const all = files(1000);
    await writeTree(src, all);
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    // 20 files every 50 ms (400 a second), as an rm -rf walking a tree does.
    const paths = Object.keys(all);
    for (let i = 0; i < paths.length; i += 20) {
      for (const p of paths.slice(i, i + 20)) await Deno.remove(`${src}/${p}`);
      await sleep(50);
    }
    await primary.waitFor(/msg="mass deletion suspected/);
    await sleep(1500); // past the hold and more: the held deletions stay held
    const kept = holding(lab.hosts.rsync2.path, all);
    assert.ok(kept >= 900, `the replica kept ${kept} of 1000 files`);
    assert.equal((await healthz(lab)).status, 503);
    // New files still go while deletions are held.
    await writeTree(src, { "new.txt": "new\n" });
    await waitFor(
      "new.txt on the replica",
      () => holding(lab.hosts.rsync2.path, { "new.txt": "new\n" }) === 1,
    );
  }, { tmpfs: true });
});

Deno.test("primary guard: a fresh primary waits for its first publish, without an error; sparse files stay sparse", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    await primary.waitFor(/msg="not pushing yet" .*waiting for the first publish/);
    assert.doesNotMatch(primary.stderr, /level=error/);
    const h = await healthz(lab);
    assert.equal(h.status, 503);
    assert.match(h.body, /is empty: waiting for the first publish/);
    // The first publish brings a sparse file: 64 MB long, a few bytes of data.
    const sparse = `${lab.hosts.rsync1.path}/disk.img`;
    const f = await Deno.open(sparse, { create: true, write: true });
    await f.truncate(64 << 20);
    await f.seek(32 << 20, Deno.SeekMode.Start);
    await f.write(new TextEncoder().encode("data"));
    f.close();
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "a\n", ".fanout-version": marker(1) });
    await converged(lab, ["rsync2"]);
    await waitFor("healthy", async () => (await healthz(lab)).status === 200);
    const copy = await Deno.stat(`${lab.hosts.rsync2.path}/disk.img`);
    assert.equal(copy.size, 64 << 20);
    assert.ok(copy.blocks! * 512 < 1 << 20, `the copy stays sparse (${copy.blocks! * 512} bytes)`);
  });
});

Deno.test("primary guard: the watcher stays on events through an rm -rf of a big subtree", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: ["rsync2"],
      push: { reconcile: "1h", max_delete: 100_000, max_delete_percent: 100, delete_hold: "200ms" },
    });
    const src = lab.hosts.rsync1.path;
    // 1,200 directories: 12 × 100, a file in each.
    const tree: Record<string, string> = { "keep.txt": "keep\n" };
    for (let i = 0; i < 12; i++) {
      for (let j = 0; j < 100; j++) tree[`big/${i}/${j}/x.txt`] = `${i}/${j}\n`;
    }
    await writeTree(src, tree);
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"], 30_000);
    // In pieces with pauses, so the storm's re-walks run while directories vanish.
    for (let i = 0; i < 12; i++) {
      await Deno.remove(`${src}/big/${i}`, { recursive: true });
      if (i % 2 === 1) await sleep(280);
    }
    await Deno.remove(`${src}/big`, { recursive: true });
    await waitFor("events mode", async () => (await status(lab)).watch.mode === "events");
    await converged(lab, ["rsync2"], 30_000);
    await writeTree(src, { "after.txt": "after\n" });
    await converged(lab, ["rsync2"]);
    assert.equal((await status(lab)).watch.mode, "events");
    assert.equal((await healthz(lab)).status, 200);
    assert.doesNotMatch(primary.stderr, /falling back to periodic full pushes/);
  }, { tmpfs: true });
});

Deno.test("primary guard: /healthz says degraded while polling, and the watcher comes back", async () => {
  // A user namespace has its own inotify limits: set them tiny there, raise them later.
  if (!(await canLowerInotify())) return;
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { poll_interval: "300ms" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a/1.txt": "1\n", "b/2.txt": "2\n", "c/3.txt": "3\n" });
    await lab.server("replica", "rsync2");
    const primary = primaryWithWatches(lab, 2);
    const child = primary.child;
    try {
      await waitFor(
        "fallback message",
        () => /out of inotify watches/.test(primary.stderr()),
        15_000,
      );
      const h = await waitFor("degraded", async () => {
        const r = await healthz(lab).catch(() => null);
        return r?.status === 503 ? r : null;
      });
      assert.match(
        h.body,
        /^degraded: not watching the tree \(.*ENOSPC.*\); pushing the whole tree every 300ms/,
      );
      assert.equal((await status(lab)).watch.mode, "polling");
      // The limit is raised (in the primary's namespace): the watcher comes back by itself.
      const raised = await sh("nsenter", [
        "-t",
        String(child.pid),
        "-U",
        "sh",
        "-c",
        "echo 100000 > /proc/sys/user/max_inotify_watches",
      ]);
      assert.equal(raised.code, 0, raised.stderr);
      await waitFor("events mode", async () => (await status(lab)).watch.mode === "events", 40_000);
      assert.match(primary.stderr(), /msg="watching the tree again"/);
      assert.equal((await healthz(lab)).status, 200);
      await writeTree(src, { "later.txt": "later\n" });
      await converged(lab, ["rsync2"]);
    } finally {
      await primary.stop();
    }
  });
});
