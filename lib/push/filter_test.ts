// The scoped push's filter rules, checked with real rsync between two local
// trees: what the rules select must be exactly what changed, deletions,
// renames and odd names included, and nothing else may be touched.
import assert from "node:assert/strict";
import { filterRules, unfilterable } from "./filter.ts";
import type { Change } from "../version/mod.ts";
import { runRsync } from "../rsync/mod.ts";

async function scopedSync(src: string, dst: string, changes: Change[]): Promise<void> {
  const file = `${src}.filter`;
  await Deno.writeTextFile(file, filterRules(changes).join("\0") + "\0");
  const r = await runRsync([
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

/** Writes `files` (relative path: content) under `dir`, making directories. */
async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    const path = `${dir}/${rel}`;
    await Deno.mkdir(path.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
}

/** Every entry below `dir`: a file's path to its text, a directory's path (with a slash) to "". */
async function snapshot(dir: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const path = `${rel}${e.name}`;
    if (e.isDirectory) {
      out.set(`${path}/`, "");
      for (const [p, t] of await snapshot(dir, `${path}/`)) out.set(p, t);
    } else out.set(path, await Deno.readTextFile(`${dir}/${path}`));
  }
  return out;
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
    const want = await snapshot(src);
    want.set("untouched/", "").set("untouched/extra.txt", "not mine\n");
    assert.deepEqual(await snapshot(dst), want);
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
