/**
 * Which directories a client may mirror into. A mirror deletes whatever the
 * source lacks, so a typo in `client.dest` must never reach rsync: the root,
 * system directories, home directories and any non-empty directory fanout
 * did not create are refused (exit 4) before anything is touched.
 *
 * A directory is fanout's when it holds the destination marker
 * (`.fanout-dest`, excluded from every sync so `--delete` never removes it
 * and the source can never supply it). The state dir also remembers the
 * directory by device and inode, so a marker deleted by hand is put back
 * instead of turning every later run into a refusal, while a directory
 * replaced by something else (a fresh `git clone`) is still refused.
 *
 * @module
 */

import { DEST_MARKER, existsNow, SafetyError, UsageError, VERSION } from "../core/mod.ts";

/** Directories that are never a destination, whatever they hold. */
export const SYSTEM_DIRS: readonly string[] = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/home",
  "/lib",
  "/lib32",
  "/lib64",
  "/libx32",
  "/lost+found",
  "/media",
  "/mnt",
  "/opt",
  "/proc",
  "/root",
  "/run",
  "/sbin",
  "/srv",
  "/sys",
  "/tmp",
  "/usr",
  "/usr/bin",
  "/usr/include",
  "/usr/lib",
  "/usr/lib64",
  "/usr/libexec",
  "/usr/local",
  "/usr/local/bin",
  "/usr/local/lib",
  "/usr/local/sbin",
  "/usr/sbin",
  "/usr/share",
  "/usr/src",
  "/var",
  "/var/cache",
  "/var/lib",
  "/var/log",
  "/var/spool",
  "/var/tmp",
];

/** Nothing below these is a destination: kernel and device filesystems, boot files. */
const SYSTEM_TREES = ["/proc", "/sys", "/dev", "/boot", "/run", "/etc"];

/** What a destination is before a sync. */
export type DestState =
  /** Does not exist yet: it will be created and marked. */
  | "absent"
  /** Exists and is empty: it will be marked. */
  | "empty"
  /** Holds fanout's marker. */
  | "marked"
  /** Unmarked and not empty, but `--adopt` was given: it will be taken over. */
  | "adopt";

/** Options of {@linkcode checkDest}. */
export interface DestCheck {
  /** `--adopt`: take over a non-empty unmarked directory (once). */
  adopt?: boolean;
  /** The host's state dir: a dest that contains it would delete it. */
  stateDir?: string;
  /** `client.backup_dir`: must not be inside dest. */
  backupDir?: string | null;
  /** Where the state dir remembers the destination (see {@linkcode rememberDest}). */
  recordFile?: string;
  /** Home directories to refuse; default: /etc/passwd and /home/*. */
  homes?: Map<string, string>;
}

/**
 * Checks that `dest` may be mirrored into and says what it is.
 *
 * @throws {SafetyError} for `/`, a system or home directory, a dest that
 * holds the state dir, something that is not a directory, or a non-empty
 * directory without the marker (unless `adopt`).
 * @throws {UsageError} when the backup dir is inside dest.
 *
 * @example
 * ```ts
 * const state = await checkDest("/apps/dat/plugins", { stateDir: "/var/lib/fanout/web1" });
 * if (state === "absent") await Deno.mkdir("/apps/dat/plugins", { recursive: true });
 * ```
 */
export async function checkDest(dest: string, opts: DestCheck = {}): Promise<DestState> {
  const literal = normalize(dest);
  // Sync calls throughout: see existsNow in lib/core/fs.ts.
  const real = resolve(literal);
  const homes = opts.homes ?? homeDirs();
  for (const p of new Set([literal, real])) {
    const why = dangerous(p, homes);
    if (why) {
      const via = p !== literal ? ` (${literal} resolves to ${p})` : "";
      throw new SafetyError(`refusing dest ${p}${via}: ${why}; nothing changed`);
    }
  }
  for (
    const [what, dir] of [["the state dir", opts.stateDir], [
      "the backup dir",
      opts.backupDir,
    ]] as const
  ) {
    if (!dir) continue;
    const d = normalize(dir);
    if (inside(d, literal) || inside(d, real)) {
      const msg = `refusing dest ${literal}: ${what} ${d} is inside it, and a sync deletes ` +
        `what the source lacks; move ${what} elsewhere`;
      if (what === "the backup dir") throw new UsageError(msg);
      throw new SafetyError(msg);
    }
  }

  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(literal);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "absent";
    throw new SafetyError(`cannot inspect dest ${literal}: ${(e as Error).message}`);
  }
  if (!info.isDirectory) {
    throw new SafetyError(`refusing dest ${literal}: it is not a directory; nothing changed`);
  }
  if (existsNow(`${literal}/${DEST_MARKER}`)) return "marked";
  if (isEmpty(literal)) return "empty";
  if (opts.recordFile && remembered(opts.recordFile, literal, info)) {
    // Same directory as last time (same device and inode): its marker was
    // deleted by hand. Put it back rather than refuse every run from now on.
    await writeDestMarker(literal, "restored");
    return "marked";
  }
  if (opts.adopt) return "adopt";
  throw new SafetyError(
    `refusing dest ${literal}: it is not empty and has no ${DEST_MARKER} marker, so it is ` +
      `not a fanout destination; nothing changed (to take over an existing checkout once, ` +
      `run with --adopt: it drops .git and mirrors the source)`,
  );
}

