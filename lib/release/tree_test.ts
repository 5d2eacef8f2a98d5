import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { comparePaths, TreeError, walkTree } from "./tree.ts";
import { sh, withDir } from "./_testing.ts";

Deno.test("tree: paths order by code point, as their UTF-8 bytes", () => {
  const paths = ["b", "a/b", "a-b", "a", "a b", "\uffff", "\u{10000}", "\ue000", "é", "z"];
  const sorted = [...paths].sort(comparePaths);
  const enc = new TextEncoder();
  const byBytes = [...paths].sort((x, y) => {
    const a = enc.encode(x), b = enc.encode(y);
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  });
  assert.deepEqual(sorted, byBytes);
  assert.deepEqual(sorted.slice(0, 5), ["a", "a b", "a-b", "a/b", "b"]);
  assert.deepEqual(sorted.slice(-3), ["\ue000", "\uffff", "\u{10000}"]);
  assert.equal(comparePaths("x", "x"), 0);
  // Names of ASCII, BMP and astral characters mixed, against their bytes' order.
  const units = ["a", "/", "z", "\u00e9", "\ud7ff", "\ue000", "\uffff", "\u{10000}", "\u{10ffff}"];
  const names: string[] = [];
  for (let i = 0; i < 400; i++) {
    let n = "";
    for (let k = 0, len = 1 + (i * 7) % 5; k < len; k++) {
      n += units[(i * 31 + k * 17) % units.length];
    }
    names.push(n);
  }
  const bytes = (x: string, y: string) => Buffer.compare(enc.encode(x), enc.encode(y));
  assert.deepEqual([...names].sort(comparePaths), [...names].sort(bytes));
});

Deno.test("tree: every path by lstat, sorted, symlinks listed and not followed, skips with their subtrees", async () => {
  await withDir(async (dir) => {
    sh(
      dir,
      "mkdir -p t/a/b t/a-b t/skipped/deep && echo 1 > t/a/b/f && echo 2 > t/a-b/g && touch t/.marker " +
        "t/skipped/deep/x && ln -s ../.. t/a/up && ln -s /etc t/etc && ln -s missing t/dangling && mkfifo t/fifo",
    );
    const entries = await walkTree(`${dir}/t`, { skip: [".marker", "skipped"] });
    assert.deepEqual(entries.map((e) => `${e.kind} ${e.path}`), [
      "dir a",
      "dir a-b",
      "file a-b/g",
      "dir a/b",
      "file a/b/f",
      "symlink a/up",
      "symlink dangling",
      "symlink etc",
      "other fifo",
    ]);
    assert.equal(entries.find((e) => e.path === "a/b/f")!.size, 2);
    assert.equal((await walkTree(`${dir}/t`, { maxPaths: 13 })).length, 13);
    await assert.rejects(
      () => walkTree(`${dir}/t`, { maxPaths: 12 }),
      (e) => e instanceof TreeError && /more than 12 paths/.test(e.message),
    );
    assert.deepEqual((await walkTree(`${dir}/t/a/b`)).map((e) => e.path), ["f"]);
    const asked: string[] = [];
    const some = await walkTree(`${dir}/t`, {
      skip: ["skipped"],
      filter: (p) => (asked.push(p), p === "a" || p === "a/b"),
    });
    assert.deepEqual(some.map((e) => e.path), ["a", "a/b"]);
    assert.deepEqual(asked.sort(), [
      ".marker",
      "a",
      "a-b",
      "a/b",
      "a/b/f",
      "a/up",
      "dangling",
      "etc",
      "fifo",
    ]);
  });
});

Deno.test("tree: a name that is not valid UTF-8 is refused, alone or beside the name Deno reads it as", async () => {
  await withDir(async (dir) => {
    sh(
      dir,
      `mkdir -p lone pair && touch "lone/$(printf 'a\\377b')" "pair/$(printf 'a\\377b')" pair/a\uFFFDb`,
    );
    for (const sub of ["lone", "pair"]) {
      await assert.rejects(
        () => walkTree(`${dir}/${sub}`),
        (e) => e instanceof TreeError && e.path === "a\ufffdb" && /not valid UTF-8/.test(e.message),
        sub,
      );
    }
  });
});
