// A code-like tree for the release benchmarks (bench/manifest.ts,
// bench/stat_walk.ts): `files` files of 0.5 to 16 KiB in directories of 20
// under 50 top directories, every 100th of 64 to 256 KiB, one of 8 MiB (a
// file read in pieces), a symlink every 500th file. Random bytes from one
// pool sliced at different offsets: nothing is cheaper to read or hash than
// real content.

/** Writes the tree into `root` (which must not exist yet); returns its files and bytes. */
export function makeReleaseTree(root: string, files: number): { files: number; bytes: number } {
  const pool = new Uint8Array(9 << 20);
  for (let o = 0; o < pool.length; o += 65536) crypto.getRandomValues(pool.subarray(o, o + 65536));
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const dir = `${root}/m${i % 50}/d${Math.floor(i / 1000)}`;
    if (i % 1000 < 50) Deno.mkdirSync(dir, { recursive: true });
    const size = i === 7
      ? 8 << 20
      : i % 100 === 0
      ? 65536 + (i * 7919) % 196608
      : 512 + (i * 7919) % 15872;
    const off = (i * 104729) % (pool.length - size);
    Deno.writeFileSync(`${dir}/f${i}.ts`, pool.subarray(off, off + size));
    if (i % 500 === 1) Deno.symlinkSync(`f${i}.ts`, `${dir}/l${i}.ts`);
    bytes += size;
  }
  return { files, bytes };
}
