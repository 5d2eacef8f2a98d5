/**
 * The SHA-256 of the regular files of a walked tree, the fastest way Deno
 * has with bounded memory: a file is read synchronously (the page cache
 * answers faster than a hop to another thread), then hashed
 *
 * - up to {@linkcode SMALL} bytes here, in TypeScript (WebCrypto's answer
 *   on another thread costs more than such a hash);
 * - up to {@linkcode WHOLE} bytes by WebCrypto, a few at once on its
 *   threads, while the next files are read;
 * - larger, here, in pieces of {@linkcode WHOLE} bytes (WebCrypto takes a
 *   whole buffer only).
 *
 * One buffer of {@linkcode WHOLE} bytes is read into, over and over:
 * WebCrypto copies what it is given before it answers (as the standard
 * says), so at most {@linkcode IN_FLIGHT} copies more are held at once.
 * Internal to lib/release.
 *
 * @module
 */

import { quoted } from "../core/mod.ts";
import { Sha256 } from "./_sha256.ts";
import { type TreeEntry, TreeError } from "./tree.ts";

/** Files up to this size are hashed here, synchronously. */
export const SMALL = 4096;
/** Files up to this size are read whole and hashed by WebCrypto; larger ones in pieces of it. */
export const WHOLE = 1 << 20;
/** WebCrypto hashes running at once. */
export const IN_FLIGHT = 4;

/** One byte more than {@linkcode WHOLE}: a file that grew since its `lstat` is seen. */
const piece = new Uint8Array(WHOLE + 1);
const hasher = new Sha256();

/** Opens the file of `e`, refusing another file put in its place since its `lstat`. */
function openSame(root: string, e: TreeEntry): Deno.FsFile {
  const f = Deno.openSync(`${root}/${e.path}`, { read: true });
  const st = f.statSync();
  if (!st.isFile || st.ino !== e.ino || st.dev !== e.dev) {
    f.close();
    throw changed(root, e);
  }
  return f;
}

function changed(root: string, e: TreeEntry): TreeError {
  return new TreeError(e.path, `${quoted(`${root}/${e.path}`, 200)} changed while it was read`);
}

/** Reads `f` into `buf` until the end or `buf` is full; the bytes read. */
function fill(f: Deno.FsFile, buf: Uint8Array): number {
  let n = 0;
  while (n < buf.length) {
    const got = f.readSync(buf.subarray(n));
    if (!got) break;
    n += got;
  }
  return n;
}

/**
 * The bytes of a file of at most {@linkcode WHOLE} bytes (in the shared
 * buffer, until the next call), or its hash when it is larger: what was read
 * must be exactly the size its `lstat` gave.
 */
function readOrHash(root: string, e: TreeEntry): Uint8Array<ArrayBuffer> | string {
  using f = openSame(root, e);
  const size = e.size;
  if (size <= WHOLE) {
    if (fill(f, piece.subarray(0, size + 1)) !== size) throw changed(root, e);
    return piece.subarray(0, size);
  }
  hasher.reset();
  let total = 0;
  while (total <= size) {
    const n = fill(f, piece.subarray(0, WHOLE));
    if (n === 0) break;
    total += n;
    hasher.update(piece.subarray(0, n));
  }
  if (total !== size) throw changed(root, e);
  return hasher.hex();
}

/**
 * Hashes the files `files` (entries of {@linkcode walkTree} whose `kind` is
 * "file") below `root`, calling `each(i, hex)` with each one's index and
 * SHA-256 as it is known: not in order. When `each` returns false, no more
 * files are started; those under way still report.
 *
 * @throws {TreeError} when a file is replaced or changes size while read.
 *
 * @example
 * ```ts
 * const sums: string[] = [];
 * await hashFiles(root, files, (i, hex) => void (sums[i] = hex));
 * ```
 */
export async function hashFiles(
  root: string,
  files: readonly TreeEntry[],
  each: (i: number, hex: string) => boolean | void,
): Promise<void> {
  const running = new Set<Promise<void>>();
  let go = true;
  for (let i = 0; i < files.length && go; i++) {
    const got = readOrHash(root, files[i]);
    if (typeof got === "string") go = each(i, got) !== false;
    else if (got.length < SMALL) go = each(i, hasher.reset().update(got).hex()) !== false;
    else {
      const p: Promise<void> = crypto.subtle.digest("SHA-256", got).then((d) => {
        running.delete(p);
        if (each(i, new Uint8Array(d).toHex()) === false) go = false;
      });
      running.add(p);
      if (running.size >= IN_FLIGHT) await Promise.race(running);
    }
  }
  await Promise.all(running);
}
