// The scoped push's filter rules, checked with real rsync between two local
// trees: what the rules select must be exactly what changed, deletions,
// renames and odd names included, and nothing else may be touched.
import assert from "node:assert/strict";
import { filterRules, unfilterable } from "../lib/push/mod.ts";
import type { Change } from "../lib/version/mod.ts";
import { diffTrees, sh, writeTree } from "./_helpers.ts";

async function scopedSync(src: string, dst: string, changes: Change[]): Promise<void> {
  const file = `${src}.filter`;
  await Deno.writeTextFile(file, filterRules(changes).join("\0") + "\0");
  const r = await sh("rsync", [
    "-a",
    "--delete",
    "--from0",
    `--include-from=${file}`,
    "--exclude=*",
    `${src}/`,
    `${dst}/`,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

Deno.test("push filter: adds, changes, deletes, renames and odd names, nothing else", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = `${dir}/src`, dst = `${dir}/dst`;
    const base = {
      "a/keep.txt": "keep\n",
      "a/old.txt": "old\n",
      "gone/x/y.txt": "y\n",
      "b/c/d.txt": "d\n",
      "glob[1]*?.txt": "w\n",
      "sp ace/f.txt": "s\n",
    };
    await writeTree(src, base);
    await writeTree(dst, base);
    // A drift on the destination that no change names must survive.
    await writeTree(dst, { "untouched/extra.txt": "not mine\n" });

    await Deno.rename(`${src}/a/old.txt`, `${src}/a/new.txt`);
    await Deno.remove(`${src}/gone`, { recursive: true });
    await writeTree(src, {
      "b/c/d.txt": "changed\n",
      "fresh/deep/z.txt": "z\n",
      "glob[1]*?.txt": "w2\n",
    });
    await Deno.remove(`${src}/sp ace/f.txt`);
    await scopedSync(src, dst, [
      { path: "a/old.txt", deep: true },
      { path: "a/new.txt", deep: false },
      { path: "gone", deep: true },
      { path: "b/c/d.txt", deep: false },
      { path: "fresh", deep: true },
      { path: "glob[1]*?.txt", deep: false },
      { path: "sp ace/f.txt", deep: true },
    ]);
    const d = await diffTrees(src, dst);
    assert.equal(d.trim(), `Only in ${dst}: untouched`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("push filter: many changes in one directory collapse into one rule", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = `${dir}/src`, dst = `${dir}/dst`;
    await writeTree(src, { "d/sub/s.txt": "s\n" });
    await writeTree(dst, { "d/sub/s.txt": "s\n", "d/sub/stale.txt": "stay: not a change\n" });
    const changes: Change[] = [];
    for (let i = 0; i < 40; i++) {
      await writeTree(src, { [`d/f${i}.txt`]: `${i}\n` });
      changes.push({ path: `d/f${i}.txt`, deep: false });
    }
    const rules = filterRules(changes);
    assert.ok(rules.length < 5, rules.join(" "));
    await scopedSync(src, dst, changes);
    for (let i = 0; i < 40; i++) {
      assert.equal(await Deno.readTextFile(`${dst}/d/f${i}.txt`), `${i}\n`);
    }
    assert.equal(await Deno.readTextFile(`${dst}/d/sub/stale.txt`), "stay: not a change\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("push filter: names rules cannot carry", () => {
  assert.equal(unfilterable("a\nb"), true);
  assert.equal(unfilterable("plain/name.txt"), false);
});
