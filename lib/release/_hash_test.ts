import assert from "node:assert/strict";
import { hashers, hashersOf, PIECE } from "./_hash.ts";
import { TreeError, walkTree } from "./tree.ts";
import { withDir } from "./_testing.ts";

/** `sha256sum`'s answer for each file of `dir`, by relative path. */
function sha256sum(dir: string, paths: string[]): Map<string, string> {
  const out = new Deno.Command("sha256sum", { args: ["--", ...paths], cwd: dir }).outputSync();
  assert.ok(out.success);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return new Map(lines.map((l) => [l.slice(66), l.slice(0, 64)]));
}

Deno.test("hash: files of every size around the read buffer's hash as sha256sum does", async () => {
  await withDir(async (dir) => {
    const sizes = [0, 1, 4095, 4096, 100_000, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 5];
    sizes.forEach((size, i) => {
      const data = new Uint8Array(size);
      for (let j = 0; j < size; j++) data[j] = (j * 31 + i) & 0xff;
      Deno.writeFileSync(`${dir}/f${i}`, data);
    });
    const hash = await hashers();
    const files = await walkTree(dir);
    const got = new Map(files.map((e) => [e.path, hash.file(dir, e)]));
    assert.deepEqual(got, sha256sum(dir, files.map((f) => f.path)));
    assert.equal(
      hash.bytes(new TextEncoder().encode("abc")),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});

Deno.test("hash: a file replaced by a symlink, a directory or a file of another size, or grown or shrunk since the walk, is refused", async () => {
  await withDir(async (dir) => {
    const hash = await hashers();
    const cases: [string, (p: string) => void][] = [
      ["symlink", (p) => (Deno.removeSync(p), Deno.symlinkSync(`${dir}/other`, p))],
      ["a directory", (p) => (Deno.removeSync(p), Deno.mkdirSync(p))],
      // (A file of the same size in its place may take its inode number, and
      // is then read: the same as its bytes changing while read.)
      ["replaced", (p) => (Deno.removeSync(p), Deno.writeFileSync(p, new Uint8Array(7)))],
      ["grown", (p) => Deno.writeFileSync(p, new Uint8Array(1), { append: true })],
      ["shrunk", (p) => Deno.truncateSync(p, 3)],
    ];
    for (const size of [10, 10_000, PIECE + 10]) {
      for (const [what, change] of cases) {
        const path = `${dir}/sub/f`;
        Deno.mkdirSync(`${dir}/sub`, { recursive: true });
        Deno.writeFileSync(path, new Uint8Array(size));
        Deno.writeFileSync(`${dir}/other`, new Uint8Array(size));
        const [e] = await walkTree(`${dir}/sub`);
        change(path);
        assert.throws(
          () => hash.file(`${dir}/sub`, e),
          (err) =>
            err instanceof TreeError && err.path === "f" &&
            /changed while it was read/.test(err.message),
          `${what}, ${size} bytes`,
        );
        Deno.removeSync(`${dir}/sub`, { recursive: true });
      }
    }
  });
});

Deno.test("hash: a few entries hash by WebCrypto as node:crypto does, a file changed since the walk throwing only when asked for", async () => {
  await withDir(async (dir) => {
    Deno.mkdirSync(`${dir}/d`);
    Deno.writeFileSync(`${dir}/a`, new TextEncoder().encode("alpha\n"));
    Deno.writeFileSync(`${dir}/big`, new Uint8Array(PIECE + 3).fill(7));
    Deno.writeFileSync(`${dir}/gone`, new Uint8Array(5));
    Deno.symlinkSync("a", `${dir}/l`);
    const walked = await walkTree(dir);
    Deno.writeFileSync(`${dir}/gone`, new Uint8Array(6));
    const few = await hashersOf(dir, walked), all = await hashers();
    for (const e of walked.filter((e) => e.kind === "file" && e.path !== "gone")) {
      assert.equal(few.file(dir, e), all.file(dir, e), e.path);
    }
    const target = new TextEncoder().encode("a");
    assert.equal(few.bytes(target), all.bytes(target));
    const gone = walked.find((e) => e.path === "gone")!;
    for (const h of [few, all]) {
      assert.throws(
        () => h.file(dir, gone),
        (err) => err instanceof TreeError && /changed while it was read/.test(err.message),
      );
    }
    // Not among the entries: never vouched for.
    assert.throws(() => few.bytes(new TextEncoder().encode("elsewhere")), TreeError);
  });
});
