/**
 * Publish: put the tree of a git commit on the primary, then the version
 * marker that names it.
 *
 * The steps, under one lock so two publishes (two pushes landing together)
 * run one after the other:
 *
 * 1. resolve the ref to a commit; refuse an empty tree;
 * 2. read the primary's marker (and, signed, its envelope) from its read
 *    module, and refuse a commit that is an ancestor of the published one
 *    unless forced (a rollback); meanwhile bring the persistent staging dir
 *    to the commit's tree (only changed files are rewritten);
 * 3. choose the way: by difference when the primary holds exactly the last
 *    version published from here (lib/publish/difference.ts), and the
 *    paths git says changed can be sent as they are; the whole tree
 *    otherwise (the first publish, another version on the primary, a
 *    publish that stopped half-way, push.exclude changed, the same tree
 *    again, anything doubtful). The debug log says which, and why;
 * 4. in a signed fleet (`release.public_keys`), bring the manifest of
 *    staging up to date (lib/publish/release.ts): patched for the changed
 *    paths by difference, from a walk of staging (hashing only what changed)
 *    otherwise;
 * 5. send to the primary's write module, from the publisher's address, with
 *    the password file, leaving the marker alone: by difference, the changed
 *    paths alone (`--files-from`), then the removed ones in a transfer of
 *    their own; whole, staging (`--delete-delay --delay-updates`). Either way
 *    new files land together, deletions after them;
 * 6. write `.fanout-version` with the next `seq`, add what changed to the
 *    version log (`.fanout-changes`, lib/version/version_log.ts), in a
 *    signed fleet write the manifest (`.fanout-manifest`) and the envelope
 *    that signs it with the marker's fields (`.fanout-release`), and send
 *    them all last in one transfer, the marker after the others, so a host
 *    whose marker says seq N holds all of version N, its signature and the
 *    log up to it;
 * 7. keep the record of this publish for the next one to go by difference.
 *
 * The signing key is loaded before anything else: a signed fleet whose key
 * is missing or not listed publishes nothing. An unsigned fleet publishes as
 * before (the result's `release` is null; the command warns).
 *
 * `seq` is one more than the highest of the publisher's own record and the
 * primary's marker, so it stays monotonic when either is lost.
 *
 * This file is the flow, each step a call: the by-difference path lives in
 * `_by_difference.ts`, the whole tree and staging in `_whole.ts`, the marker
 * and the version log in `_marker.ts`, the publisher's files and checks in
 * `publisher.ts`, and the types they hand each other in `_types.ts`.
 *
 * @module
 */

import type { Fleet } from "../config/mod.ts";
import { existsNow, type Logger, SafetyError, sweepTemps } from "../core/mod.ts";
import type { SigningKey } from "../release/mod.ts";
import { acquireLock } from "../sys/mod.ts";
import { describeVersion } from "../version/mod.ts";
import { askAhead, differenceFor, lastUsable, publishDifference } from "./_by_difference.ts";
import { markerRef, readLocal, short } from "./_marker.ts";
import type {
  Known,
  Published,
  PublisherFiles,
  PublishOptions,
  PublishResult,
  Target,
} from "./_types.ts";
import { deletions, exportWhole, primaryAndStaging, publishWhole, treeExcludes } from "./_whole.ts";
import { keepLastPublish } from "./difference.ts";
import { type GitRepo, isEmptyTree, openRepo, resolveRef } from "./git.ts";
import { publisherFiles } from "./publisher.ts";
import { releaseKey } from "./release.ts";

export type { PublishOptions, PublishResult } from "./_types.ts";

/**
 * Publishes `opts.ref` of `opts.repo` to the fleet's primary.
 *
 * @throws {UsageError} when the repository or the ref is not right (exit 2).
 * @throws {ConfigError} in a signed fleet, when the signing key is missing,
 * unreadable or not listed in `release.public_keys` (exit 2); nothing is sent.
 * @throws {SafetyError} for an empty tree, or a commit older than the
 * published one without `force` (exit 4); nothing is sent.
 * @throws {TransferError} when the primary cannot be reached or refuses
 * (rsync's code and words in the message; exit 3).
 * @throws {LockedError} when another publish holds the lock past
 * `publisher.lock_timeout` (exit 5).
 *
 * @example
 * ```ts
 * const r = await publish({ fleet, publisher: fleet.publisher!, repo: "/srv/git/plugins.git", ref: "main", log: log() });
 * console.log(describePublish(r, fleet));
 * ```
 */
