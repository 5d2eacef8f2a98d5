// Small file-system helpers shared by several modules.

import { SERVER_TEMP_DIR } from "./defaults.ts";

/** True when something (a file, a directory, a link, even a dangling one) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * {@linkcode exists}, synchronously. For the client's few small files: each
 * async file-system call costs a thread hop, and a no-op cron run makes a
 * dozen of them in a run only tens of milliseconds long.
 */
export function existsNow(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The text of `path`, or null when it cannot be read. */
export async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

/** {@linkcode readTextOrNull}, synchronously (see {@linkcode existsNow}). */
export function readTextNow(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Thrown by {@linkcode readTextUpTo} when a file holds more than its bound. */
export class FileTooBigError extends Error {
  /** The size seen: at least `max + 1` bytes. */
  readonly size: number;
  constructor(path: string, size: number, max: number) {
    super(`${path} is ${size} bytes, more than ${max}`);
    this.name = "FileTooBigError";
    this.size = size;
  }
}

/**
 * The text of the regular file `path`, read without ever holding more than
 * `max + 1` bytes: a file that is (or grows) bigger throws
 * {@linkcode FileTooBigError} before it is parsed; a FIFO or a device is
 * refused instead of read.
 *
 * @throws {Deno.errors.NotFound} etc. as Deno.open does; {@linkcode FileTooBigError}; a
 * `Deno.errors.IsADirectory` for anything that is not a regular file.
 *
 * @example
 * ```ts
 * const text = await readTextUpTo("/etc/fanout/fanout.yaml", 1 << 20);
 * ```
 */
export async function readTextUpTo(path: string, max: number): Promise<string> {
  const st = await Deno.stat(path);
  if (!st.isFile) throw new Deno.errors.IsADirectory(`${path} is not a regular file`);
  if (st.size > max) throw new FileTooBigError(path, st.size, max);
  using f = await Deno.open(path);
  const buf = new Uint8Array(max + 1);
  let n = 0;
  while (n < buf.length) {
    const got = await f.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  if (n > max) throw new FileTooBigError(path, n, max);
  return new TextDecoder().decode(buf.subarray(0, n));
}

/**
 * The text of the regular file at `path` when it holds at most `maxBytes`;
 * null when it is missing, is not a regular file (a symlink is never
 * followed: one planted by a server could point at `/dev/zero` or a secret),
 * or is larger. For files a server supplies (the version marker, the
 * version log): what is read from them is bounded.
 *
 * @example
 * ```ts
 * const text = readSmallFile(`${dest}/.fanout-version`, 4096);
 * if (text === null) console.log("no usable marker");
 * ```
 */
export function readSmallFile(path: string, maxBytes: number): string | null {
  const bytes = readSmallBytes(path, maxBytes);
  return bytes === null ? null : new TextDecoder().decode(bytes);
}

/**
 * The bytes of the regular file at `path`, as {@linkcode readSmallFile}
 * reads them: null when missing, not a regular file (never through a
 * symlink, nor one swapped in after the `lstat`), or larger than
 * `maxBytes`. Memory follows the file, not the bound.
 *
 * @example
 * ```ts
 * const manifest = readSmallBytes(`${tree}/.fanout-manifest`, 128 << 20);
 * ```
 */
export function readSmallBytes(path: string, maxBytes: number): Uint8Array<ArrayBuffer> | null {
  let before: Deno.FileInfo;
  try {
    before = Deno.lstatSync(path);
  } catch {
    return null;
  }
  if (!before.isFile || before.size > maxBytes) return null;
  let file: Deno.FsFile | null = null;
  try {
    file = Deno.openSync(path, { read: true });
    // Swapped for a symlink or another file since the lstat: not the file checked.
    const st = file.statSync();
    if (!st.isFile || st.ino !== before.ino || st.dev !== before.dev) return null;
    // One byte over the size seen, to tell a file that grew since; grown
    // past maxBytes, it is not read further.
    let buf = new Uint8Array(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > maxBytes) break;
        const more = new Uint8Array(Math.min(n * 2, maxBytes + 1));
        more.set(buf);
        buf = more;
      }
      const got = file.readSync(buf.subarray(n));
      if (got === null || got === 0) break;
      n += got;
    }
    return n > maxBytes ? null : buf.subarray(0, n);
  } catch {
    return null;
  } finally {
    file?.close();
  }
}

/**
 * The first component of the relative path `rel` below `root` that is a
 * symlink (or a `..`), checking every component but the last by `lstat`
 * (the last too with `whole`: a directory that is itself entered); null
 * when the path leads only through directories, or nowhere (a component
 * missing, or a file). What a server names is checked so before anything is
 * deleted, moved or written there: a symlink in the middle would lead
 * outside `root`.
 *
 * @example
 * ```ts
 * // /apps/plugins/lnk -> /etc
 * detour("/apps/plugins", "lnk/passwd"); // "lnk"
 * detour("/apps/plugins", "dir/a.txt"); // null
 * detour("/apps/plugins", "lnk", { whole: true }); // "lnk"
 * ```
 */
export function detour(root: string, rel: string, opts: { whole?: boolean } = {}): string | null {
  const parts = rel.split("/").filter((p) => p && p !== ".");
  const up = parts.indexOf("..");
  if (up >= 0) return parts.slice(0, up + 1).join("/");
  for (let i = 1; i < parts.length + (opts.whole ? 1 : 0); i++) {
    const sub = parts.slice(0, i).join("/");
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(`${root}/${sub}`);
    } catch {
      return null;
    }
    if (st.isSymlink) return sub;
    if (!st.isDirectory) return null;
  }
  return null;
}

