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
 * @module
 */

import { checkSecretFiles, type Fleet, type PublisherHost } from "../config/mod.ts";
import {
  ConfigError,
  existsNow,
  type Logger,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  SERVER_TEMP_DIR,
  sweepTemps,
  TransferError,
  UsageError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import { acquireLock } from "../sys/mod.ts";
import { writeAtomic } from "./_atomic.ts";
import { pathProblem, type SigningKey } from "../release/mod.ts";
import {
  keptManifest,
  patchedManifest,
  releaseCurrent,
  releaseKey,
  stageRelease,
  type StagingManifest,
  stagingManifest,
} from "./release.ts";
import {
  type ExportPaths,
  exportTree,
  type GitRepo,
  isAncestor,
  isEmptyTree,
  openRepo,
  resolveRef,
  treeChanges,
  type TreeDiff,
  updateTree,
} from "./git.ts";
import {
  type PrimaryState,
  readPrimary,
  sendDeletions,
  sendLast,
  sendPaths,
  sendTree,
} from "./_primary.ts";
import {
  type Difference,
  differenceOf,
  keepLastPublish,
  type LastPublish,
  readLastPublish,
  stagingDoubt,
} from "./difference.ts";
import { classifyItems, requireRsync, type RsyncResult, type RsyncStats } from "../rsync/mod.ts";
import {
  appendEntry,
  describeVersion,
  formatMarker,
  newEntry,
  parseMarker,
  sameVersion,
  stampMarker,
  type VersionMarker,
} from "../version/mod.ts";

/** What to publish, and how. */
export interface PublishOptions {
  fleet: Fleet;
  /** The publisher entry (its address, staging dir, state dir, lock timeout). */
  publisher: PublisherHost;
  /** The repository, bare or not. */
  repo: string;
  /** Branch, tag, `refs/…` name or commit id. */
  ref: string;
  /** Publish even a commit older than the published one (rollback). */
  force?: boolean;
  /**
   * The key that signs the version ({@linkcode checkPublisher} loads it);
   * null in an unsigned fleet. Loaded from the fleet when not given.
   */
  signingKey?: SigningKey | null;
  log: Logger;
}

/** What a publish did. */
export interface PublishResult {
  /** The marker now on the primary. */
  marker: VersionMarker;
  /** The marker that was there before, if any. */
  previous: VersionMarker | null;
  /** False when the commit was already published and nothing differed. */
  published: boolean;
  /** True when the published commit is an ancestor of the previous one (forced). */
  rollback: boolean;
  /** Stats of the tree transfer. */
  stats: RsyncStats | null;
  /** rsync's itemized changes of the tree transfer (`<f+++++++++ a.txt`, `*deleting b.txt`). */
  items: string[];
  /** ms from taking the lock to the marker landing. */
  ms: number;
  /** ms spent waiting for another publish. */
  waitedMs: number;
  /** The version's signature, in a signed fleet; null in an unsigned one (versions not signed). */
  release: {
    /** The id of the key that signed it. */
    keyId: string;
    /** Paths its manifest lists. */
    paths: number;
    /** Files and symlinks hashed for the manifest this time. */
    hashed: number;
  } | null;
}

/** Files a publisher keeps under its state dir. */
export function publisherFiles(p: PublisherHost): {
  lock: string;
  state: string;
  index: string;
  stamp: string;
  markerDir: string;
  markerList: string;
  pulledDir: string;
  /** The manifest of staging and its stat record (lib/publish/release.ts). */
  manifest: string;
  record: string;
  /** Never created: where the dry run that lists what the transfer sends points. */
  nowhere: string;
  /** The record of the last publish whose marker landed (lib/publish/difference.ts). */
  published: string;
  /**
   * There while a publish sends: one found at the start stopped after part
   * of its tree may have landed, so the next version log entry is not exact.
   */
  sending: string;
  /** What a publish by difference sends, as a list for rsync. */
  sendList: string;
  /** Scratch space of a publish by difference (skeletons for push.exclude's dry runs). */
  scratch: string;
} {
  return {
    lock: `${p.stateDir}/publish.lock`,
    state: `${p.stateDir}/publish.json`,
    index: `${p.stateDir}/staging.index`,
    stamp: `${p.stateDir}/staging.json`,
    markerDir: `${p.stateDir}/marker`,
    markerList: `${p.stateDir}/marker.list`,
    pulledDir: `${p.stateDir}/primary-marker`,
    manifest: `${p.stateDir}/staging.manifest`,
    record: `${p.stateDir}/staging.record`,
    nowhere: `${p.stateDir}/dry-run-nowhere`,
    published: `${p.stateDir}/published.json`,
    sending: `${p.stateDir}/publish-sending`,
    sendList: `${p.stateDir}/send.list`,
    scratch: `${p.stateDir}/difference`,
  };
}

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

/** A version log entry ({@linkcode newEntry}). */
type LogEntry = ReturnType<typeof newEntry>;

/** The files of {@linkcode publisherFiles}. */
type PublisherFiles = ReturnType<typeof publisherFiles>;

/** What {@linkcode publishLocked} did; {@linkcode publish} adds the times. */
type Published = Omit<PublishResult, "ms" | "waitedMs">;

/** The commit to publish. */
interface Target {
  commit: string;
  tree: string;
  /** The ref as the marker names it ({@linkcode markerRef}). */
  ref: string;
}

/** What a publish learnt before it sends anything. */
interface Known {
  target: Target;
  /** The tree transfer's patterns ({@linkcode treeExcludes}). */
  excludes: string[];
  /** The publisher's own record of the version it offered last. */
  local: VersionMarker | null;
  /** A publish from here stopped while it sent: part of its tree may be on the primary. */
  interrupted: boolean;
  /** The primary's marker and envelope. */
  primary: PrimaryState;
  /** Whether `target` rolls the primary back. */
  rollback: boolean;
}

/**
 * The most paths a publish by difference takes (changed, added and removed
 * together); past it the whole tree is sent, as a large change costs its
 * transfer anyway.
 */
const DIFFERENCE_MAX_PATHS = 10_000;

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
 * The record of the last publish, when a publish by difference may follow
 * it as far as this publisher knows (the primary is asked next); null, said
 * at debug level, when the whole tree is to be sent.
 */
function lastUsable(
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
 */
async function differenceFor(
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
 * What a publish by difference from `last` asks that does not depend on the
 * primary, asked while the primary is. None of it rejects.
 */
interface Ahead {
  /** The paths that differ between `last`'s tree and the new one (or a doubt). */
  changes: Promise<TreeDiff>;
  /** Signed: the kept manifest, checked against `last`'s (or why not); null unsigned. */
  kept: Promise<Uint8Array | string> | null;
  /** Whether the new commit is an ancestor of `last`'s: the primary's, if it holds `last`. */
  older: { than: string; answer: Promise<boolean | null> };
}

function askAhead(repo: GitRepo, files: PublisherFiles, last: LastPublish, target: Target): Ahead {
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

/** Sends what `by` says (the changed paths, then the deletions), then the marker. */
async function publishDifference(
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

/** Sends the whole of staging, then the marker (unless nothing differs: already published). */
async function publishWhole(
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

/** What the tree transfer did, for {@linkcode land}. */
interface TreeSent {
  stats: RsyncStats | null;
  items: string[];
  manifest: StagingManifest | null;
  /** Paths deleted that its items may not name, for the version log (directories ending in `/`). */
  deleted: string[];
}

/**
 * The new version, after its tree: the marker (and signed the envelope)
 * staged, the log entry, all sent last; then the record of this publish.
 */
async function land(
  opts: PublishOptions,
  files: PublisherFiles,
  key: SigningKey | null,
  k: Known,
  t: TreeSent,
): Promise<Published> {
  const { fleet, publisher: pub, log: lg } = opts;
  const previous = k.primary.marker;
  const marker: VersionMarker = {
    seq: Math.max(k.local?.seq ?? 0, previous?.seq ?? 0) + 1,
    commit: k.target.commit,
    ref: k.target.ref,
    published_at: new Date().toISOString(),
  };
  await stageMarker(files, marker);
  if (key && t.manifest) await stageRelease(files.markerDir, key, marker, t.manifest);
  const entry = logEntry(previous, k, marker, t.items, t.deleted);
  const last = await sendMarker(fleet, pub, files, entry, k.target.commit, key !== null);
  lg.debug("marker sent", { seq: marker.seq, ms: Math.round(last.ms) });
  await keepLastPublish(files.published, landed(k, marker, t.manifest));
  return {
    marker,
    previous,
    published: true,
    rollback: k.rollback,
    stats: t.stats,
    items: t.items,
    release: signedBy(key, t.manifest),
  };
}

/** The record of a publish whose marker is on the primary. */
function landed(k: Known, marker: VersionMarker, m: StagingManifest | null): LastPublish {
  return { marker, tree: k.target.tree, excludes: k.excludes, manifest: m?.digest ?? null };
}

function signedBy(key: SigningKey | null, m: StagingManifest | null): PublishResult["release"] {
  return key && m ? { keyId: key.publicKey.id, paths: m.paths, hashed: m.hashed } : null;
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

/** What {@linkcode primaryAndStaging} found and did. */
interface Seen {
  primary: PrimaryState;
  rollback: boolean;
  /** Staging brought from its tree by the paths that differ ({@linkcode updateTree}). */
  updated: boolean;
  /** Staging exported whole, and whether from nothing; null when not (yet). */
  fresh: boolean | null;
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
 */
async function primaryAndStaging(
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

/** Exports `target`'s tree into staging whole; whether it was built from nothing. */
async function exportWhole(
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
 */
function treeExcludes(fleet: Fleet, signed: boolean): string[] {
  return [
    `/${VERSION_MARKER}`,
    `/${VERSION_LOG}`,
    ...(signed ? [`/${RELEASE_MANIFEST}`, `/${RELEASE_ENVELOPE}`] : []),
    `/${SERVER_TEMP_DIR}/`,
    ...fleet.push.exclude,
  ];
}

/**
 * Records `marker` as offered (a seq once offered is never offered again)
 * and writes it, stamped, into the marker dir.
 */
async function stageMarker(
  files: PublisherFiles,
  marker: VersionMarker,
): Promise<void> {
  await writeAtomic(files.state, formatMarker(marker));
  await Deno.mkdir(files.markerDir, { recursive: true });
  await writeAtomic(`${files.markerDir}/${VERSION_MARKER}`, formatMarker(marker));
  // Its mtime is its published_at on every server (lib/version/marker_stamp.ts).
  stampMarker(`${files.markerDir}/${VERSION_MARKER}`);
}

/**
 * The version log's entry for `marker`: what the tree's transfers changed
 * (`items`), and `deleted` (by difference, what git says left the tree).
 * That is the whole change from `previous` only when the
 * primary held exactly `previous` before it: not after a publish of ours
 * that stopped while it sent (part of its tree may have landed) or between
 * tree and marker (our record `local` is then ahead), nor after another
 * publisher's; then the entry says the whole tree may have changed.
 */
function logEntry(
  previous: VersionMarker | null,
  k: Pick<Known, "local" | "interrupted">,
  marker: VersionMarker,
  items: string[],
  deleted: string[],
): LogEntry {
  const drift = classifyItems(items);
  const paths = [...drift.changed, ...drift.missing].map((i) => i.path);
  const gone = [...new Set([...drift.extra.map((i) => i.path), ...deleted])];
  // rsync escapes bytes it will not print; decoded they are exact, except
  // bytes that are not UTF-8, which the JSON log cannot carry.
  const lossy = [...paths, ...gone].some((p) => p.includes("\uFFFD"));
  const unsure = previous !== null && (k.interrupted || !sameVersion(k.local, previous));
  return newEntry(previous, marker, { paths, deleted: gone, whole: lossy || unsure });
}

/**
 * Appends `entry` to the version log and sends the log (and, `signed`, the
 * manifest and the envelope) with the marker in one transfer; the marker sorts last
 * (`.fanout-changes`, `-manifest`, `-release`, `-version`), so
 * --delay-updates lands the others just before it. On failure the log is put
 * back: a version never published has no place in it.
 *
 * @throws {TransferError} when the primary does not take them.
 */
async function sendMarker(
  fleet: Fleet,
  pub: PublisherHost,
  files: PublisherFiles,
  entry: LogEntry,
  commit: string,
  signed: boolean,
): Promise<RsyncResult> {
  const logFile = `${files.markerDir}/${VERSION_LOG}`;
  const logBefore = await Deno.readTextFile(logFile).catch(() => "");
  await writeAtomic(logFile, appendEntry(logBefore, entry));
  try {
    const names = [
      VERSION_LOG,
      ...(signed ? [RELEASE_MANIFEST, RELEASE_ENVELOPE] : []),
      VERSION_MARKER,
    ];
    return await sendLast(fleet, pub, files.markerDir, names, files.markerList);
  } catch (e) {
    await writeAtomic(logFile, logBefore);
    if (!(e instanceof TransferError)) throw e;
    throw new TransferError(
      `sent the tree of ${
        short(commit)
      } to ${fleet.primary.name} but not its version marker: ${e.message}; publish again`,
      e.rsyncCode,
    );
  }
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

function changedCount(s: RsyncStats | null, items: string[]): number {
  return (s?.transferred ?? 0) + deletions(items);
}

function deletions(items: string[]): number {
  return items.filter((i) => i.startsWith("*deleting")).length;
}

/**
 * Refuses (without `force`) a commit that is an ancestor of the published
 * one, or one that cannot be compared with it; returns true for a rollback.
 */
async function checkOrder(
  repo: GitRepo,
  commit: string,
  ref: string,
  previous: VersionMarker,
  primary: string,
  force: boolean,
  known?: Ahead["older"],
): Promise<boolean> {
  const older = known?.than === previous.commit
    ? await known.answer
    : await isAncestor(repo, commit, previous.commit);
  if (older === false) return false;
  if (force) return older === true;
  if (older === true) {
    throw new SafetyError(
      `refusing to publish ${short(commit)} (${ref}): it is older than ${
        short(previous.commit)
      }, published on ${primary} as seq ${previous.seq} (${previous.ref}); ` +
        `to roll back on purpose, add --force`,
    );
  }
  throw new SafetyError(
    `refusing to publish ${short(commit)} (${ref}): the published commit ${
      short(previous.commit)
    } (seq ${previous.seq} on ${primary}) is not in ${repo.path}, so fanout cannot tell ` +
      `whether this is older (history rewritten, or another repository?); add --force to publish anyway`,
  );
}

async function readLocal(file: string): Promise<VersionMarker | null> {
  try {
    return parseMarker(await Deno.readTextFile(file));
  } catch {
    return null;
  }
}

/** The ref as the marker names it: `main` for `refs/heads/main`, 8 digits for a commit id. */
function markerRef(ref: string, commit: string): string {
  if (/^[0-9a-f]{4,64}$/i.test(ref) && commit.startsWith(ref.toLowerCase())) return short(commit);
  return ref.replace(/^refs\/heads\//, "");
}

function short(commit: string): string {
  return commit.slice(0, 8);
}

/**
 * The publisher's start-up checks, which change nothing (check-config runs
 * them too): a repository, rsync, the password file, a local address, and in
 * a signed fleet the signing key (mode 600, its public key listed), which it
 * returns (null: the fleet is not signed).
 *
 * @throws {UsageError} without a repository (`--repo` or `publisher.repo`).
 * @throws {ConfigError} / {EnvironmentError} naming what is wrong.
 *
 * @example
 * ```ts
 * const { pub, repo, signingKey } = await checkPublisher(fleet);
 * ```
 */
export async function checkPublisher(
  fleet: Fleet,
): Promise<{ pub: PublisherHost; repo: string; signingKey: SigningKey | null }> {
  const pub = fleet.publisher!;
  if (!pub.repo) {
    throw new UsageError(
      "no repository to publish from: pass --repo PATH or set publisher.repo in the fleet file",
    );
  }
  await requireRsync(fleet.rsync.path);
  await checkSecretFiles(fleet, { daemon: false, pusher: true });
  requireLocalAddress(fleet.file ?? "flags", pub.address);
  return { pub, repo: pub.repo, signingKey: await releaseKey(fleet) };
}

/**
 * rsync fails with a bare "error in socket IO" when `--address` is not one of
 * this host's; say which key is wrong instead.
 */
function requireLocalAddress(file: string, address: string): void {
  try {
    Deno.listen({ hostname: address, port: 0 }).close();
  } catch (e) {
    if (!(e instanceof Deno.errors.AddrNotAvailable)) return;
    throw new ConfigError(file, [{
      path: "publisher.address",
      message:
        `${address} is not an address of this host (publishes leave from it, and the primary lets only it write): use this host's own IP, or --address`,
    }]);
  }
}
