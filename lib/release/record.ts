/**
 * The client's stat record of its tree: per path the inode, size, mtime,
 * ctime, type and mode `lstat` gave when the tree last matched its signed
 * manifest. A later walk that finds every path as recorded has nothing to
 * hash again; one that does not names the paths to check.
 *
 * Any write to a file moves its mtime and its ctime, and putting the mtime
 * back (`touch -d`, `utimes`) moves the ctime again: only the kernel sets
 * it. Deno gives the ctime in whole seconds, though, so a write that keeps
 * the size and puts the mtime back within the second of the recorded walk
 * goes unseen; a new inode (a file replaced by rename) is always seen.
 *
 * One line a path, in the walk's order, numbers in base 36 and each path
 * as the length it shares with the one before and the rest:
 *
 * ```
 * fanout-record v1
 * d0755 <ino> <size> <mtime ms> <ctime ms> 0 lib
 * f0644 <ino> <size> <mtime ms> <ctime ms> 3 /a.ts
 * ```
 *
 * @module
 */

import { CONTROL_CHARS, quoted, SafetyError } from "../core/mod.ts";
import { readChecked } from "./_read.ts";
import { comparePaths, mergePaths, type TreeKind, walkTree } from "./tree.ts";

/** A record's first line. */
export const RECORD_HEADER = "fanout-record v1";

/** What `lstat` gave for one path. */
export interface RecordEntry {
  /** Relative to the tree's root. */
  path: string;
  kind: TreeKind;
  /** Permission bits, 0 to 0o7777. */
  mode: number;
  ino: number;
  size: number;
  /** Milliseconds since the epoch. */
  mtimeMs: number;
  /** Milliseconds since the epoch, whole seconds (as Deno gives it). */
  ctimeMs: number;
}

/** A tree's stat record, its entries sorted by {@linkcode comparePaths}. */
export interface TreeRecord {
  entries: readonly RecordEntry[];
}

/** Bounds of a record, read or made. */
export interface RecordLimits {
  /** The most bytes of record text. */
  maxBytes: number;
  /** The most paths. */
  maxPaths: number;
}

/** The default bounds: a million paths, at up to 64 bytes each on average. */
export const RECORD_LIMITS: Readonly<RecordLimits> = { maxBytes: 64 << 20, maxPaths: 1_000_000 };

/**
 * A record file that is not one (exit 4): the client then checks its whole
 * tree against the manifest and writes a new record.
 *
 * @example
 * ```ts
 * try {
 *   parseRecord(text);
 * } catch (e) {
 *   if (e instanceof RecordError) log.warn(`${e.message}; checking the whole tree`);
 * }
 * ```
 */
export class RecordError extends SafetyError {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/**
 * The stat record of the tree at `root` now: one `lstat` walk, nothing read.
 *
 * @throws {TreeError} for a name that is not valid UTF-8, and past `maxPaths`.
 *
 * @example
 * ```ts
 * const now = recordTree("/srv/plugins", { skip: [".fanout-version"] });
 * ```
 */
export function recordTree(
  root: string,
  opts: { skip?: Iterable<string>; maxPaths?: number } = {},
): TreeRecord {
  const entries = walkTree(root, {
    skip: opts.skip,
    maxPaths: opts.maxPaths ?? RECORD_LIMITS.maxPaths,
  }).map(({ path, kind, mode, ino, size, mtimeMs, ctimeMs }) => ({
    path,
    kind,
    mode,
    ino,
    size,
    mtimeMs,
    ctimeMs,
  }));
  return { entries };
}

const KIND_CHAR: Record<TreeKind, string> = { file: "f", dir: "d", symlink: "l", other: "o" };
const CHAR_KIND: Record<string, TreeKind> = { f: "file", d: "dir", l: "symlink", o: "other" };

/** How much of `b` (in UTF-16 units) repeats the start of `a`, never half a surrogate pair. */
function shared(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i > 0 && (b.charCodeAt(i - 1) & 0xfc00) === 0xd800) i--;
  return i;
}

/**
 * The text of record `r`.
 *
 * @throws {RecordError} for a path with a control character (no line could
 * hold it; a tree that matched a manifest has none).
 *
 * @example
 * ```ts
 * await writeRecord(`${stateDir}/tree.record`, recordTree(dest));
 * ```
 */
export function formatRecord(r: TreeRecord): string {
  const lines = [RECORD_HEADER];
  let prev = "";
  for (const e of r.entries) {
    if (CONTROL_CHARS.test(e.path)) {
      throw new RecordError(`${quoted(e.path, 200)} holds a control character`);
    }
    const k = shared(prev, e.path);
    lines.push(
      `${KIND_CHAR[e.kind]}${e.mode.toString(8).padStart(4, "0")} ${e.ino.toString(36)} ${
        e.size.toString(36)
      } ${e.mtimeMs.toString(36)} ${e.ctimeMs.toString(36)} ${k.toString(36)} ${e.path.slice(k)}`,
    );
    prev = e.path;
  }
  lines.push("");
  return lines.join("\n");
}