/**
 * Writes `bytes` to `path` through a temporary file renamed over it (mode
 * 600): a reader sees the old content or the new, never half of it. For
 * kept state that is nobody else's to read.
 *
 * @example
 * ```ts
 * await writePrivate("/var/lib/fanout/git1/staging.record", bytes);
 * ```
 */
export async function writePrivate(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempFor(path);
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** `<name>.<pid>.tmp`: a temporary file of a running writer. */
const TEMP_NAME = /^.+\.([1-9][0-9]{0,9})\.tmp$/;

/**
 * The temporary file this process writes `path` through before renaming it
 * over `path` (`<path>.<pid>.tmp`): a writer killed between the two leaves
 * it, and {@linkcode sweepTemps} knows it by that name.
 *
 * @example
 * ```ts
 * const tmp = tempFor(`${stateDir}/client-status.json`);
 * Deno.writeTextFileSync(tmp, text);
 * Deno.renameSync(tmp, `${stateDir}/client-status.json`);
 * ```
 */
export function tempFor(path: string): string {
  return `${path}.${Deno.pid}.tmp`;
}

/**
 * Removes from `dir` the temporary files ({@linkcode tempFor}) of writers
 * that no longer run: a run killed mid-write leaves one each time. Only
 * regular files named so, never through a symlink; a pid that runs again
 * (reused) keeps its file until a later sweep. Returns how many went.
 *
 * @example
 * ```ts
 * await sweepTemps(stateDir); // at start, before anything of this run is written
 * ```
 */
export async function sweepTemps(dir: string): Promise<number> {
  let gone = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      const pid = e.isFile ? TEMP_NAME.exec(e.name)?.[1] : undefined;
      if (!pid || Number(pid) === Deno.pid || existsNow(`/proc/${pid}`)) continue;
      await Deno.remove(`${dir}/${e.name}`).then(() => gone++, () => {});
    }
  } catch { /* no dir yet, or unreadable: nothing to sweep */ }
  return gone;
}

/**
 * Whether a transfer into the tree at `root` wrote fanout's temp dir
 * ({@linkcode SERVER_TEMP_DIR}) at or after `since` (ms since the epoch):
 * the dir's own mtime (a file named or renamed out of it) or one of its
 * first entries'. A transfer lands each path through it, so this is how a
 * server sees a version landing before its marker does, even through a big
 * file that raises no event in the tree. Never looks through a symlink, and
 * never lists a temp dir over {@linkcode MAX_TEMP_LISTED_BYTES}: a listing
 * reads every entry at once on the thread every push and check waits on,
 * and one transfer holds one file there, so a dir that big holds junk (left
 * or planted) and its own mtime must do.
 *
 * @example
 * ```ts
 * if (receivingSince(tree, Date.now() - 500)) console.log("a transfer is landing");
 * ```
 */
export function receivingSince(root: string, since: number): boolean {
  const dir = `${root}/${SERVER_TEMP_DIR}`;
  const fresh = (path: string) => {
    try {
      const st = Deno.lstatSync(path);
      return { dir: st.isDirectory, size: st.size, fresh: (st.mtime?.getTime() ?? 0) >= since };
    } catch {
      return null;
    }
  };
  const top = fresh(dir);
  if (!top?.dir) return false;
  if (top.fresh) return true;
  if (top.size > MAX_TEMP_LISTED_BYTES) return false;
  try {
    let n = 0;
    for (const e of Deno.readDirSync(dir)) {
      if (fresh(`${dir}/${e.name}`)?.fresh) return true;
      if (++n >= MAX_TEMP_LOOKED_AT) break;
    }
  } catch { /* gone meanwhile: nothing is received */ }
  return false;
}

/** The most entries of the temp dir looked at: one rsync writes one file at a time. */
const MAX_TEMP_LOOKED_AT = 64;

/**
 * The largest temp dir listed (its size as lstat says: its entries' names
 * on ext4, btrfs or tmpfs): room for far more than the few files the
 * transfers landing at once hold, and a listing of at most a few thousand
 * names.
 */
const MAX_TEMP_LISTED_BYTES = 32 * 1024;
