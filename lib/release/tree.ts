/**
 * One walk of a tree by `lstat` (find's, or Deno's where find cannot), for the manifest, the check of a tree
 * against one and the client's stat record: every path below the root,
 * relative, in one order (by code point, which is the order of the names'
 * UTF-8 bytes), never through a symlink.
 *
 * Deno reads a name that is not valid UTF-8 as another name (with U+FFFD in
 * it), so such a file cannot be read by its name: the walk refuses it (its
 * `lstat` finds nothing, or finds the file truly named so, twice) instead of
 * skipping it.
 *
 * @module
 */

import { quoted, SafetyError } from "../core/mod.ts";

/** What a path is; "other" is a FIFO, a socket or a device. */
export type TreeKind = "file" | "dir" | "symlink" | "other";

/**
 * One path of a walked tree, with what its own `lstat` gave that fanout
 * uses (plain numbers: a Deno.FileInfo costs about a kilobyte, and a walk
 * holds one entry per path).
 */
export interface TreeEntry {
  /** Relative to the root, `/`-separated, without `./`. */
  path: string;
  kind: TreeKind;
  /** Permission bits, 0 to 0o7777. */
  mode: number;
  size: number;
  ino: number;
  dev: number;
  /** Milliseconds since the epoch. */
  mtimeMs: number;
  /** Milliseconds since the epoch, whole seconds (as Deno gives it). */
  ctimeMs: number;
}

/**
 * A tree that cannot be walked as it is: a name that is not valid UTF-8 (or
 * a file that vanished while walked), or more paths than allowed (exit 4).
 *
 * @example
 * ```ts
 * try {
 *   walkTree("/srv/tree");
 * } catch (e) {
 *   if (e instanceof TreeError) console.error(`${e.path}: ${e.message}`);
 * }
 * ```
 */
