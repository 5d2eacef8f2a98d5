/**
 * Push planning: what one push of a replica sends (the whole tree, a new
 * version's paths, or the paths whose events arrived) and how rsync is
 * told those paths (a list, filter rules, or the whole tree). Kept apart
 * from the engine so the decision is plain logic over the work, the
 * markers and the version log, testable without a transfer.
 *
 * @module
 */

import {
  type Change,
  changesBetween,
  type ChangeSet,
  parseLog,
  parseMarker,
  type Work,
} from "../version/mod.ts";
import { VERSION_FILES, VERSION_LOG } from "../core/mod.ts";
import { unfilterable } from "./filter.ts";

/**
 * What one push sends, decided when it starts ({@linkcode planPush}).
 *
 * @example
 * ```ts
 * const plan: PushPlan = { kind: "scoped", changes: [{ path: "a.txt", deep: false }], reason: "1 paths" };
 * ```
 */
export interface PushPlan {
  /**
   * "full": the whole tree, then the marker; "version": the paths a new
   * version changed by the version log, then its marker; "scoped": the
   * paths whose events arrived, no marker.
   */
  kind: "full" | "version" | "scoped";
  /** The paths of a scoped or version push; none for a whole one. */
  changes: Change[];
  /** Why it runs, for the log. */
  reason: string;
}

/**
 * How one run picks its paths: the whole tree; filter rules (deletions,
 * new directories); or a plain list of paths that all exist.
 *
 * @example
 * ```ts
 * const how: Scope = await scopeOf(source, plan); // "full", "filter" or "list"
 * ```
 */
export type Scope = "full" | "filter" | "list";

/**
 * The work to push now: a whole push asked for (a storm, as a publish of
 * many files makes one, or a reconcile) while the version log can say what
 * a new version changed waits behind that version's own push, which it
 * keeps pending (in `pending`, the replica's change set): the replica
 * holds the version in its paths' time, and the whole tree follows.
 *
 * @example
 * ```ts
 * const work = versionFirst(replica.pending, replica.pending.take()!, changes);
 * // changes non-null and a whole push taken: { kind: "paths", changes: [], … }, the whole push pending again
 * ```
 */
export function versionFirst(
  pending: ChangeSet,
  work: Work,
  versionChanges: Change[] | null,
): Work {
  if (work.kind !== "full" || versionChanges === null) return work;
  pending.markFull(work.reason);
  return { kind: "paths", changes: [], since: work.since };
}

/**
 * What a push of `work` sends, given the source's marker now
 * (`markerText`), the one the replica acknowledged (`ackText`) and, when
 * the marker is new, the paths the version log says the versions between
 * them changed (`versionChanges`; null when it cannot say). A path the
 * filter rules cannot scope takes the whole tree. A new marker goes out
 * only behind a run that starts after it was read and covers every path of
 * its version: a scoped run sends the paths whose events have arrived, but
 * the marker on disk can be ahead of them (a file's event still in the
 * watcher when the publisher wrote the marker); sending it then would let a
 * replica claim a version it does not fully hold, and clients trust it.
 *
 * @example
 * ```ts
 * planPush({ kind: "full", reason: "start", since: 0 }, null, null);
 * // { kind: "full", changes: [], reason: "start" }
 * ```
 */
export function planPush(
  work: Work,
  markerText: string | null,
  ackText: string | null,
  versionChanges: Change[] | null = null,
): PushPlan {
  if (work.kind === "full") return { kind: "full", changes: [], reason: work.reason };
  const reason = `${work.changes.length} paths`;
  if (work.changes.some((c) => unfilterable(c.path))) return { kind: "full", changes: [], reason };
  if (markerText !== null && markerText !== ackText) {
    if (versionChanges === null || versionChanges.some((c) => unfilterable(c.path))) {
      return { kind: "full", changes: [], reason: "new version" };
    }
    // One change per path; deep when either says so (a directory whose event
    // arrived where the log names a file of that name).
    const merged = new Map<string, Change>();
    for (const c of [...work.changes, ...versionChanges]) {
      const had = merged.get(c.path);
      merged.set(c.path, had ? { ...had, ...c, deep: had.deep || c.deep } : c);
    }
    const changes = [...merged.values()];
    return { kind: "version", changes, reason: `new version, ${versionChanges.length} paths` };
  }
  return { kind: "scoped", changes: work.changes, reason };
}

