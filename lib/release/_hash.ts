/**
 * SHA-256 of files and small byte strings, by node:crypto: native, in
 * pieces, and synchronous. WebCrypto's digest takes a whole buffer and
 * answers on another thread (the hop costs several times the hash of a
 * source file), and SHA-256 in TypeScript crawls under the `--lite-mode`
 * fanout runs with (no optimizing compiler).
 *
 * node:crypto is imported on first use: tens of milliseconds and a few MB
 * that a client run with nothing to check never pays. Internal to
 * lib/release.
 *
 * @module
 */

import { quoted } from "../core/mod.ts";
import { type TreeEntry, TreeError } from "./tree.ts";

/** Files are read in pieces of this size, into one buffer. */
export const PIECE = 1 << 20;

let piece: Uint8Array | null = null;
let loading: Promise<typeof import("node:crypto")> | null = null;

/** Hashes what a walk found: files by their walked entry, and byte strings. */
export interface Hashers {
  /**
   * The SHA-256 (hex) of the file of walked entry `e` below `root`: the file
   * opened must still be that entry's (same device and inode, a regular file)
   * and hold exactly the size its `lstat` gave.
   *
   * @throws {TreeError} when it was replaced or changed size since the walk.
   */
  file(root: string, e: TreeEntry): string;
  /** The SHA-256 (hex) of `data`. */
  bytes(data: Uint8Array): string;
}

/**
 * The hash functions, once node:crypto is loaded.
 *
 * @example
 * ```ts
 * const hash = await hashers();
 * for (const e of await walkTree(root)) if (e.kind === "file") console.log(hash.file(root, e), e.path);
 * ```
 */
export async function hashers(): Promise<Hashers> {
  const { createHash } = await (loading ??= import("node:crypto"));
  piece ??= new Uint8Array(PIECE);
  const buf = piece;
  return {
    bytes: (data) => createHash("sha256").update(data).digest("hex"),
    file(root, e) {
      const path = `${root}/${e.path}`;
      const changed = () => new TreeError(e.path, `${quoted(path, 200)} changed while it was read`);
      using f = Deno.openSync(path, { read: true });
      const st = f.statSync();
      if (!st.isFile || st.ino !== e.ino || st.dev !== e.dev) throw changed();
      const h = createHash("sha256");
      let total = 0;
      // Up to the end, not up to the size: a file that grew is seen.
      for (;;) {
        const n = f.readSync(buf);
        if (!n) break;
        total += n;
        if (total > e.size) throw changed();
        h.update(buf.subarray(0, n));
      }
      if (total !== e.size) throw changed();
      return h.digest("hex");
    },
  };
}