/**
 * Why `path` is never a destination, or null when it may be one.
 *
 * @example
 * ```ts
 * dangerous("/etc", new Map()); // "it is a system directory"
 * dangerous("/apps/dat/plugins", new Map()); // null
 * ```
 */
export function dangerous(path: string, homes: Map<string, string>): string | null {
  const p = normalize(path);
  if (p === "/") return "it is the root directory";
  if (SYSTEM_DIRS.includes(p)) return "it is a system directory";
  const tree = SYSTEM_TREES.find((t) => inside(p, t));
  if (tree) return `it is inside the system directory ${tree}`;
  const user = homes.get(p);
  if (user !== undefined) return `it is the home directory of ${user}`;
  return null;
}

/**
 * Home directories: each user's from /etc/passwd, and every entry of /home.
 * Maps the directory to a description of whose it is.
 */
export function homeDirs(passwd = "/etc/passwd"): Map<string, string> {
  const homes = new Map<string, string>();
  try {
    for (const line of Deno.readTextFileSync(passwd).split("\n")) {
      const f = line.split(":");
      if (f.length < 7 || !f[5].startsWith("/")) continue;
      const dir = normalize(f[5]);
      // "/" and placeholders are not homes worth naming; "/" is refused anyway.
      if (dir === "/" || dir === "/nonexistent" || homes.has(dir)) continue;
      homes.set(dir, `user ${f[0]}`);
    }
  } catch { /* no passwd file: nothing to add */ }
  try {
    for (const e of Deno.readDirSync("/home")) {
      const dir = `/home/${e.name}`;
      if (!homes.has(dir)) homes.set(dir, `a user (${dir})`);
    }
  } catch { /* no /home */ }
  return homes;
}

/**
 * Writes the marker that makes `dir` a fanout destination.
 *
 * @example
 * ```ts
 * await writeDestMarker("/apps/dat/plugins", "created");
 * ```
 */
export async function writeDestMarker(
  dir: string,
  how: "created" | "adopted" | "restored",
): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/${DEST_MARKER}`,
    JSON.stringify({ managed_by: "fanout", how, fanout: VERSION, at: new Date().toISOString() }) +
      "\n",
  );
}

/**
 * Records in the state dir that `dir` (by device and inode) is this host's
 * destination, so a hand-deleted marker can be restored safely.
 */
export async function rememberDest(recordFile: string, dir: string): Promise<void> {
  try {
    const st = await Deno.stat(dir);
    await Deno.writeTextFile(
      recordFile,
      JSON.stringify({ dest: normalize(dir), dev: st.dev, ino: st.ino }) + "\n",
    );
  } catch { /* best effort: the in-dest marker is the primary record */ }
}

function remembered(recordFile: string, dir: string, st: Deno.FileInfo): boolean {
  try {
    const r = JSON.parse(Deno.readTextFileSync(recordFile));
    return r.dest === dir && r.dev === st.dev && r.ino === st.ino && st.ino !== null;
  } catch {
    return false;
  }
}

/**
 * Takes over an existing checkout: drops its `.git` (a directory, or the file
 * a worktree or submodule has) and marks the directory.
 *
 * @example
 * ```ts
 * const dropped = await adoptDest("/apps/dat/plugins"); // true when there was a .git
 * ```
 */
export async function adoptDest(dir: string): Promise<boolean> {
  let dropped = false;
  try {
    await Deno.remove(`${dir}/.git`, { recursive: true });
    dropped = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await writeDestMarker(dir, "adopted");
  return dropped;
}

/** `/a/b/` → `/a/b`, `/a//b/./c` → `/a/b/c`, `..` resolved lexically. */
export function normalize(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "..") parts.pop();
    else if (part && part !== ".") parts.push(part);
  }
  return "/" + parts.join("/");
}

/** True when `p` is strictly below `dir`. */
function inside(p: string, dir: string): boolean {
  return dir === "/" ? p !== "/" : p.startsWith(dir + "/");
}

/** Resolves symlinks in `path`, or in its nearest existing ancestor. */
function resolve(path: string): string {
  let head = path;
  let tail = "";
  while (true) {
    try {
      return normalize(Deno.realPathSync(head) + tail);
    } catch {
      if (head === "/") return path;
      const i = head.lastIndexOf("/");
      tail = head.slice(i) + tail;
      head = i === 0 ? "/" : head.slice(0, i);
    }
  }
}

function isEmpty(dir: string): boolean {
  for (const _ of Deno.readDirSync(dir)) return false;
  return true;
}

/**
 * The refusal of a sync that would delete more entries than
 * `client.max_delete` allows.
 *
 * @example
 * ```ts
 * if (extra.length > job.maxDelete) throw tooManyDeletions(job.dest, extra.length, job.maxDelete);
 * ```
 */
export function tooManyDeletions(dest: string, n: number, maxDelete: number): SafetyError {
  return new SafetyError(
    `refusing to sync ${dest}: it would delete ${n} entries, more than ` +
      `client.max_delete (${maxDelete}); nothing changed (is the source's tree complete? ` +
      `raise --max-delete to allow it)`,
  );
}
