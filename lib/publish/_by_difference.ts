/**
 * The by-difference path of a publish: whether it may go by difference
 * (the primary holds exactly the last version published from here, and
 * git's list of changes can be sent as it is), what it asks ahead while the
 * primary is read, and the sending of the changed paths, then the removed
 * ones, before the marker. Any doubt sends the whole tree instead, said at
 * debug level. lib/publish/difference.ts plans the paths and keeps the
 * record; this file decides and sends.
 * Internal to lib/publish.
 *
 * @module
 */

import type { Fleet } from "../config/mod.ts";
import type { Logger } from "../core/mod.ts";
import { pathProblem, type SigningKey } from "../release/mod.ts";
import { describeVersion, sameVersion, type VersionMarker } from "../version/mod.ts";
import { land } from "./_marker.ts";
import { type PrimaryState, sendDeletions, sendPaths } from "./_primary.ts";
import type {
  Ahead,
  Known,
  Published,
  PublisherFiles,
  PublishOptions,
  Seen,
  Target,
} from "./_types.ts";
import {
  type Difference,
  differenceOf,
  type LastPublish,
  readLastPublish,
  stagingDoubt,
} from "./difference.ts";
import { type GitRepo, isAncestor, treeChanges } from "./git.ts";
import {
  keptManifest,
  patchedManifest,
  releaseCurrent,
  type StagingManifest,
  stagingManifest,
} from "./release.ts";

/**
 * The most paths a publish by difference takes (changed, added and removed
 * together); past it the whole tree is sent, as a large change costs its
 * transfer anyway.
 */
const DIFFERENCE_MAX_PATHS = 10_000;

/**
 * The record of the last publish, when a publish by difference may follow
 * it as far as this publisher knows (the primary is asked next); null, said
 * at debug level, when the whole tree is to be sent.
 *
 * @example
 * ```ts
 * const last = lastUsable(files, target, excludes, await readLocal(files.state), log);
 * ```
 */
export function lastUsable(
  files: PublisherFiles,
  target: Target,
  excludes: string[],
  local: VersionMarker | null,
  lg: Logger,
): LastPublish | null {
  const last = readLastPublish(files.published);
  const because = !last
    ? "no record of a publish that landed whole"
    : last.excludes.join("\0") !== excludes.join("\0")
    ? "push.exclude, or signing, changed since the last publish"
    : !sameVersion(local, last.marker)
    ? "the last publish from here did not land its marker"
    : last.tree === target.tree
    ? "the tree is the one last published: checked whole"
    : null;
  if (because) lg.debug("sending the whole tree", { because });
  return because ? null : last;
}

/** A publish by difference, planned: what it sends, and signed, the kept manifest to patch. */
interface ByDifference {
  difference: Difference;
  kept: Uint8Array | null;
}

/**
 * The difference to publish when staging was brought to the tree by what
 * differs, the primary holds `last` exactly (its marker, and signed its
 * envelope, ours) and git's list of changes can be sent as it is; null,
 * said at debug level, when the whole tree is to be sent. Signed, the kept
 * manifest must be `last`'s, and every path it will list one a manifest
 * takes (the whole tree's manifest would refuse the publish before it sends
 * anything).
 *
 * @example
 * ```ts
 * const by = await differenceFor(opts, files, key, known, { last, seen, ahead });
 * if (by) await publishDifference(opts, files, key, known, by);
 * ```
 */
export async function differenceFor(
  opts: PublishOptions,
  files: PublisherFiles,
  key: SigningKey | null,
  k: Known,
  { last, seen, ahead }: { last: LastPublish; seen: Seen; ahead: Ahead },
): Promise<ByDifference | null> {
  const whole = (because: string) => {
    opts.log.debug("sending the whole tree", { because });
    return null;
  };
  if (!seen.updated) return whole("git cannot bring staging to the tree by what differs");
  const away = await primaryDoubt(opts.fleet, k.primary, last);
  if (away) return whole(away);
  const diff = await ahead.changes;
  if ("doubt" in diff) return whole(diff.doubt);
  const d = await differenceOf(opts.fleet, k.excludes, files.scratch, diff.changes);
  const staged = stagingDoubt(opts.publisher.staging, d, diff.changes);
  if (staged) return whole(staged);
  const kept = await ahead.kept;
  if (typeof kept === "string") return whole(kept);
  const unlisted = key ? d.manifest.find((c) => c.listed && pathProblem(c.path)) : undefined;
  if (unlisted) return whole(`no manifest can list ${JSON.stringify(unlisted.path)}`);
  opts.log.debug("publishing by difference", {
    from: describeVersion(last.marker),
    send: d.send.length,
    delete: d.deleted.length,
  });
  return { difference: d, kept };
}