/**
 * The paths that take a tree from version `ack` to `marker` by the version
 * log (`logText`, the source's): every changed and deleted path, the log
 * itself; deletions deep. Null when the log has no unbroken
 * chain between them path by path, or either marker is unreadable.
 *
 * @example
 * ```ts
 * versionChanges(logText, ackText, markerText); // [{ path: "a.txt", deep: false }, …] or null
 * ```
 */
export function versionChanges(
  logText: string | null,
  ackText: string | null,
  markerText: string,
): Change[] | null {
  const from = ackText === null ? null : parseMarker(ackText);
  const to = parseMarker(markerText);
  if (logText === null || from === null || to === null) return null;
  const list = changesBetween(parseLog(logText), from, to);
  if (list === null || [...list.paths, ...list.deleted].some((p) => !cleanPath(p))) return null;
  // A directory the log names is its own entry (mode, mtime): every path
  // changed below it is named too, so none is walked whole. Deletions are.
  return [
    ...list.paths.map((path) => ({ path, deep: false })),
    ...list.deleted.map((path) => ({ path, deep: true })),
    { path: VERSION_LOG, deep: false },
  ];
}

/**
 * How a plan picks its paths. With nothing to delete and nothing deep, rsync
 * is given the list itself, which costs a stat per path; filter rules cost
 * every rule on every entry met, far more for a burst in a large tree. A
 * list only of paths whose parents are all directories: given `a/b` where
 * `a` is now a symbolic link (a log or an event older than the tree),
 * rsync follows it and sends what it points to, from outside the tree;
 * filter rules never follow one.
 *
 * @example
 * ```ts
 * await scopeOf("/srv/plugins", { kind: "scoped", changes: [{ path: "a.txt", deep: false }], reason: "1 paths" });
 * // "list" when a.txt exists below plain directories, else "filter"
 * ```
 */
export async function scopeOf(source: string, plan: PushPlan): Promise<Scope> {
  if (plan.kind === "full") return "full";
  if (plan.changes.some((c) => c.deep)) return "filter";
  return await listable(source, plan.changes) ? "list" : "filter";
}

/** True when every path of `changes` exists under `root` and each of its parents is a directory. */
async function listable(root: string, changes: Change[]): Promise<boolean> {
  const parents = new Set<string>();
  for (const c of changes) {
    if (!await lstatOrNull(`${root}/${c.path}`)) return false;
    for (let i = c.path.indexOf("/"); i > 0; i = c.path.indexOf("/", i + 1)) {
      parents.add(c.path.slice(0, i));
    }
  }
  for (const p of parents) {
    if (!(await lstatOrNull(`${root}/${p}`))?.isDirectory) return false;
  }
  return true;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch {
    return null;
  }
}

/**
 * True for a relative path below the tree's root: no empty, `.` or `..`
 * part, no leading `/`, no control character. A list or a filter rule made
 * of anything else could name a file outside the tree.
 */
function cleanPath(p: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[\x00-\x1f\x7f]/.test(p) &&
    p.split("/").every((x) => x !== "" && x !== "." && x !== "..");
}

/**
 * fanout's own files of a version: the marker, the files that vouch for it,
 * the log. A scoped push of only these sends nothing a replica uses.
 *
 * @example
 * ```ts
 * VERSION_OWN.has(VERSION_LOG); // true
 * ```
 */
export const VERSION_OWN: ReadonlySet<string> = new Set([...VERSION_FILES, VERSION_LOG]);

/**
 * How many times push.max_paths a version push may name when it can go as a
 * list: a stat per path, no rule tried on every entry of the tree.
 *
 * @example
 * ```ts
 * const max = maxPaths * (changes.some((c) => c.deep) ? 1 : LIST_PATHS_FACTOR);
 * ```
 */
export const LIST_PATHS_FACTOR = 10;
