/**
 * What the tree transfer leaves out, as rsync decides it: `push.exclude`
 * and fanout's own patterns, applied to a whole tree (a path below an
 * excluded directory goes with it).
 *
 * rsync itself says what a transfer sends (a dry run with the transfer's own
 * patterns), so a pattern never means one thing to rsync and another to
 * fanout. The one exception is a pattern that names one entry at the root,
 * `/name` or `/name/` without wildcards (fanout's own files are such): what
 * it matches is plain, and a publish of a few changed paths then needs no
 * dry run at all.
 *
 * For a list of paths (what git says changed) rather than a tree, the list
 * is built as a skeleton (directories as directories, anything else as an
 * empty file) and the dry run made over that: `--files-from` would not do,
 * as it takes a listed path even below an excluded directory.
 *
 * @module
 */

import type { Fleet } from "../config/mod.ts";
import { TransferError } from "../core/mod.ts";
import { describeRsyncFailure, rsyncArgs, runRsync, unescapeName } from "../rsync/mod.ts";

/** `push.exclude` patterns that can never match a git export: git refuses `.git` in a tree. */
const NEVER_EXPORTED = new Set([".git", ".git/", "/.git", "/.git/"]);

/** What rsync prints before each name it would send, so no other line is taken for one. */
const SENT_PREFIX = "fanout-sends:";

/**
 * Whether some `push.exclude` pattern may match a path of a git export;
 * when none can, the transfer leaves out only fanout's own files.
 *
 * @example
 * ```ts
 * if (!excludesExport(fleet)) console.log("push.exclude changes nothing of a publish");
 * ```
 */
export function excludesExport(fleet: Fleet): boolean {
  return !fleet.push.exclude.every((p) => NEVER_EXPORTED.has(p));
}

/**
 * Every path below `root` that a transfer of it with `excludes` sends
 * (relative, without a trailing slash): a dry run into `nowhere`, a path
 * that does not exist, so that every path is new to it.
 *
 * @throws {TransferError} when the dry run fails.
 *
 * @example
 * ```ts
 * const sent = await sentBy(fleet, staging, `${stateDir}/dry-run-nowhere`, ["/.fanout-version", "*.tmp"]);
 * ```
 */
export async function sentBy(
  fleet: Fleet,
  root: string,
  nowhere: string,
  excludes: string[],
): Promise<Set<string>> {
  await Deno.remove(nowhere, { recursive: true }).catch(() => {});
  const sent = new Set<string>();
  const r = await runRsync(
    rsyncArgs({
      source: `${root}/`,
      dest: `${nowhere}/`,
      dryRun: true,
      timeout: fleet.rsync.timeout,
      excludes,
      extra: [`--out-format=${SENT_PREFIX}%n`],
    }),
    {
      rsync: fleet.rsync.path,
      keepItems: false,
      onStdout: (line) => {
        const name = line.startsWith(SENT_PREFIX) ? line.slice(SENT_PREFIX.length) : "./";
        // "./" is the root itself, not a path below it.
        if (name !== "./") sent.add(unescapeName(name).replace(/\/$/, ""));
      },
    },
  );
  if (r.code !== 0) {
    throw new TransferError(
      `cannot list what push.exclude leaves of ${root} (a dry run): ${
        describeRsyncFailure(r)
      }; nothing was sent`,
      r.code,
    );
  }
  return sent;
}

/** A path of a list to filter, and whether it is a directory. */
export interface ListedPath {
  path: string;
  dir: boolean;
}

/**
 * Which of `paths` a transfer of a whole tree holding them would send with
 * `excludes` (`paths` holds every directory above each of its paths, as git
 * lists a changed tree's directories). Decided in place when every pattern
 * names one root entry or can never match an export; otherwise by a dry run
 * over a skeleton of `paths` built in `scratch` (emptied first, left for the
 * next run to empty).
 *
 * @throws {TransferError} when the dry run fails.
 *
 * @example
 * ```ts
 * const sent = await sentOf(fleet, excludes, `${stateDir}/difference`, [
 *   { path: "lib", dir: true },
 *   { path: "lib/a.tmp", dir: false },
 * ]);
 * ```
 */
export async function sentOf(
  fleet: Fleet,
  excludes: string[],
  scratch: string,
  paths: readonly ListedPath[],
): Promise<Set<string>> {
  const plain = rootRules(excludes);
  if (plain) return new Set(paths.filter((p) => !plain(p)).map((p) => p.path));
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  const tree = `${scratch}/tree`;
  await buildSkeleton(tree, paths);
  return await sentBy(fleet, tree, `${scratch}/nowhere`, excludes);
}

/**
 * Whether a listed path is excluded, when every pattern of `excludes` names
 * one entry at the root (`/name`, `/name/`: a directory only) or can never
 * match an export; null when some pattern is anything else.
 */
function rootRules(excludes: string[]): ((p: ListedPath) => boolean) | null {
  const any = new Set<string>(), dirs = new Set<string>();
  for (const x of excludes) {
    if (NEVER_EXPORTED.has(x)) continue;
    const m = /^\/([^/*?[\\]+)(\/?)$/.exec(x);
    if (!m) return null;
    (m[2] ? dirs : any).add(m[1]);
  }
  return ({ path, dir }) => {
    const slash = path.indexOf("/");
    const top = slash < 0 ? path : path.slice(0, slash);
    return any.has(top) || (dirs.has(top) && (dir || slash >= 0));
  };
}

/** Makes `paths` below `root`: directories, and an empty file for anything else. */
async function buildSkeleton(root: string, paths: readonly ListedPath[]): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (const p of paths) {
    const at = `${root}/${p.path}`;
    if (p.dir) await Deno.mkdir(at, { recursive: true });
    else {
      await Deno.mkdir(at.slice(0, at.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(at, new Uint8Array());
    }
  }
}