/**
 * Starts asking, of git and of the kept manifest, what a publish by
 * difference from `last` to `target` needs ({@linkcode Ahead}).
 *
 * @example
 * ```ts
 * const ahead = last && askAhead(repo, files, last, target);
 * ```
 */
export function askAhead(
  repo: GitRepo,
  files: PublisherFiles,
  last: LastPublish,
  target: Target,
): Ahead {
  const changes = treeChanges(repo, last.tree, target.tree, DIFFERENCE_MAX_PATHS)
    .catch((e) => ({ doubt: `git cannot compare the trees: ${(e as Error).message}` }));
  const answer = isAncestor(repo, target.commit, last.marker.commit).catch(() => null);
  return {
    changes,
    kept: last.manifest === null ? null : keptManifest(files, last.manifest),
    older: { than: last.marker.commit, answer },
  };
}

/**
 * Why the primary does not hold `last` exactly, or null: another marker
 * (another publisher, a failed publish, a primary that lost its tree), or
 * signed, an envelope that is not ours for its manifest.
 */
async function primaryDoubt(
  fleet: Fleet,
  primary: PrimaryState,
  last: LastPublish,
): Promise<string | null> {
  if (!sameVersion(primary.marker, last.marker)) {
    return `the primary holds ${describeVersion(primary.marker)}, not ${
      describeVersion(last.marker)
    } published from here`;
  }
  if (last.manifest === null) return null;
  const signed = await releaseCurrent(fleet, primary.envelope, last.marker, {
    digest: last.manifest,
  });
  if (!signed) return "the primary's envelope does not sign the version published from here";
  // A primary that does not vouch for its tree holds something else under the marker.
  return primary.announced === null
    ? "the primary announces no version: its tree is not ours"
    : null;
}

/**
 * Sends what `by` says (the changed paths, then the deletions), then the marker.
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 *
 * @example
 * ```ts
 * const done = await publishDifference(opts, files, key, known, by);
 * ```
 */
export async function publishDifference(
  opts: PublishOptions,
  files: PublisherFiles,
  key: SigningKey | null,
  k: Known,
  by: ByDifference,
): Promise<Published> {
  const { fleet, publisher: pub, log: lg } = opts;
  const d = by.difference;
  // The manifest is needed only with the marker: it is patched while the paths travel.
  const manifest = by.kept ? manifestByDifference(opts, files, k, { ...by, kept: by.kept }) : null;
  manifest?.catch(() => {}); // awaited below; a failed transfer must not leave it unhandled
  const sent = await sendPaths(fleet, pub, files.sendList, d.send, k.excludes);
  if (sent) lg.debug("paths sent", { ...sent.stats, ms: Math.round(sent.ms) });
  const gone = await sendDeletions(fleet, pub, files.sendList, {
    staging: pub.staging,
    paths: d.deleteRoots,
    retouch: d.retouch,
  });
  if (gone) lg.debug("paths deleted", { deleted: gone.deleted, ms: Math.round(gone.ms) });
  return await land(opts, files, key, k, {
    stats: sent?.stats ?? null,
    items: [...sent?.items ?? [], ...gone?.items ?? []],
    manifest: await manifest,
    deleted: d.deleted,
  });
}

/**
 * The manifest of staging after a publish by difference: the kept one
 * patched for the changed paths; when that cannot be done, built from a walk
 * of staging as a whole-tree publish builds it (the same manifest).
 */
async function manifestByDifference(
  opts: PublishOptions,
  files: PublisherFiles,
  k: Known,
  by: ByDifference & { kept: Uint8Array },
): Promise<StagingManifest> {
  const { fleet, publisher: pub, log: lg } = opts;
  const m = await patchedManifest(files, pub.staging, by.kept, by.difference.manifest, lg);
  if (typeof m !== "string") return m;
  lg.debug("walking staging for the manifest", { because: m });
  return await stagingManifest(fleet, pub, files, { fresh: false, excludes: k.excludes, log: lg });
}
