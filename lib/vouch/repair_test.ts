import assert from "node:assert/strict";
import { repairFrom } from "./mod.ts";

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