const LINE =
  /^([fdlo])([0-7]{4}) ([0-9a-z]{1,11}) ([0-9a-z]{1,11}) (-?[0-9a-z]{1,11}) (-?[0-9a-z]{1,11}) ([0-9a-z]{1,3}) (.*)$/s;

/**
 * Parses record text, refusing anything past `limits`, of another shape, or
 * with paths out of order, twice, or empty.
 *
 * @throws {RecordError} saying which line and what.
 *
 * @example
 * ```ts
 * const r = parseRecord(await Deno.readTextFile(file));
 * ```
 */
export function parseRecord(text: string, limits: RecordLimits = RECORD_LIMITS): TreeRecord {
  if (text.length > limits.maxBytes) {
    throw new RecordError(`record is longer than ${limits.maxBytes} bytes`);
  }
  if (!text.endsWith("\n")) throw new RecordError("record does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== RECORD_HEADER) {
    throw new RecordError(
      `record line 1: expected ${quoted(RECORD_HEADER)}, got ${quoted(lines[0])}`,
    );
  }
  if (lines.length - 1 > limits.maxPaths) {
    throw new RecordError(`record lists ${lines.length - 1} paths, more than ${limits.maxPaths}`);
  }
  const entries: RecordEntry[] = [];
  let prev = "";
  for (let i = 1; i < lines.length; i++) {
    const bad = (what: string) => new RecordError(`record line ${i + 1}: ${what}`);
    const m = LINE.exec(lines[i]);
    if (!m) throw bad(`not a record line: ${quoted(lines[i], 200)}`);
    const [, kind, mode, ino, size, mtime, ctime, k, rest] = m;
    const keep = parseInt(k, 36);
    if (keep > prev.length) throw bad(`shares ${keep} characters with a path of ${prev.length}`);
    const path = prev.slice(0, keep) + rest;
    if (path === "" || CONTROL_CHARS.test(path)) {
      throw bad(`path ${quoted(path, 200)} is not valid`);
    }
    if (entries.length && comparePaths(prev, path) >= 0) {
      throw bad(`${quoted(path, 200)} is not after ${quoted(prev, 200)}`);
    }
    const nums = [ino, size, mtime, ctime].map((x) => parseInt(x, 36));
    if (!nums.every(Number.isSafeInteger)) throw bad("a number is too big");
    entries.push({
      path,
      kind: CHAR_KIND[kind],
      mode: parseInt(mode, 8),
      ino: nums[0],
      size: nums[1],
      mtimeMs: nums[2],
      ctimeMs: nums[3],
    });
    prev = path;
  }
  return { entries };
}

/**
 * Writes record `r` to `path` whole or not at all (a temporary file renamed
 * over it), readable by its owner only.
 *
 * @example
 * ```ts
 * await writeRecord("/var/lib/fanout/plugins/tree.record", recordTree(dest));
 * ```
 */
export async function writeRecord(path: string, r: TreeRecord): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(tmp, formatRecord(r), { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Reads the record at `path`; null when there is none. A symlink, a file of
 * another kind or past `limits` is refused, not read.
 *
 * @throws {RecordError} for a record that cannot be used.
 *
 * @example
 * ```ts
 * const before = readRecord(recordFile); // null: check the whole tree
 * ```
 */
export function readRecord(path: string, limits: RecordLimits = RECORD_LIMITS): TreeRecord | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (!st.isFile) throw new RecordError(`${path} is not a regular file`);
  const bytes = readChecked(path, st, limits.maxBytes);
  if (typeof bytes === "string") {
    throw new RecordError(
      `${path} ${
        bytes === "too big" ? `is more than ${limits.maxBytes} bytes` : "changed while it was read"
      }`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RecordError(`${path} is not valid UTF-8`);
  }
  return parseRecord(text, limits);
}

/** What a fresh walk finds against a record; each list sorted by {@linkcode comparePaths}. */
export interface RecordChanges {
  /** Paths in both whose type, mode, inode, size, mtime or ctime differ. */
  changed: string[];
  /** Paths only the fresh walk has. */
  added: string[];
  /** Paths only the record has. */
  removed: string[];
}

/**
 * The paths whose `lstat` differs between record `before` and a fresh walk
 * `now`, or that only one of them has.
 *
 * @example
 * ```ts
 * const c = compareRecord(readRecord(file)!, recordTree(dest));
 * if (!c.changed.length && !c.added.length && !c.removed.length) console.log("untouched");
 * ```
 */
export function compareRecord(before: TreeRecord, now: TreeRecord): RecordChanges {
  const out: RecordChanges = { changed: [], added: [], removed: [] };
  mergePaths(before.entries, now.entries, (x, y) => {
    if (!y) out.removed.push(x!.path);
    else if (!x) out.added.push(y.path);
    else if (
      x.kind !== y.kind || x.mode !== y.mode || x.ino !== y.ino || x.size !== y.size ||
      x.mtimeMs !== y.mtimeMs || x.ctimeMs !== y.ctimeMs
    ) out.changed.push(y.path);
  });
  return out;
}
