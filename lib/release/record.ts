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
 * Binary, in the machine's byte order (a record never leaves its host):
 * written and read as typed arrays, not one number at a time (fanout's V8
 * runs without its optimizing compiler, and a text of a hundred thousand
 * lines took seconds to write). In order:
 *
 * - 16 bytes `fanout-record v1`, then the number of paths N and the length
 *   of the path text in bytes, each a u32;
 * - N × 4 float64: inode, size, mtime and ctime in ms;
 * - N × 2 u32: the kind (0 file, 1 directory, 2 symlink, 3 other) times
 *   0o10000 plus the mode, and how many UTF-16 units the path shares with
 *   the one before;
 * - the rest of each path, in UTF-8, each followed by a newline.
 *
 * @module
 */

import { CONTROL_CHARS, quoted, SafetyError, writePrivate } from "../core/mod.ts";
import { readKept } from "./_read.ts";
import { comparePaths, mergePaths, type TreeEntry, type TreeKind, walkTree } from "./tree.ts";

/** A record's first 16 bytes. */
export const RECORD_MAGIC = "fanout-record v1";

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
  /** The most bytes of a record. */
  maxBytes: number;
  /** The most paths. */
  maxPaths: number;
}

/** The default bounds: a million paths, at up to 64 bytes each on average (48 is usual). */
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
 * const now = await recordTree("/srv/plugins", { skip: [".fanout-version"] });
 * ```
 */
export async function recordTree(
  root: string,
  opts: { skip?: Iterable<string>; maxPaths?: number } = {},
): Promise<TreeRecord> {
  return recordOf(
    await walkTree(root, {
      skip: opts.skip,
      maxPaths: opts.maxPaths ?? RECORD_LIMITS.maxPaths,
    }),
  );
}

/**
 * The stat record of a walk already made: what {@linkcode recordTree} keeps
 * of each entry, for a caller that walks once for its own use too.
 *
 * @example
 * ```ts
 * const tree = await walkTree(root, { skip: RELEASE_SKIP });
 * const record = recordOf(tree);
 * ```
 */
export function recordOf(tree: readonly TreeEntry[]): TreeRecord {
  return {
    entries: tree.map(({ path, kind, mode, ino, size, mtimeMs, ctimeMs }) => ({
      path,
      kind,
      mode,
      ino,
      size,
      mtimeMs,
      ctimeMs,
    })),
  };
}

const KINDS: readonly TreeKind[] = ["file", "dir", "symlink", "other"];
const CODE: Record<TreeKind, number> = { file: 0, dir: 1, symlink: 2, other: 3 };
const HEAD = 24;

/** How much of `b` (in UTF-16 units) repeats the start of `a`, never half a surrogate pair. */
function shared(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i > 0 && (b.charCodeAt(i - 1) & 0xfc00) === 0xd800) i--;
  return i;
}

/**
 * The bytes of record `r`.
 *
 * @throws {RecordError} for a path with a control character (a tree that
 * matched a manifest has none).
 *
 * @example
 * ```ts
 * const bytes = formatRecord(recordTree(dest));
 * parseRecord(bytes); // the same record
 * ```
 */
export function formatRecord(r: TreeRecord): Uint8Array<ArrayBuffer> {
  const n = r.entries.length;
  const nums = new Float64Array(n * 4);
  const codes = new Uint32Array(n * 2);
  const rest: string[] = [];
  let prev = "";
  r.entries.forEach((e, i) => {
    if (CONTROL_CHARS.test(e.path)) {
      throw new RecordError(`${quoted(e.path, 200)} holds a control character`);
    }
    nums[i * 4] = e.ino;
    nums[i * 4 + 1] = e.size;
    nums[i * 4 + 2] = e.mtimeMs;
    nums[i * 4 + 3] = e.ctimeMs;
    const k = shared(prev, e.path);
    codes[i * 2] = CODE[e.kind] * 0o10000 + e.mode;
    codes[i * 2 + 1] = k;
    rest.push(e.path.slice(k), "\n");
    prev = e.path;
  });
  const enc = new TextEncoder();
  const text = enc.encode(rest.join(""));
  const out = new Uint8Array(HEAD + nums.byteLength + codes.byteLength + text.length);
  out.set(enc.encode(RECORD_MAGIC));
  new Uint32Array(out.buffer, 16, 2).set([n, text.length]);
  out.set(new Uint8Array(nums.buffer), HEAD);
  out.set(new Uint8Array(codes.buffer), HEAD + nums.byteLength);
  out.set(text, HEAD + nums.byteLength + codes.byteLength);
  return out;
}

/**
 * Parses record bytes, refusing anything past `limits`, of another length
 * than its counts say, with a number that is not a whole one, a kind out of
 * range, or paths empty, out of order or twice.
 *
 * @throws {RecordError} saying what.
 *
 * @example
 * ```ts
 * const r = parseRecord(await Deno.readFile(file));
 * ```
 */
export function parseRecord(bytes: Uint8Array, limits: RecordLimits = RECORD_LIMITS): TreeRecord {
  if (bytes.length > limits.maxBytes) {
    throw new RecordError(`record is ${bytes.length} bytes, more than ${limits.maxBytes}`);
  }
  if (bytes.length < HEAD || new TextDecoder().decode(bytes.subarray(0, 16)) !== RECORD_MAGIC) {
    throw new RecordError(`record does not start with ${quoted(RECORD_MAGIC)}`);
  }
  // Typed arrays need their own alignment: a copy when the bytes lack it.
  const buf = bytes.byteOffset % 8 ? bytes.slice() : bytes;
  const [n, textLength] = new Uint32Array(buf.buffer, buf.byteOffset + 16, 2);
  if (n > limits.maxPaths) {
    throw new RecordError(`record lists ${n} paths, more than ${limits.maxPaths}`);
  }
  const size = HEAD + n * 40 + textLength;
  if (bytes.length !== size) {
    throw new RecordError(`record is ${bytes.length} bytes, not the ${size} its counts say`);
  }
  const nums = new Float64Array(buf.buffer, buf.byteOffset + HEAD, n * 4);
  const codes = new Uint32Array(buf.buffer, buf.byteOffset + HEAD + n * 32, n * 2);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(HEAD + n * 40));
  } catch {
    throw new RecordError("record paths are not valid UTF-8");
  }
  const rest = text.split("\n");
  if (rest.length !== n + 1 || rest[n] !== "") {
    throw new RecordError(`record holds ${rest.length - 1} paths, not ${n}`);
  }
  const entries: RecordEntry[] = [];
  let prev = "";
  for (let i = 0; i < n; i++) {
    const bad = (what: string) => new RecordError(`record path ${i + 1}: ${what}`);
    const kind = KINDS[Math.floor(codes[i * 2] / 0o10000)];
    const keep = codes[i * 2 + 1];
    if (!kind) throw bad(`kind ${Math.floor(codes[i * 2] / 0o10000)} is not one`);
    if (keep > prev.length) throw bad(`shares ${keep} characters with a path of ${prev.length}`);
    const path = prev.slice(0, keep) + rest[i];
    if (path === "" || CONTROL_CHARS.test(path)) {
      throw bad(`path ${quoted(path, 200)} is not valid`);
    }
    if (i > 0 && comparePaths(prev, path) >= 0) {
      throw bad(`${quoted(path, 200)} is not after ${quoted(prev, 200)}`);
    }
    const ino = nums[i * 4], size = nums[i * 4 + 1];
    const mtimeMs = nums[i * 4 + 2], ctimeMs = nums[i * 4 + 3];
    if (
      !Number.isSafeInteger(ino) || !Number.isSafeInteger(size) ||
      !Number.isSafeInteger(mtimeMs) || !Number.isSafeInteger(ctimeMs)
    ) throw bad("a number is not a whole one");
    entries.push({ path, kind, mode: codes[i * 2] % 0o10000, ino, size, mtimeMs, ctimeMs });
    prev = path;
  }
  return { entries };
}

/**
 * One change of {@linkcode spliceRecord}: at the record's entry `at`, `drop`
 * entries go and `put` come in their place.
 */
export interface RecordSplice {
  at: number;
  drop: number;
  put: readonly RecordEntry[];
}

/**
 * Record bytes `bytes` with `splices` made (sorted by `at`, apart), all else
 * copied as it is: for a caller that knows where its few changed paths sit
 * (the manifest kept with the record lists the same paths in the same
 * order), so a record of a hundred thousand paths is not parsed to change
 * three. `known` is what the caller knows of the record: how many entries
 * it has, and the path of each (`pathOf(i)`). An entry next to a splice is
 * written again against its new neighbour (each entry shares its start with
 * the one before), and its bytes must end as its path does.
 *
 * @throws {RecordError} for bytes that are not a record, another count,
 * splices out of range or order, an entry beside a splice whose bytes do not
 * end as `pathOf` says, or a new path with a control character.
 *
 * @example
 * ```ts
 * // Entry 7 was "lib/a.ts"; now it has new stat fields, and "lib/b.ts" comes after it.
 * const next = spliceRecord(bytes, [{ at: 7, drop: 1, put: [a, b] }], {
 *   count: paths.length,
 *   pathOf: (i) => paths[i],
 * });
 * ```
 */
export function spliceRecord(
  bytes: Uint8Array,
  splices: readonly RecordSplice[],
  known: { count: number; pathOf: (i: number) => string },
): Uint8Array<ArrayBuffer> {
  const old = recordParts(bytes);
  if (old.n !== known.count) {
    throw new RecordError(`record holds ${old.n} paths, not ${known.count}`);
  }
  const out = new RecordWriter(old, known.pathOf);
  let from = 0;
  for (const s of splices) {
    if (s.at < from || s.drop < 0 || s.at + s.drop > old.n) {
      throw new RecordError(`a splice at ${s.at} (${s.drop} out) is out of order or range`);
    }
    out.copy(from, s.at);
    for (const e of s.put) out.add(e);
    from = s.at + s.drop;
  }
  out.copy(from, old.n);
  return out.bytes();
}

/** A record's sections, and where each entry's text starts (`starts[n]`: the end). */
interface RecordParts {
  n: number;
  nums: Float64Array;
  codes: Uint32Array;
  text: Uint8Array;
  starts: Int32Array;
}

/** The sections of record bytes, checked only as far as splicing needs. */
function recordParts(bytes: Uint8Array): RecordParts {
  if (bytes.length < HEAD || new TextDecoder().decode(bytes.subarray(0, 16)) !== RECORD_MAGIC) {
    throw new RecordError(`record does not start with ${quoted(RECORD_MAGIC)}`);
  }
  const buf = bytes.byteOffset % 8 ? bytes.slice() : bytes;
  const [n, textLength] = new Uint32Array(buf.buffer, buf.byteOffset + 16, 2);
  if (buf.length !== HEAD + n * 40 + textLength) {
    throw new RecordError(`record is ${buf.length} bytes, not what its counts say`);
  }
  const text = buf.subarray(HEAD + n * 40);
  const starts = new Int32Array(n + 1);
  let at = 0;
  for (let i = 0; i < n; i++) {
    starts[i] = at;
    const nl = text.indexOf(10, at);
    if (nl < 0) throw new RecordError(`record holds fewer than ${n} paths`);
    at = nl + 1;
  }
  if (at !== text.length) throw new RecordError(`record holds more than ${n} paths`);
  starts[n] = at;
  return {
    n,
    nums: new Float64Array(buf.buffer, buf.byteOffset + HEAD, n * 4),
    codes: new Uint32Array(buf.buffer, buf.byteOffset + HEAD + n * 32, n * 2),
    text,
    starts,
  };
}

/** Builds a record from runs of an old one's entries and new entries, in order. */
class RecordWriter {
  #nums: Float64Array[] = [];
  #codes: Uint32Array[] = [];
  #text: Uint8Array[] = [];
  #n = 0;
  /** The entry written last: an old one's index, or a new one's path. */
  #last: number | string | null = null;
  #enc = new TextEncoder();

  constructor(private old: RecordParts, private pathOf: (i: number) => string) {}

  /** Old entries `a` to `b` (not included); the first written again unless it follows its old neighbour. */
  copy(a: number, b: number): void {
    if (a >= b) return;
    const o = this.old;
    let from = a;
    if (this.#last !== (a === 0 ? null : a - 1)) {
      this.#encoded(this.#oldPath(a), o.nums.subarray(a * 4, a * 4 + 4), o.codes[a * 2]);
      from++;
    }
    this.#nums.push(o.nums.subarray(from * 4, b * 4));
    this.#codes.push(o.codes.subarray(from * 2, b * 2));
    this.#text.push(o.text.subarray(o.starts[from], o.starts[b]));
    this.#n += b - from;
    this.#last = b - 1;
  }

  /** A new entry. */
  add(e: RecordEntry): void {
    if (CONTROL_CHARS.test(e.path)) {
      throw new RecordError(`${quoted(e.path, 200)} holds a control character`);
    }
    const nums = new Float64Array([e.ino, e.size, e.mtimeMs, e.ctimeMs]);
    this.#encoded(e.path, nums, CODE[e.kind] * 0o10000 + e.mode);
    this.#last = e.path;
  }

  bytes(): Uint8Array<ArrayBuffer> {
    const textLength = this.#text.reduce((s, t) => s + t.length, 0);
    const out = new Uint8Array(HEAD + this.#n * 40 + textLength);
    out.set(this.#enc.encode(RECORD_MAGIC));
    new Uint32Array(out.buffer, 16, 2).set([this.#n, textLength]);
    const nums = new Float64Array(out.buffer, HEAD, this.#n * 4);
    const codes = new Uint32Array(out.buffer, HEAD + this.#n * 32, this.#n * 2);
    let i = 0, j = 0, k = HEAD + this.#n * 40;
    for (const x of this.#nums) nums.set(x, (i += x.length) - x.length);
    for (const x of this.#codes) codes.set(x, (j += x.length) - x.length);
    for (const x of this.#text) out.set(x, (k += x.length) - x.length);
    return out;
  }

  /** One entry at the end: its path's start shared with the entry before. */
  #encoded(path: string, nums: Float64Array, code: number): void {
    const prev = this.#last === null
      ? ""
      : typeof this.#last === "string"
      ? this.#last
      : this.pathOf(this.#last);
    const keep = shared(prev, path);
    this.#nums.push(nums);
    this.#codes.push(new Uint32Array([code, keep]));
    this.#text.push(this.#enc.encode(`${path.slice(keep)}\n`));
    this.#n++;
  }

  /** `pathOf(i)`, once it is seen to end as the record's entry `i` does. */
  #oldPath(i: number): string {
    const path = this.pathOf(i);
    const o = this.old;
    const rest = this.#enc.encode(path.slice(o.codes[i * 2 + 1]));
    const mine = o.text.subarray(o.starts[i], o.starts[i + 1] - 1);
    if (rest.length !== mine.length || rest.some((b, x) => b !== mine[x])) {
      throw new RecordError(`record entry ${i + 1} is not ${quoted(path, 200)}`);
    }
    return path;
  }
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
  await writePrivate(path, formatRecord(r));
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
  const bytes = readKept(path, limits.maxBytes, (m) => new RecordError(m));
  return bytes && parseRecord(bytes, limits);
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
