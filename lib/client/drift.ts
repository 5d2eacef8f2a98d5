/**
 * Comparing dest with the source: a dry run (`--dry-run --delete
 * --itemize-changes`) sorted into changed, missing and extra entries,
 * leaving out fanout's own files (the destination marker, rsync's `.~tmp~`
 * staging dirs).
 *
 * @module
 */

import { DEST_MARKER } from "../core/mod.ts";
import { baseJob, type ClientJob, failUnlessOk, rsyncRun, serverOf } from "./job.ts";
import { DELAY_DIR } from "./transfer.ts";
import { classifyItems, type Itemized, type ItemizedEntry } from "../rsync/mod.ts";

/** One difference between dest and the source. */
export type DriftItem = ItemizedEntry;

/** What a comparison found. */
export interface Drift {
  /** In both, but different. */
  changed: DriftItem[];
  /** In the source only. */
  missing: DriftItem[];
  /** In dest only (a sync deletes them). */
  extra: DriftItem[];
  /** Entries in the source's file list (the root included). */
  sourceEntries: number;
  /** The server that answered. */
  server: string;
  /** Some names came escaped from rsync (unprintable bytes): shown decoded,
   * but not trusted as a transfer list. */
  escaped: boolean;
}

/** The number of differences in `d`. */
export function driftCount(d: Drift): number {
  return d.changed.length + d.missing.length + d.extra.length;
}

/**
 * Lists how `target` differs from the source (a dry run: nothing changes).
 * `adopt` keeps a `.git` out of the comparison (adoption drops it anyway).
 *
 * @throws {TransferError} when the source cannot be read.
 *
 * @example
 * ```ts
 * const drift = await compare(job, "/apps/dat/plugins");
 * if (driftCount(drift) === 0) console.log("in sync");
 * ```
 */
export async function compare(
  job: ClientJob,
  target: string,
  opts: { adopt?: boolean } = {},
): Promise<Drift> {
  const rj = baseJob(job, target);
  const r = await rsyncRun(job, {
    ...rj,
    delete: true,
    dryRun: true,
    excludes: [...rj.excludes!, ...(opts.adopt ? ["/.git"] : [])],
  });
  failUnlessOk(job, r);
  return { ...classify(r.items), sourceEntries: r.stats?.files ?? 0, server: serverOf(job.source) };
}

/**
 * Sorts itemized rsync lines into changed, missing and extra entries,
 * leaving out fanout's own files.
 *
 * @example
 * ```ts
 * classify([">f.st...... a.txt", "*deleting   b.txt"]);
 * // { changed: [{ path: "a.txt", kind: "file", what: ["size", "time"] }], missing: [], extra: [{ path: "b.txt", … }] }
 * ```
 */
export function classify(items: string[]): Itemized {
  return classifyItems(items, ours);
}

function ours(path: string): boolean {
  return path === DEST_MARKER || path.split("/").includes(DELAY_DIR);
}