export class TreeError extends SafetyError {
  /** The path (relative to the root) the walk stopped at. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.name = "TreeError";
    this.path = path;
  }
}

/** Options of {@linkcode walkTree}. */
export interface WalkOptions {
  /** Relative paths left out, with what is below them (the marker, the manifest). */
  skip?: Iterable<string>;
  /** The most paths walked; one more throws {@linkcode TreeError}. */
  maxPaths?: number;
  /**
   * Called with each path before its `lstat`: false leaves it out, with what
   * is below it (a check against a manifest walks only what it lists, and
   * notes the rest).
   */
  filter?: (path: string) => boolean;
}

/** A UTF-16 unit that `<` and code point order may rank differently. */
const HIGH_UNIT = /[\ud800-\uffff]/;

/**
 * Orders two paths by code point, as their UTF-8 bytes order: JavaScript's
 * `<` compares UTF-16 units, which puts U+E000…U+FFFF after the surrogate
 * pairs of U+10000 and above.
 *
 * @example
 * ```ts
 * ["b", "a/b", "a-b", "a"].sort(comparePaths); // ["a", "a-b", "a/b", "b"]
 * ```
 */
export function comparePaths(a: string, b: string): number {
  // The two orders differ only where both strings hold a unit of D800 or
  // above at their first difference: when either holds none, `<` answers
  // (natively, where the loop below runs in V8's interpreter, --lite-mode).
  if (!HIGH_UNIT.test(a) || !HIGH_UNIT.test(b)) return a < b ? -1 : a === b ? 0 : 1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i), y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (D800-DFFF) above E000-FFFF: code point order.
      x += x < 0xe000 ? 0x2000 : -0x800;
      y += y < 0xe000 ? 0x2000 : -0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

function kindOf(st: Deno.FileInfo): TreeKind {
  return st.isFile ? "file" : st.isDirectory ? "dir" : st.isSymlink ? "symlink" : "other";
}

/**
 * Every path below `root` (not `root` itself), sorted by
 * {@linkcode comparePaths}, each with what its `lstat` gave. Symlinks are listed, never
 * followed; `root` itself is the caller's and may be one.
 *
 * One `find -printf` lists the tree (a process that stats in C, without a
 * call into Deno and a FileInfo a path), read as it writes; where find
 * cannot run or reports any error, the walk is made by `readDirSync` and
 * `lstatSync` instead, which throws what it meets (what find met, unless it
 * is gone by then).
 *
 * @throws {TreeError} for a name that is not valid UTF-8, and past `maxPaths`.
 * @throws {Deno.errors.PermissionDenied} etc. as `Deno.readDirSync` does.
 *
 * @example
 * ```ts
 * for (const e of await walkTree("/srv/tree", { skip: [".fanout-version"] })) {
 *   console.log(e.kind, e.path, e.size);
 * }
 * ```
 */
export async function walkTree(root: string, opts: WalkOptions = {}): Promise<TreeEntry[]> {
  return await walkTreeByFind(root, opts) ?? walkTreeByLstat(root, opts);
}

/**
 * The walk by find alone, sorted, or null where find cannot make it (not
 * there, not allowed to run, an error met): what {@linkcode walkTree} tries
 * first, for tests and benchmarks to compare the two ways.
 *
 * @throws {TreeError} for a name that is not valid UTF-8, and past `maxPaths`.
 *
 * @example
 * ```ts
 * const byFind = await walkTreeByFind("/srv/tree");
 * if (byFind) assert.deepEqual(byFind, walkTreeByLstat("/srv/tree"));
 * ```
 */
export async function walkTreeByFind(
  root: string,
  opts: WalkOptions = {},
): Promise<TreeEntry[] | null> {
  const out = await walkByFind(root, opts);
  return out && sorted(root, out);
}

function sorted(root: string, out: TreeEntry[]): TreeEntry[] {
  sortByPath(out);
  for (let i = 1; i < out.length; i++) {
    if (out[i].path === out[i - 1].path) {
      throw new TreeError(out[i].path, unreadable(root, out[i].path));
    }
  }
  return out;
}

/**
 * Sorts `entries` by {@linkcode comparePaths}: by the engine's own string
 * order (UTF-16 units, no comparator called, which costs most in V8's lite
 * mode), checked pair by pair and sorted again by code point only where
 * surrogates made the two orders differ. A NUL, in no path, below every
 * character, keeps a path before the paths it is a prefix of.
 */
function sortByPath(entries: TreeEntry[]): void {
  const keys = entries.map((e, i) => `${e.path}\0${i}`).sort();
  const order = keys.map((k) => entries[Number(k.slice(k.lastIndexOf("\0") + 1))]);
  for (let i = 1; i < order.length; i++) {
    if (comparePaths(order[i - 1].path, order[i].path) > 0) {
      order.sort((a, b) => comparePaths(a.path, b.path));
      break;
    }
  }
  for (let i = 0; i < order.length; i++) entries[i] = order[i];
}

/**
 * One record a path: type, permission bits (octal), size, inode, device,
 * mtime and ctime (seconds.nanoseconds), the relative path; NUL-terminated,
 * so that any name is read exactly.
 */
const FIND_FORMAT = "%y %m %s %i %D %T@ %C@ %P\\0";
/** The longest record read: a path past PATH_MAX, which lstat refuses, is the fallback's to refuse. */
const MAX_RECORD = 8192;
const KIND_OF_TYPE: Record<string, TreeKind> = { f: "file", d: "dir", l: "symlink" };

/** `path` as a pattern of find's -path, every wildcard escaped. */
function literalPattern(path: string): string {
  return `./${path}`.replace(/[*?[\]\\]/g, "\\$&");
}

function findArgs(skip: Set<string>): string[] {
  const args = [".", "-mindepth", "1"];
  if (skip.size) {
    const any = [...skip].flatMap((p, i) => [...(i ? ["-o"] : []), "-path", literalPattern(p)]);
    args.push("(", ...any, ")", "-prune", "-o");
  }
  return [...args, "-printf", FIND_FORMAT];
}

/**
 * The walk by one `find` run in `root` (its cwd, so a symlinked root is
 * followed and nothing below it is), or null where find cannot be run, fails
 * or writes what is not a record: the caller walks by lstat then, which
 * meets the same trouble and throws what it is.
 */
async function walkByFind(root: string, opts: WalkOptions): Promise<TreeEntry[] | null> {
  const skip = new Set(opts.skip ?? []);
  const max = opts.maxPaths ?? Infinity;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("find", {
      args: findArgs(skip),
      cwd: root,
      env: { LC_ALL: "C" },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch {
    return null;
  }
  const out: TreeEntry[] = [];
  const reader = child.stdout.getReader();
  let done = false;
  try {
    const records = new RecordReader(root, (e) => {
      if (skip.has(e.path) || (opts.filter && !opts.filter(e.path))) return false;
      if (out.length >= max) throw new TreeError(e.path, `more than ${max} paths below ${root}`);
      out.push(e);
      return true;
    });
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      if (!records.push(value)) return null;
    }
    done = true;
    const status = await child.status;
    return status.success && records.empty() ? out : null;
  } finally {
    if (!done) {
      try {
        child.kill("SIGKILL");
      } catch { /* it has exited */ }
      await reader.cancel().catch(() => {});
      await child.status;
    }
  }
}

/**
 * Splits find's output into entries as it arrives, and leaves out what is
 * below a path `keep` refuses (find writes a directory before what is in it,
 * so that is the run of paths under it that follows).
 */
class RecordReader {
  #rest = new Uint8Array(0);
  #left: string | null = null;
  #fatal = new TextDecoder("utf-8", { fatal: true });
  constructor(readonly root: string, readonly keep: (e: TreeEntry) => boolean) {}

  /** Takes the next bytes; false where they are not find's records. */
  push(chunk: Uint8Array): boolean {
    let buf = chunk;
    if (this.#rest.length) {
      buf = new Uint8Array(this.#rest.length + chunk.length);
      buf.set(this.#rest);
      buf.set(chunk, this.#rest.length);
    }
    const end = buf.lastIndexOf(0) + 1;
    this.#rest = buf.slice(end);
    if (this.#rest.length > MAX_RECORD) return false;
    if (!end) return true;
    const bytes = buf.subarray(0, end);
    let whole: string | null = null;
    try {
      whole = this.#fatal.decode(bytes);
    } catch { /* record by record, below */ }
    if (whole !== null) return this.#records(whole, true);
    // Record by record: a name that is not valid UTF-8 is read as Deno reads
    // it (U+FFFD for what is not), so that skip and filter see what they
    // would see in a walk by lstat, which refuses it only if kept.
    const lossy = new TextDecoder();
    for (let at = 0; at < bytes.length;) {
      const nul = bytes.indexOf(0, at);
      const rec = bytes.subarray(at, nul + 1);
      at = nul + 1;
      let text: string, valid = true;
      try {
        text = this.#fatal.decode(rec);
      } catch {
        text = lossy.decode(rec);
        valid = false;
      }
      if (!this.#records(text, valid)) return false;
    }
    return true;
  }

  /** The records of `text`, whole ones; false for what is not one. */
  #records(text: string, valid: boolean): boolean {
    const re = new RegExp(RECORD.source, "y");
    for (let m; re.lastIndex < text.length;) {
      if (!(m = re.exec(text))) return false;
      const e = entryOf(m);
      if (this.#left !== null && e.path.startsWith(this.#left)) continue;
      const kept = this.keep(e);
      if (kept && !valid) throw new TreeError(e.path, unreadable(this.root, e.path));
      this.#left = kept ? null : `${e.path}/`;
    }
    return true;
  }

  /** Whether every byte read was a whole record. */
  empty(): boolean {
    return this.#rest.length === 0;
  }
}

/**
 * One record of {@linkcode FIND_FORMAT}: type, mode, size, inode, device,
 * the mtime's seconds and nanoseconds (find writes ten digits, the last a
 * zero), the ctime's seconds, the path. One regular expression a record
 * costs less than splitting it by hand in V8's lite mode.
 */
const RECORD =
  /([a-zA-Z]) ([0-7]{1,5}) (\d+) (\d+) (\d+) (-?\d+)\.(\d{9})\d* (-?\d+)\.\d+ ([^\0]+)\0/;

/**
 * The entry of one matched record, its times in milliseconds as Deno gives
 * them: the mtime toward zero (find's seconds are `tv_sec`, signed, and its
 * nanoseconds `tv_nsec`, not), the ctime in whole seconds.
 */
function entryOf(m: RegExpExecArray): TreeEntry {
  const ns = Number(m[7]);
  const ms = Number(m[6]) * 1000 + Math.floor(ns / 1e6);
  return {
    path: m[9],
    kind: KIND_OF_TYPE[m[1]] ?? "other",
    mode: parseInt(m[2], 8) & 0o7777,
    size: Number(m[3]),
    ino: Number(m[4]),
    dev: Number(m[5]),
    mtimeMs: ms < 0 && ns % 1e6 ? ms + 1 : ms,
    ctimeMs: Number(m[8]) * 1000,
  };
}

/** The walk by `Deno.readDirSync` and `Deno.lstatSync`, unsorted. */
function walkByLstat(root: string, opts: WalkOptions): TreeEntry[] {
  const skip = new Set(opts.skip ?? []);
  const max = opts.maxPaths ?? Infinity;
  const out: TreeEntry[] = [];
  const dirs = [""];
  while (dirs.length) {
    const dir = dirs.pop()!;
    for (const e of Deno.readDirSync(dir ? `${root}/${dir}` : root)) {
      const path = dir ? `${dir}/${e.name}` : e.name;
      if (skip.has(path) || (opts.filter && !opts.filter(path))) continue;
      if (out.length >= max) throw new TreeError(path, `more than ${max} paths below ${root}`);
      const entry = statEntry(root, path);
      out.push(entry);
      if (entry.kind === "dir") dirs.push(path);
    }
  }
  return out;
}

/**
 * The entry of one path below `root`, by its own `lstat` (a symlink is
 * listed, never followed): what {@linkcode walkTree} gives for it.
 *
 * @throws {TreeError} when nothing is found by that name (it is not valid
 * UTF-8, or it vanished).
 *
 * @example
 * ```ts
 * const e = statEntry("/srv/tree", "lib/a.ts");
 * console.log(e.kind, e.size);
 * ```
 */
export function statEntry(root: string, path: string): TreeEntry {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(`${root}/${path}`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new TreeError(path, unreadable(root, path));
  }
  return {
    path,
    kind: kindOf(st),
    mode: st.mode! & 0o7777,
    size: st.size,
    ino: st.ino!,
    dev: st.dev,
    mtimeMs: st.mtime?.getTime() ?? 0,
    ctimeMs: st.ctime?.getTime() ?? 0,
  };
}

/**
 * The walk by lstat alone, sorted: what {@linkcode walkTree} falls back to
 * (and what throws the error find met, as `Deno.readDirSync` does).
 *
 * @example
 * ```ts
 * const entries = walkTreeByLstat("/srv/tree", { skip: [".fanout-version"] });
 * ```
 */
export function walkTreeByLstat(root: string, opts: WalkOptions = {}): TreeEntry[] {
  return sorted(root, walkByLstat(root, opts));
}

function unreadable(root: string, path: string): string {
  return `${quoted(`${root}/${path}`, 200)} cannot be read by its name: ` +
    "its name is not valid UTF-8 (or it vanished while the tree was walked)";
}

/**
 * Walks two lists sorted by {@linkcode comparePaths} side by side, calling
 * `each` once per path with its entry in each list (undefined where a list
 * lacks it), in order.
 *
 * @example
 * ```ts
 * mergePaths(before, after, (x, y) => {
 *   if (!x) console.log("added", y!.path);
 *   else if (!y) console.log("removed", x.path);
 * });
 * ```
 */
export function mergePaths<A extends { path: string }, B extends { path: string }>(
  a: readonly A[],
  b: readonly B[],
  each: (x: A | undefined, y: B | undefined) => void,
): void {
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    const order = i === a.length ? 1 : j === b.length ? -1 : comparePaths(a[i].path, b[j].path);
    if (order < 0) each(a[i++], undefined);
    else if (order > 0) each(undefined, b[j++]);
    else each(a[i++], b[j++]);
  }
}
