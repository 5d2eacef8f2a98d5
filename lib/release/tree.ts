/**
 * One walk of a tree by `lstat`, for the manifest, the check of a tree
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
 * @throws {TreeError} for a name that is not valid UTF-8, and past `maxPaths`.
 * @throws {Deno.errors.PermissionDenied} etc. as `Deno.readDirSync` does.
 *
 * @example
 * ```ts
 * for (const e of walkTree("/srv/tree", { skip: [".fanout-version"] })) {
 *   console.log(e.kind, e.path, e.size);
 * }
 * ```
 */
export function walkTree(root: string, opts: WalkOptions = {}): TreeEntry[] {
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
  out.sort((a, b) => comparePaths(a.path, b.path));
  for (let i = 1; i < out.length; i++) {
    if (out[i].path === out[i - 1].path) {
      throw new TreeError(out[i].path, unreadable(root, out[i].path));
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
