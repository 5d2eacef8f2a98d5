/**
 * Publishing by difference: when the primary holds exactly the version this
 * publisher published last, what the new commit changes is git's answer (two
 * trees compared), not a walk of staging and a whole-tree transfer. This
 * module keeps the record of the last publish and turns git's list of
 * changed paths into what to send, what to delete and what the manifest
 * must say again; lib/publish/_by_difference.ts decides when to use it.
 *
 * The record (`<state_dir>/<publisher>/published.json`) names the last
 * version whose marker landed, its tree, the tree transfer's patterns, and
 * (signed) its manifest's SHA-256. It is removed before anything is sent and
 * written again only once the marker has landed, so a publish that stopped
 * half-way leaves none, and the next one sends the whole tree.
 *
 * What a path's transfer would be is decided as the whole-tree transfer
 * decides it (lib/publish/exclude.ts), on both sides: the old kind of a path
 * for what the primary holds, the new one for what it gets. A path sent
 * before and not now is deleted; the deletions of a directory's contents
 * ride on the directory's.
 *
 * @module
 */

import type { Fleet } from "../config/mod.ts";
import { readSmallFile } from "../core/mod.ts";
import { comparePaths, type PathChange } from "../release/mod.ts";
import { parseMarker, type VersionMarker } from "../version/mod.ts";
import { writeAtomic } from "./_atomic.ts";
import { type ListedPath, sentOf } from "./exclude.ts";
import type { TreeChange } from "./git.ts";
import { MANIFEST_SKIP } from "./release.ts";

/** What the publisher keeps of its last publish whose marker landed. */
export interface LastPublish {
  /** The marker it sent. */
  marker: VersionMarker;
  /** The tree of the commit it published. */
  tree: string;
  /** The tree transfer's patterns then: `push.exclude` and fanout's own. */
  excludes: string[];
  /** Signed: the SHA-256 of the manifest it signed; null unsigned. */
  manifest: string | null;
}

/** The most bytes of a kept record of the last publish. */
const LAST_MAX_BYTES = 1 << 20;

/**
 * The record of the last publish in `file`; null when there is none or it
 * cannot be read as one (a publish by difference is then not tried).
 *
 * @example
 * ```ts
 * const last = readLastPublish(`${stateDir}/published.json`);
 * ```
 */
export function readLastPublish(file: string): LastPublish | null {
  const text = readSmallFile(file, LAST_MAX_BYTES);
  if (text === null) return null;
  try {
    const v = JSON.parse(text);
    const marker = parseMarker(JSON.stringify(v.marker));
    const strings = Array.isArray(v.excludes) &&
      v.excludes.every((x: unknown) => typeof x === "string");
    if (!marker || typeof v.tree !== "string" || !/^[0-9a-f]{40,64}$/.test(v.tree) || !strings) {
      return null;
    }
    const manifest = typeof v.manifest === "string" && /^[0-9a-f]{64}$/.test(v.manifest)
      ? v.manifest
      : null;
    if (v.manifest !== null && manifest === null) return null;
    return { marker, tree: v.tree, excludes: v.excludes, manifest };
  } catch {
    return null;
  }
}

/**
 * Keeps `last` in `file` (whole or not at all), or removes the record with
 * null: before a publish sends anything, so none is left if it stops.
 *
 * @example
 * ```ts
 * await keepLastPublish(file, null);
 * // … the tree and the marker sent …
 * await keepLastPublish(file, { marker, tree, excludes, manifest: digest });
 * ```
 */
export async function keepLastPublish(file: string, last: LastPublish | null): Promise<void> {
  if (last) await writeAtomic(file, JSON.stringify(last) + "\n");
  else await Deno.remove(file).catch(() => {});
}

/** What a publish by difference sends, deletes and lists. */
export interface Difference {
  /** The paths the tree transfer sends, sorted (every directory above one listed too). */
  send: string[];
  /** Every path that leaves the primary, directories ending in `/`: the version log's. */
  deleted: string[];
  /** The topmost of them: each deleted with all below it. */
  deleteRoots: string[];
  /**
   * The directories holding those (but the root): sent again once the
   * deletions are made, so their mtimes are staging's, as after a whole-tree
   * transfer.
   */
  retouch: string[];
  /** What the manifest must say again of each changed path. */
  manifest: PathChange[];
}

