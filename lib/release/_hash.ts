/**
 * SHA-256 of files and small byte strings, by node:crypto: native, in
 * pieces, and synchronous. WebCrypto's digest takes a whole buffer and
 * answers on another thread (the hop costs several times the hash of a
 * source file), and SHA-256 in TypeScript crawls under the `--lite-mode`
 * fanout runs with (no optimizing compiler).
 *
 * node:crypto is imported on first use: tens of milliseconds and a few MB
 * that a client run with nothing to check never pays, and one with a few
 * files to check neither (WebCrypto hashes those). Internal to lib/release.
 *
 * @module
 */

import { quoted } from "../core/mod.ts";
import { readChecked } from "./_read.ts";
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

/** The largest file {@linkcode hashersFor} reads whole into memory. */
const WHOLE_MAX = 16 << 20;

/**
 * The most files and symlinks {@linkcode hashersOf} hashes by WebCrypto: a
 * hop to another thread each, where loading node:crypto costs tens of
 * milliseconds once.
 */
const FEW = 64;

/**
 * Hashers for a few known entries below `root`, by WebCrypto: each file is
 * read whole (it must still be the entry's file, of its size) and each
 * symlink's target read, and all are hashed before this returns. For a
 * publish of a few changed paths, loading node:crypto would cost more than
 * the hashes. Asked for anything else, or for a file that could not be read
 * as walked, they throw ({@linkcode TreeError} for a file or target that
 * changed since). With a file past 16 MiB among `entries`,
 * {@linkcode hashers} instead.
 *
 * @example
 * ```ts
 * const hash = await hashersFor(root, entries);
 * const entry = manifestEntry(root, entries[0], hash);
 * ```
 */
export async function hashersFor(root: string, entries: readonly TreeEntry[]): Promise<Hashers> {
  if (entries.some((e) => e.kind === "file" && e.size > WHOLE_MAX)) return await hashers();
  // A file that cannot be read as walked throws when it is asked for, as
  // {@linkcode hashers} would: its caller may never ask.
  const files = new Map<string, string | unknown>(), targets = new Map<string, string>();
  for (const e of entries) {
    if (e.kind === "file") {
      let bytes;
      try {
        bytes = readEntry(root, e);
      } catch (err) {
        files.set(e.path, err);
        continue;
      }
      files.set(e.path, await webDigest(bytes));
    }
    const target = e.kind === "symlink" ? linkTarget(`${root}/${e.path}`) : null;
    if (target !== null) targets.set(target, await webDigest(new TextEncoder().encode(target)));
  }
  const unknown = (path: string) =>
    new TreeError(path, `${quoted(path, 200)} changed while it was read`);
  return {
    file(_root, e) {
      const h = files.get(e.path);
      if (h === undefined) throw unknown(e.path);
      if (typeof h !== "string") throw h;
      return h;
    },
    bytes(data) {
      const h = targets.get(new TextDecoder().decode(data));
      if (h === undefined) throw unknown("a symlink's target");
      return h;
    },
  };
}

/**
 * Hashers for the files and symlinks of `entries` below `root`, the only
 * ones they are asked for: {@linkcode hashersFor} for a few, else
 * {@linkcode hashers}. A check of a version that changed a few paths then
 * never loads node:crypto.
 *
 * @example
 * ```ts
 * const hash = await hashersOf(root, toRead);
 * ```
 */
export async function hashersOf(root: string, entries: readonly TreeEntry[]): Promise<Hashers> {
  const read = entries.filter((e) => e.kind === "file" || e.kind === "symlink");
  return read.length <= FEW ? await hashersFor(root, read) : await hashers();
}

/** The bytes of the file of walked entry `e`, which must still be that file. */
function readEntry(root: string, e: TreeEntry): Uint8Array<ArrayBuffer> {
  const path = `${root}/${e.path}`;
  const bytes = readChecked(
    path,
    { ino: e.ino, dev: e.dev, size: e.size } as Deno.FileInfo,
    WHOLE_MAX,
  );
  if (typeof bytes === "string") {
    throw new TreeError(e.path, `${quoted(path, 200)} changed while it was read`);
  }
  return bytes;
}

/** A symlink's target; null when it cannot be read as text (the manifest says why). */
function linkTarget(path: string): string | null {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return null;
  }
}

async function webDigest(data: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data)).toHex();
}
