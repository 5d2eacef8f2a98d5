/**
 * The whole-tree path of a publish, and staging: the primary read while
 * staging is brought to the commit's tree (by the paths that differ, or
 * exported whole), the order of the two versions checked, and the whole of
 * staging sent to the primary before the marker. The whole tree is the way
 * whenever a publish by difference is in any doubt, so everything here
 * assumes nothing of what the primary holds.
 * Internal to lib/publish.
 *
 * @module
 */

import type { Fleet, PublisherHost } from "../config/mod.ts";
import {
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import type { SigningKey } from "../release/mod.ts";
import type { RsyncStats } from "../rsync/mod.ts";
import { describeVersion, sameVersion } from "../version/mod.ts";
import { checkOrder, land, landed, signedBy } from "./_marker.ts";
import { readPrimary, sendTree } from "./_primary.ts";
import type {
  Ahead,
  Known,
  Published,
  PublisherFiles,
  PublishOptions,
  Seen,
  Target,
} from "./_types.ts";
import { keepLastPublish } from "./difference.ts";
import { type ExportPaths, exportTree, type GitRepo, updateTree } from "./git.ts";
import { releaseCurrent, stagingManifest } from "./release.ts";

/**
 * Sends the whole of staging, then the marker (unless nothing differs: already published).
 * `fresh`: staging was exported from nothing, so its manifest is built from nothing.
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 *
 * @example
 * ```ts
 * const done = await publishWhole(opts, files, key, known, await exportWhole(repo, files, opts, target));
 * ```
 */
export async function publishWhole(
  opts: PublishOptions,
  files: PublisherFiles,
  key: SigningKey | null,
  k: Known,
  fresh: boolean,
): Promise<Published> {
  const { fleet, publisher: pub, log: lg } = opts;
  const manifest = key
    ? await stagingManifest(fleet, pub, files, { fresh, excludes: k.excludes, log: lg })
    : null;
  const sent = await sendTree(fleet, pub, k.excludes, {
    checksum: k.primary.announced === null,
  });
  lg.debug("tree sent", { ...sent.stats, ms: Math.round(sent.ms) });
  const previous = k.primary.marker;
  if (
    previous?.commit === k.target.commit && changedCount(sent.stats, sent.items) === 0 &&
    !opts.force &&
    (!manifest || await releaseCurrent(fleet, k.primary.envelope, previous, manifest))
  ) {
    // The primary holds the tree whole: by difference from it next, if it is ours.
    if (sameVersion(k.local, previous)) {
      await keepLastPublish(files.published, landed(k, previous, manifest));
    }
    return {
      marker: previous,
      previous,
      published: false,
      rollback: false,
      stats: sent.stats,
      items: sent.items,
      release: signedBy(key, manifest),
    };
  }
  return await land(opts, files, key, k, {
    stats: sent.stats,
    items: sent.items,
    manifest,
    deleted: [],
  });
}

/**
 * The primary's marker (and signed its envelope), and whether `target`
 * rolls it back; meanwhile staging is brought to the commit's tree: by the
 * paths that differ when a publish by difference may follow (`ahead`),
 * whole otherwise. Both read only: staging is the publisher's alone, so it
 * is brought there while the primary is asked (a refused publish just leaves
 * staging ahead).
 *
 * @throws {SafetyError} for a commit older than the published one without `force`.
 *
 * @example
 * ```ts
 * const seen = await primaryAndStaging(opts, repo, files, target, { signed: true, ahead: null });
 * ```
 */
export async function primaryAndStaging(
  opts: PublishOptions,
  repo: GitRepo,
  files: PublisherFiles,
  target: Target,
  how: { signed: boolean; ahead: Ahead | null },
): Promise<Seen> {
  const { fleet, publisher: pub, log: lg } = opts;
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const [fetched, staged] = await Promise.allSettled([
    readPrimary(fleet, pub, files.pulledDir, how.signed).finally(() => {
      lg.debug("primary read", { ms: ms() });
    }),
    how.ahead
      ? updateTree(repo, target.tree, exportPaths(files, pub)).finally(() => {
        lg.debug("staging updated", { ms: ms() });
      })
      : exportWhole(repo, files, opts, target),
  ]);
  if (fetched.status === "rejected") throw fetched.reason;
  const primary = fetched.value;
  const previous = primary.marker;
  lg.debug("primary version", { version: describeVersion(previous) });
  const rollback = previous !== null && previous.commit !== target.commit &&
    await checkOrder(
      repo,
      target.commit,
      target.ref,
      previous,
      fleet.primary.name,
      opts.force ?? false,
      how.ahead?.older,
    );
  if (staged.status === "rejected") throw staged.reason;
  return how.ahead
    ? { primary, rollback, updated: staged.value, fresh: null }
    : { primary, rollback, updated: false, fresh: staged.value };
}

/**
 * Exports `target`'s tree into staging whole; whether it was built from nothing.
 *
 * @example
 * ```ts
 * const fresh = await exportWhole(repo, files, opts, target);
 * ```
 */
export async function exportWhole(
  repo: GitRepo,
  files: PublisherFiles,
  opts: PublishOptions,
  target: Target,
): Promise<boolean> {
  const exported = await exportTree(repo, target.tree, exportPaths(files, opts.publisher));
  opts.log.debug("exported", {
    staging: opts.publisher.staging,
    fresh: exported.fresh,
    strays: exported.strays,
    ms: Math.round(exported.ms),
  });
  return exported.fresh;
}

function exportPaths(files: PublisherFiles, pub: PublisherHost): ExportPaths {
  return { staging: pub.staging, indexFile: files.index, stampFile: files.stamp };
}

/**
 * What the tree transfer leaves out. The marker and the log (and, signed,
 * the manifest and the envelope) are sent on their own, last; excluding them
 * also keeps --delete from removing the primary's current ones meanwhile.
 * Unsigned, a manifest and envelope left from a signed past are deleted.
 *
 * @example
 * ```ts
 * treeExcludes(fleet, false); // ["/.fanout-version", "/.fanout-changes", "/.fanout-tmp/", ...fleet.push.exclude]
 * ```
 */
export function treeExcludes(fleet: Fleet, signed: boolean): string[] {
  return [
    `/${VERSION_MARKER}`,
    `/${VERSION_LOG}`,
    ...(signed ? [`/${RELEASE_MANIFEST}`, `/${RELEASE_ENVELOPE}`] : []),
    `/${SERVER_TEMP_DIR}/`,
    ...fleet.push.exclude,
  ];
}

function changedCount(s: RsyncStats | null, items: string[]): number {
  return (s?.transferred ?? 0) + deletions(items);
}

/**
 * How many of rsync's itemized changes are deletions.
 *
 * @example
 * ```ts
 * deletions(["<f+++++++++ a.txt", "*deleting b.txt"]); // 1
 * ```
 */
export function deletions(items: string[]): number {
  return items.filter((i) => i.startsWith("*deleting")).length;
}