/**
 * What publishing `changes` (git's list, between the last published tree
 * and the new one) does: each side's paths filtered as the tree transfer
 * filters them, then {@linkcode planDifference}.
 *
 * @throws {TransferError} when rsync cannot say what `excludes` leaves out.
 *
 * @example
 * ```ts
 * const d = await differenceOf(fleet, excludes, `${stateDir}/difference`, changes);
 * ```
 */
export async function differenceOf(
  fleet: Fleet,
  excludes: string[],
  scratch: string,
  changes: readonly TreeChange[],
): Promise<Difference> {
  const side = (kind: "before" | "after"): ListedPath[] =>
    changes.filter((c) => c[kind] !== null).map((c) => ({ path: c.path, dir: c[kind] === "dir" }));
  const [before, after] = await Promise.all([
    sentOf(fleet, excludes, `${scratch}/before`, side("before")),
    sentOf(fleet, excludes, `${scratch}/after`, side("after")),
  ]);
  return planDifference(changes, before, after);
}

/**
 * What the changes do, given which paths the tree transfer sent of the old
 * tree (`before`) and sends of the new one (`after`): the new side's are
 * sent; an old one not sent now is deleted, from its topmost path (one
 * whose parent stays a directory); the manifest lists what is sent, but
 * fanout's own names at the root.
 *
 * @example
 * ```ts
 * planDifference(
 *   [{ path: "old", before: "dir", after: null }, { path: "old/a", before: "file", after: null }],
 *   new Set(["old", "old/a"]),
 *   new Set(),
 * ).deleteRoots; // ["old"]
 * ```
 */
export function planDifference(
  changes: readonly TreeChange[],
  before: ReadonlySet<string>,
  after: ReadonlySet<string>,
): Difference {
  const sorted = [...changes].sort((a, b) => comparePaths(a.path, b.path));
  const byPath = new Map(sorted.map((c) => [c.path, c]));
  const gone = sorted.filter((c) => before.has(c.path) && !after.has(c.path));
  const goneSet = new Set(gone.map((c) => c.path));
  // A parent sent as a file or symlink replaces the directory, contents and all.
  const covered = (path: string) => {
    const parent = parentOf(path);
    const p = byPath.get(parent);
    return goneSet.has(parent) || (p !== undefined && after.has(parent) && p.after !== "dir");
  };
  const roots = gone.filter((c) => !covered(c.path)).map((c) => c.path);
  return {
    send: sorted.filter((c) => after.has(c.path)).map((c) => c.path),
    deleted: gone.map((c) => c.before === "dir" ? `${c.path}/` : c.path),
    deleteRoots: roots,
    retouch: [...new Set(roots.map(parentOf).filter((p) => p !== ""))],
    manifest: sorted.map((c) => ({
      path: c.path,
      listed: after.has(c.path) && !MANIFEST_SKIP.includes(c.path.split("/")[0]),
    })),
  };
}

/**
 * Why staging does not hold what `d` says of it, or null: each path to send
 * there as git says (a directory, a symlink or a file), each path to delete
 * absent (so rsync deletes it on the primary rather than sending what is in
 * the way).
 *
 * @example
 * ```ts
 * const doubt = stagingDoubt(staging, d, changes);
 * if (doubt) log.debug("sending the whole tree", { because: doubt });
 * ```
 */
export function stagingDoubt(
  staging: string,
  d: Difference,
  changes: readonly TreeChange[],
): string | null {
  const kinds = new Map(changes.map((c) => [c.path, c.after]));
  for (const path of d.send) {
    const st = lstatOrNull(`${staging}/${path}`);
    const kind = st?.isDirectory ? "dir" : st?.isSymlink ? "symlink" : st?.isFile ? "file" : null;
    if (kind !== kinds.get(path)) return `staging's ${JSON.stringify(path)} is not git's`;
  }
  for (const path of d.deleteRoots) {
    if (lstatOrNull(`${staging}/${path}`)) return `staging still holds ${JSON.stringify(path)}`;
  }
  return null;
}

/** The directory holding `path`; "" for the root. */
function parentOf(path: string): string {
  return path.slice(0, Math.max(0, path.lastIndexOf("/")));
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}