export async function publish(opts: PublishOptions): Promise<PublishResult> {
  const key = opts.signingKey !== undefined ? opts.signingKey : await releaseKey(opts.fleet);
  const files = publisherFiles(opts.publisher);
  const repo = await openRepo(opts.repo);
  // Fail on a bad ref before queueing behind another publish.
  await resolveRef(repo, opts.ref);

  const lock = await acquireLock(files.lock, {
    timeout: opts.publisher.lockTimeout,
    what: "publish",
    onWait: (pid) =>
      opts.log.info("waiting for another publish", { lock: files.lock, holder: pid }),
  });
  try {
    await sweepTemps(opts.publisher.stateDir); // what a killed publish left mid-write
    const started = performance.now();
    const done = await publishLocked(opts, repo, files, key);
    return { ...done, ms: performance.now() - started, waitedMs: lock.waitedMs };
  } finally {
    lock.release();
  }
}

/** The steps of a publish, under its lock (see the module doc). */
async function publishLocked(
  opts: PublishOptions,
  repo: GitRepo,
  files: PublisherFiles,
  key: SigningKey | null,
): Promise<Published> {
  const target = await resolveTarget(repo, opts.ref, opts.fleet, opts.log);
  const excludes = treeExcludes(opts.fleet, key !== null);
  const local = await readLocal(files.state);
  const last = lastUsable(files, target, excludes, local, opts.log);
  const ahead = last && askAhead(repo, files, last, target);
  const seen = await primaryAndStaging(opts, repo, files, target, {
    signed: key !== null,
    ahead,
  });
  const known: Known = {
    target,
    excludes,
    local,
    interrupted: existsNow(files.sending),
    primary: seen.primary,
    rollback: seen.rollback,
  };
  const by = last && ahead && await differenceFor(opts, files, key, known, { last, seen, ahead });
  // Until the marker lands, the primary may hold neither version whole.
  await keepLastPublish(files.published, null);
  await Deno.writeTextFile(files.sending, `${Deno.pid}\n`);
  const done = by ? await publishDifference(opts, files, key, known, by) : await publishWhole(
    opts,
    files,
    key,
    known,
    seen.fresh ?? await exportWhole(repo, files, opts, target),
  );
  await Deno.remove(files.sending).catch(() => {});
  return done;
}

/**
 * `ref`'s commit, resolved again under the lock: a hook publishing a branch
 * gets its newest commit.
 *
 * @throws {SafetyError} for a commit whose tree is empty.
 */
async function resolveTarget(
  repo: GitRepo,
  refName: string,
  fleet: Fleet,
  lg: Logger,
): Promise<Target> {
  const { commit, tree } = await resolveRef(repo, refName);
  const ref = markerRef(refName, commit);
  lg.debug("resolved", { ref: refName, commit, tree });
  if (isEmptyTree(tree)) {
    throw new SafetyError(
      `refusing to publish ${short(commit)} (${ref}): its tree is empty, ` +
        `which would delete everything on ${fleet.primary.name}`,
    );
  }
  return { commit, tree, ref };
}

/**
 * The one line a publish prints (to the pusher, from the hook).
 *
 * @example
 * ```ts
 * describePublish(result, fleet);
 * // "published seq 42 (1a2b3c4d main) to rsync1 in 0.31s: 3 files changed (2 sent, 1 deleted)"
 * ```
 */
export function describePublish(r: PublishResult, fleet: Fleet): string {
  const secs = `${(r.ms / 1000).toFixed(2)}s`;
  if (!r.published) {
    return `already published: ${describeVersion(r.marker)} is on ${fleet.primary.name}, ` +
      `identical (checked in ${secs})`;
  }
  const sent = r.stats?.transferred ?? 0;
  const deleted = deletions(r.items);
  const n = sent + deleted;
  const what = `${n} ${n === 1 ? "file" : "files"} changed (${sent} sent, ${deleted} deleted)`;
  const back = r.rollback && r.previous ? `, rolled back from ${describeVersion(r.previous)}` : "";
  const signed = r.release ? `; signed by key ${r.release.keyId}` : "";
  return `published ${
    describeVersion(r.marker)
  } to ${fleet.primary.name} in ${secs}: ${what}${back}${signed}`;
}
