/**
 * A kept manifest and its stat record (lib/release/update.ts) brought up to
 * date for a known list of paths, without reading the rest: a publisher that
 * knows from git which paths a commit changed stats and hashes only those,
 * and splices their lines into the manifest's text and their entries into
 * the record. What it writes is what {@linkcode updateManifest} would have
 * written after walking the whole tree, so the next walk hashes nothing
 * again.
 *
 * The record lists the same paths as the manifest, in the same order (both
 * come from one walk, and every patch keeps it so), so the line a binary
 * search finds in the manifest's text is also the record's entry. The kept
 * text is taken as canonical (one line a path, sorted): the caller checks
 * first that it is the manifest it signed, by its SHA-256.
 *
 * @module
 */

import { quoted, writePrivate } from "../core/mod.ts";
import { hashersFor } from "./_hash.ts";
import { readKept } from "./_read.ts";
import {
  formatEntry,
  MANIFEST_HEADER,
  MANIFEST_LIMITS,
  manifestEntry,
  ManifestError,
  type ManifestLimits,
} from "./manifest.ts";
import { RECORD_LIMITS, RecordError, type RecordSplice, spliceRecord } from "./record.ts";
import { comparePaths, statEntry, type TreeEntry } from "./tree.ts";
import type { StateFiles } from "./update.ts";

/** One path a patch brings up to date. */
export interface PathChange {
  /** Relative to the root, `/`-separated. */
  path: string;
  /**
   * Whether the manifest lists it now: it is then stat'ed and hashed below
   * the root; otherwise its line goes, if it had one.
   */
  listed: boolean;
}

