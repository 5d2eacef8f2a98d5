import assert from "node:assert/strict";
import { hashFiles, IN_FLIGHT, SMALL, WHOLE } from "./_hash.ts";
import { TreeError, walkTree } from "./tree.ts";
import { withDir } from "./_testing.ts";

/** `sha256sum`'s answer for each file of `dir`, by relative path. */
function sha256sum(dir: string, paths: string[]): Map<string, string> {
  const out = new Deno.Command("sha256sum", { args: ["--", ...paths], cwd: dir }).outputSync();
  assert.ok(out.success);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return new Map(lines.map((l) => [l.slice(66), l.slice(0, 64)]));
}

Deno.test("hash: files of every size class hash as sha256sum does, the big ones in pieces", async () => {
  await withDir(async (dir) => {
    const sizes = [
      0,
      1,
      SMALL - 1,
      SMALL,
      SMALL + 1,
      100_000,
      WHOLE - 1,
      WHOLE,
      WHOLE + 1,
      3 * WHOLE + 5,
    ];
    // More mid-sized files than run at once, so some wait for a place.
    for (let i = 0; i < IN_FLIGHT * 3; i++) sizes.push(SMALL + 1000 * i);
    sizes.forEach((size, i) => {
      const data = new Uint8Array(size);
      for (let j = 0; j < size; j++) data[j] = (j * 31 + i) & 0xff;
      Deno.writeFileSync(`${dir}/f${i}`, data);
    });
    const files = walkTree(dir);
    const got = new Map<string, string>();
    let calls = 0;
    await hashFiles(dir, files, (i, hex) => void (calls++, got.set(files[i].path, hex)));
    assert.equal(calls, files.length);
    assert.deepEqual(got, sha256sum(dir, files.map((f) => f.path)));
  });
});

Deno.test("hash: returning false stops starting files; those under way still report", async () => {
  await withDir(async (dir) => {
    for (let i = 0; i < 20; i++) Deno.writeFileSync(`${dir}/f${i}`, new Uint8Array(SMALL * 2));
    const files = walkTree(dir);
    const seen: number[] = [];
    await hashFiles(dir, files, (i) => (seen.push(i), false));
    assert.ok(seen.length >= 1 && seen.length <= IN_FLIGHT, `${seen.length} reported`);
  });
});

Deno.test("hash: a file replaced by a symlink, a directory or a file of another size, or grown or shrunk since the walk, is refused", async () => {
  await withDir(async (dir) => {
    const cases: [string, (p: string) => void][] = [
      ["symlink", (p) => (Deno.removeSync(p), Deno.symlinkSync(`${dir}/other`, p))],
      ["a directory", (p) => (Deno.removeSync(p), Deno.mkdirSync(p))],
      // (A file of the same size in its place may take its inode number, and
      // is then read: the same as its bytes changing while read.)
      ["replaced", (p) => (Deno.removeSync(p), Deno.writeFileSync(p, new Uint8Array(7)))],
      ["grown", (p) => Deno.writeFileSync(p, new Uint8Array(1), { append: true })],
      ["shrunk", (p) => Deno.truncateSync(p, 3)],
    ];
    for (const size of [10, 10_000, WHOLE + 10]) {
      for (const [what, change] of cases) {
        const path = `${dir}/sub/f`;
        Deno.mkdirSync(`${dir}/sub`, { recursive: true });
        Deno.writeFileSync(path, new Uint8Array(size));
        Deno.writeFileSync(`${dir}/other`, new Uint8Array(size));
        const files = walkTree(`${dir}/sub`);
        change(path);
        await assert.rejects(
          hashFiles(`${dir}/sub`, files, () => {}),
          (e) =>
            e instanceof TreeError && e.path === "f" && /changed while it was read/.test(e.message),
          `${what}, ${size} bytes`,
        );
        Deno.removeSync(`${dir}/sub`, { recursive: true });
      }
    }
  });
});
