import assert from "node:assert/strict";
import { repairFrom, RepairPace } from "./mod.ts";

Deno.test("repair: a temp dir that is a symlink out of the tree is never written through", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [up, root, outside] = [`${dir}/up`, `${dir}/tree`, `${dir}/outside`];
    for (const d of [up, root, outside]) await Deno.mkdir(d);
    await Deno.writeTextFile(`${up}/a.txt`, "alpha\n");
    await Deno.writeTextFile(`${root}/a.txt`, "damaged\n");
    // Planted where the server keeps its temp dir: pushes into the tree can bring it.
    await Deno.symlink(outside, `${root}/.fanout-tmp`);
    const failed = await repairFrom({
      source: `${up}/`,
      root,
      excludes: [],
      rsync: { path: "rsync", timeout: 30_000, connectTimeout: 5_000 },
    });
    assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside the tree");
    assert.equal(failed, null);
    assert.equal(await Deno.readTextFile(`${root}/a.txt`), "alpha\n");
    assert((await Deno.lstat(`${root}/.fanout-tmp`)).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repair: a tree that holds its version between refusals does not bring the next repair sooner", () => {
  const pace = new RepairPace([10_000, 300_000]);
  assert.equal(pace.start(0), true);
  // Repaired, then damaged again at once, and again: each repair waits longer.
  pace.held(1_000);
  assert.equal(pace.start(7_000), false, "not before the first wait");
  assert.equal(pace.start(10_000), true);
  pace.held(11_000);
  assert.equal(pace.start(29_000), false, "the wait doubled");
  assert.equal(pace.start(30_000), true);
  // Calm for the longest wait after that: the first wait again.
  pace.held(30_000 + 40_000 + 300_000);
  assert.equal(pace.start(30_000 + 40_000 + 300_000), true);
  pace.held(30_000 + 40_000 + 300_001);
  assert.equal(pace.start(30_000 + 40_000 + 300_000 + 9_999), false);
  assert.equal(pace.start(30_000 + 40_000 + 300_000 + 10_000), true);
});