/** What {@linkcode patchManifestState} wrote (or, told not to, would write). */
export interface PatchedManifest {
  /** The manifest's text, as written. */
  bytes: Uint8Array<ArrayBuffer>;
  /** The stat record's bytes, as written. */
  record: Uint8Array<ArrayBuffer>;
  /** Paths it lists. */
  paths: number;
  /** Files and symlinks hashed for it. */
  hashed: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The bytes of the header line, newline included. */
const HEADER_BYTES = enc.encode(`${MANIFEST_HEADER}\n`);

/**
 * Reads the kept manifest's bytes as they are (not parsed); null when there
 * is none. Read as hostile: bounded, not through a symlink.
 *
 * @throws {ManifestError} for a file that cannot be used.
 *
 * @example
 * ```ts
 * const kept = readKeptManifest(files);
 * if (kept && (await manifestDigest(kept)) === signedDigest) console.log("ours");
 * ```
 */
export function readKeptManifest(
  files: StateFiles,
  limits: ManifestLimits = MANIFEST_LIMITS,
): Uint8Array<ArrayBuffer> | null {
  return readKept(files.manifest, limits.maxBytes, (m) => new ManifestError(m));
}

/**
 * Brings the kept manifest `kept` (its bytes, checked by the caller) and the
 * record in `files` up to date for `changes` in the tree at `root`, writes
 * both (the manifest first; with `write: false` the caller does, when it
 * has used them) and returns them.
 *
 * @throws {ManifestError} / {TreeError} for a path no manifest can list, or
 * kept text that is not a manifest.
 * @throws {RecordError} for no record, or one that does not list the manifest's paths.
 *
 * @example
 * ```ts
 * const m = await patchManifestState(files, kept, staging, [
 *   { path: "lib", listed: true },
 *   { path: "lib/a.ts", listed: true },
 *   { path: "old.ts", listed: false },
 * ]);
 * console.log(`${m.paths} paths, ${m.hashed} hashed`);
 * ```
 */
export async function patchManifestState(
  files: StateFiles,
  kept: Uint8Array,
  root: string,
  changes: readonly PathChange[],
  opts: { write?: boolean } = {},
): Promise<PatchedManifest> {
  const lines = indexLines(kept);
  const record = readKept(files.record, RECORD_LIMITS.maxBytes, (m) => new RecordError(m));
  if (!record) throw new RecordError(`no record is kept beside ${files.manifest}`);
  const splices = await placeChanges(kept, lines, root, changes);
  const bytes = spliceText(kept, lines, splices);
  const nextRecord = spliceRecord(record, splices, {
    count: lines.length - 1,
    pathOf: (i) => pathOfLine(kept, lines, i),
  });
  if (opts.write !== false) {
    await writePrivate(files.manifest, bytes);
    await writePrivate(files.record, nextRecord);
  }
  return {
    bytes,
    record: nextRecord,
    paths: lines.length - 1 + splices.reduce((n, s) => n + s.put.length - s.drop, 0),
    hashed: splices.reduce((n, s) => n + s.lines.filter((l) => !l.startsWith("d")).length, 0),
  };
}

/** A {@linkcode RecordSplice} with the manifest lines of what it puts. */
interface Splice extends RecordSplice {
  lines: string[];
}

/**
 * Where each change goes among the kept lines, and its new line and record
 * entry: one splice a changed path, in order.
 */
async function placeChanges(
  kept: Uint8Array,
  lines: Int32Array,
  root: string,
  changes: readonly PathChange[],
): Promise<Splice[]> {
  const sorted = [...changes].sort((a, b) => comparePaths(a.path, b.path));
  const stats = sorted.map((c) => c.listed ? statEntry(root, c.path) : null);
  const hash = await hashersFor(root, stats.filter((e) => e !== null));
  const out: Splice[] = [];
  let from = 0;
  for (const [i, c] of sorted.entries()) {
    if (c.path === sorted[i - 1]?.path) {
      throw new ManifestError(`${quoted(c.path, 200)} is changed twice`);
    }
    const { at, found } = findLine(kept, lines, enc.encode(c.path), from);
    if (!found && !c.listed) continue;
    const e: TreeEntry | null = stats[i];
    out.push({
      at,
      drop: found ? 1 : 0,
      put: e ? [e] : [],
      lines: e ? [formatEntry(manifestEntry(root, e, hash))] : [],
    });
    from = at + (found ? 1 : 0);
  }
  return out;
}

/** The manifest's text with `splices` made. */
function spliceText(
  kept: Uint8Array,
  lines: Int32Array,
  splices: readonly Splice[],
): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [kept.subarray(0, lines[0])];
  let from = 0;
  for (const s of splices) {
    parts.push(kept.subarray(lines[from], lines[s.at]));
    for (const l of s.lines) parts.push(enc.encode(`${l}\n`));
    from = s.at + s.drop;
  }
  parts.push(kept.subarray(lines[from]));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Where each line of manifest text starts, after the header; the last
 * element is the text's end (so line `i` is `lines[i]` to `lines[i + 1]`).
 *
 * @throws {ManifestError} for text without the header or the final newline.
 */
function indexLines(kept: Uint8Array): Int32Array {
  const head = kept.subarray(0, HEADER_BYTES.length);
  if (head.length !== HEADER_BYTES.length || head.some((b, i) => b !== HEADER_BYTES[i])) {
    throw new ManifestError(`the kept manifest does not start with "${MANIFEST_HEADER}"`);
  }
  if (kept[kept.length - 1] !== 10) {
    throw new ManifestError("the kept manifest does not end with a newline");
  }
  // Counted first: a typed array of the right length, not a growing list.
  let n = 0;
  for (let at = HEADER_BYTES.length; at < kept.length; at = kept.indexOf(10, at) + 1) n++;
  const starts = new Int32Array(n + 1);
  for (let i = 0, at = HEADER_BYTES.length; i < n; at = kept.indexOf(10, at) + 1) starts[i++] = at;
  starts[n] = kept.length;
  return starts;
}

/**
 * The first line at or after `from` whose path does not sort before
 * `path` (its UTF-8 bytes), and whether it is that path.
 */
function findLine(
  kept: Uint8Array,
  lines: Int32Array,
  path: Uint8Array,
  from: number,
): { at: number; found: boolean } {
  let lo = from, hi = lines.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareLine(kept, lines, mid, path) < 0) lo = mid + 1;
    else hi = mid;
  }
  return { at: lo, found: lo < lines.length - 1 && compareLine(kept, lines, lo, path) === 0 };
}

/** The path of line `i` against `path`, byte by byte (code point order, as manifests sort). */
function compareLine(kept: Uint8Array, lines: Int32Array, i: number, path: Uint8Array): number {
  const start = pathStart(kept, lines[i]);
  const n = lines[i + 1] - 1 - start;
  for (let k = 0; k < Math.min(n, path.length); k++) {
    const d = kept[start + k] - path[k];
    if (d) return d;
  }
  return n - path.length;
}

/** The path of line `i`. */
function pathOfLine(kept: Uint8Array, lines: Int32Array, i: number): string {
  return dec.decode(kept.subarray(pathStart(kept, lines[i]), lines[i + 1] - 1));
}

/**
 * Where the path starts in the line starting at `line`: after the type and
 * mode (7 bytes), the size and its space, and the hash (64 hex digits, or
 * `-` for a directory) and its space.
 */
function pathStart(kept: Uint8Array, line: number): number {
  const afterSize = kept.indexOf(0x20, line + 7) + 1;
  return afterSize + (kept[afterSize] === 0x2d ? 2 : 65);
}
