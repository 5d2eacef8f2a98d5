/**
 * Publish: put the tree of a git commit on the primary, then the version
 * marker that names it.
 *
 * The steps, under one lock so two publishes (two pushes landing together)
 * run one after the other:
 *
 * 1. resolve the ref to a commit; refuse an empty tree;
 * 2. read the primary's marker (its read module), and refuse a commit that is
 *    an ancestor of the published one unless forced (a rollback);
 * 3. export the commit's tree into the persistent staging dir (only changed
 *    files are rewritten, so rsync sends only the delta);
 * 4. in a signed fleet (`release.public_keys`), build the manifest of staging
 *    (lib/publish/release.ts: only what changed since the last publish is
 *    hashed);
 * 5. send staging to the primary's write module (`--delete-delay
 *    --delay-updates`: new files land together, deletions after them), from
 *    the publisher's address, with the password file, leaving the marker alone;
 * 6. write `.fanout-version` with the next `seq`, add what step 5 changed to
 *    the version log (`.fanout-changes`, lib/version/version_log.ts), in a
 *    signed fleet write the manifest (`.fanout-manifest`) and the envelope
 *    that signs it with the marker's fields (`.fanout-release`), and send
 *    them all last in one transfer, the marker after the others, so a host
 *    whose marker says seq N holds all of version N, its signature and the
 *    log up to it.
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
  formatHostPort,
  formatRsyncUrl,
  type Logger,
  readSmallFile,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  SERVER_TEMP_DIR,
  TransferError,
  UsageError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import { acquireLock } from "../sys/mod.ts";
import { writeAtomic } from "./_atomic.ts";
import { ENVELOPE_MAX_BYTES, type SigningKey } from "../release/mod.ts";
import {
  releaseCurrent,
  releaseKey,
  stageRelease,
  type StagingManifest,
  stagingManifest,
} from "./release.ts";
import { exportTree, type GitRepo, isAncestor, isEmptyTree, openRepo, resolveRef } from "./git.ts";
import {
  classifyItems,
  describeRsyncFailure,
  requireRsync,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  type RsyncStats,
  runRsync,
  writeFileList,
} from "../rsync/mod.ts";
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

/** The steps of a publish, under its lock (see the module doc). */
async function publishLocked(
  opts: PublishOptions,
  repo: GitRepo,
  files: PublisherFiles,
  key: SigningKey | null,
): Promise<Published> {
  const { fleet, publisher: pub, log: lg } = opts;
  const target = await resolveTarget(repo, opts.ref, fleet, lg);
  const { previous, rollback, fresh } = await primaryAndStaging(opts, repo, files, target);
  const excludes = treeExcludes(fleet, key !== null);
  const manifest = key
    ? await stagingManifest(fleet, pub, files, { fresh, excludes, log: lg })
    : null;
  const sent = await sendTree(fleet, pub, excludes);
  lg.debug("tree sent", { ...sent.stats, ms: Math.round(sent.ms) });
  const changed = changedCount(sent.stats, sent.items);
  const signed = (m: StagingManifest | null) =>
    key && m ? { keyId: key.publicKey.id, paths: m.paths, hashed: m.hashed } : null;
  if (
    previous?.commit === target.commit && changed === 0 && !opts.force &&
    (!manifest || await signedOnPrimary(fleet, pub, files, previous, manifest))
  ) {
    return {
      marker: previous,
      previous,
      published: false,
      rollback: false,
      stats: sent.stats,
      items: sent.items,
      release: signed(manifest),
    };
  }

  const local = await readLocal(files.state);
  const marker: VersionMarker = {
    seq: Math.max(local?.seq ?? 0, previous?.seq ?? 0) + 1,
    commit: target.commit,
    ref: target.ref,
    published_at: new Date().toISOString(),
  };
  await stageMarker(files, marker);
  if (key && manifest) await stageRelease(files.markerDir, key, marker, manifest);
  const entry = logEntry(previous, local, marker, sent.items);
  const last = await sendMarker(fleet, pub, files, entry, target.commit, key !== null);
  lg.debug("marker sent", { seq: marker.seq, ms: Math.round(last.ms) });
  return {
    marker,
    previous,
    published: true,
    rollback,
    stats: sent.stats,
    items: sent.items,
    release: signed(manifest),
  };
}

/**
 * Whether the primary's envelope signs `previous` and this very manifest
 * with a listed key: if not (the fleet just turned signing on, or rotated its
 * key out), the same tree is published again as a new, signed version.
 */
async function signedOnPrimary(
  fleet: Fleet,
  pub: PublisherHost,
  files: PublisherFiles,
  previous: VersionMarker,
  manifest: StagingManifest,
): Promise<boolean> {
  const text = await pullFromPrimary(fleet, pub, files.pulledDir, RELEASE_ENVELOPE, [
    `--max-size=${ENVELOPE_MAX_BYTES}`,
  ]);
  const envelope = text === null ? null : new TextEncoder().encode(text);
  return await releaseCurrent(fleet, envelope, previous, manifest);
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
  if (await isEmptyTree(repo, tree)) {
    throw new SafetyError(
      `refusing to publish ${short(commit)} (${ref}): its tree is empty, ` +
        `which would delete everything on ${fleet.primary.name}`,
    );
  }
  return { commit, tree, ref };
}

/**
 * The primary's marker, and whether `target` rolls it back; meanwhile the
 * commit's tree is exported into staging. Both read only: the export touches
 * nothing but staging, so it runs while the marker is fetched (a refused
 * publish just leaves staging ahead).
 *
 * @throws {SafetyError} for a commit older than the published one without `force`.
 */
async function primaryAndStaging(
  opts: PublishOptions,
  repo: GitRepo,
  files: PublisherFiles,
  target: Target,
): Promise<{ previous: VersionMarker | null; rollback: boolean; fresh: boolean }> {
  const { fleet, publisher: pub, log: lg } = opts;
  const [fetched, exporting] = await Promise.allSettled([
    primaryMarker(fleet, pub, files.pulledDir),
    exportTree(repo, target.tree, {
      staging: pub.staging,
      indexFile: files.index,
      stampFile: files.stamp,
    }),
  ]);
  if (fetched.status === "rejected") throw fetched.reason;
  const previous = fetched.value;
  lg.debug("primary version", { version: describeVersion(previous) });
  const rollback = previous !== null && previous.commit !== target.commit &&
    await checkOrder(
      repo,
      target.commit,
      target.ref,
      previous,
      fleet.primary.name,
      opts.force ?? false,
    );
  if (exporting.status === "rejected") throw exporting.reason;
  const exported = exporting.value;
  lg.debug("exported", {
    staging: pub.staging,
    fresh: exported.fresh,
    strays: exported.strays,
    ms: Math.round(exported.ms),
  });
  return { previous, rollback, fresh: exported.fresh };
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
 * Sends staging to the primary's write module, all but `excludes`.
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 */
async function sendTree(
  fleet: Fleet,
  pub: PublisherHost,
  excludes: string[],
): Promise<RsyncResult> {
  const sent = await runRsync(
    rsyncArgs(
      pushJob(fleet, pub, `${pub.staging}/`, {
        delete: true,
        deleteDelay: true,
        excludes,
        // The daemon's --stats never count deletions on its side; the items do.
        itemize: true,
      }),
    ),
    { rsync: fleet.rsync.path },
  );
  if (sent.code !== 0) {
    throw new TransferError(
      `cannot send the tree to ${fleet.primary.name} (${writeUrl(fleet)}): ${
        describeRsyncFailure(sent)
      }${refusalHint(sent.stderr, fleet, pub)}; ${
        NOTHING_SENT.has(sent.code)
          ? "nothing was sent"
          : "the marker still names the previous version: publish again"
      }`,
      sent.code,
    );
  }
  return sent;
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
 * The version log's entry for `marker`: what the tree transfer changed. That
 * is the whole change from `previous` only when the primary held exactly
 * `previous` before it: not after a publish of ours that failed between
 * tree and marker (our record `local` is then ahead), nor after another
 * publisher's; then the entry says the whole tree may have changed.
 */
function logEntry(
  previous: VersionMarker | null,
  local: VersionMarker | null,
  marker: VersionMarker,
  items: string[],
): LogEntry {
  const drift = classifyItems(items);
  const paths = [...drift.changed, ...drift.missing].map((i) => i.path);
  const deleted = drift.extra.map((i) => i.path);
  // rsync escapes bytes it will not print; decoded they are exact, except
  // bytes that are not UTF-8, which the JSON log cannot carry.
  const lossy = [...paths, ...deleted].some((p) => p.includes("\uFFFD"));
  const unsure = previous !== null && !sameVersion(local, previous);
  return newEntry(previous, marker, { paths, deleted, whole: lossy || unsure });
}

/**
 * Appends `entry` to the version log and sends the log (and, `signed`, the
 * manifest and the envelope) with the marker in one transfer; the marker
 * sorts last (`.fanout-changes`, `-manifest`, `-release`, `-version`), so
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
  await writeFileList(files.markerList, [
    VERSION_LOG,
    ...(signed ? [RELEASE_MANIFEST, RELEASE_ENVELOPE] : []),
    VERSION_MARKER,
  ]);
  const last = await runRsync(
    rsyncArgs(pushJob(fleet, pub, `${files.markerDir}/`, { filesFrom: files.markerList })),
    { rsync: fleet.rsync.path },
  );
  if (last.code !== 0) {
    await writeAtomic(logFile, logBefore);
    throw new TransferError(
      `sent the tree of ${short(commit)} to ${fleet.primary.name} but not its version marker: ${
        describeRsyncFailure(last)
      }; publish again`,
      last.code,
    );
  }
  return last;
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

/** rsync exit codes that mean the transfer never started: the primary is as it was. */
const NOTHING_SENT = new Set([5, 10, 35]);

/**
 * The write module hides itself (`list = no`) from addresses it does not
 * allow, so a wrong `--address` reads as an unknown module: say what to check.
 */
function refusalHint(stderr: string, fleet: Fleet, pub: PublisherHost): string {
  if (!/@ERROR: (Unknown module|access denied)/.test(stderr)) return "";
  return ` (${fleet.primary.name} lets only the publisher's address write to ` +
    `${fleet.modules.write}; this came from ${pub.address}: is that publisher.address ` +
    `in the primary's fleet file?)`;
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
): Promise<boolean> {
  const older = await isAncestor(repo, commit, previous.commit);
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

/** The primary's current marker, read from its open read module; null when it has none. */
async function primaryMarker(
  fleet: Fleet,
  pub: PublisherHost,
  dir: string,
): Promise<VersionMarker | null> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const text = await pullFromPrimary(fleet, pub, dir, VERSION_MARKER);
  try {
    return text === null ? null : parseMarker(text);
  } catch {
    return null;
  }
}

/**
 * The text of fanout's file `name` at the root of the primary's tree, read
 * from its open read module into `dir`; null when it has none (or it is
 * past the size `extra` flags allow).
 *
 * @throws {TransferError} when the primary cannot be reached.
 */
async function pullFromPrimary(
  fleet: Fleet,
  pub: PublisherHost,
  dir: string,
  name: string,
  extra: string[] = [],
): Promise<string | null> {
  const url = formatRsyncUrl({
    ...fleet.primary.listen,
    module: fleet.modules.read,
    path: `/${name}`,
  });
  const r = await runRsync(
    rsyncArgs({
      source: url,
      dest: `${dir}/`,
      address: pub.address,
      timeout: fleet.rsync.timeout,
      connectTimeout: fleet.rsync.connectTimeout,
      extra,
    }),
    { rsync: fleet.rsync.path },
  );
  if (r.code === 23 && /No such file or directory/.test(r.stderr)) return null;
  if (r.code !== 0) {
    throw new TransferError(
      `cannot reach the primary ${fleet.primary.name} at ${formatHostPort(fleet.primary.listen)} ` +
        `(reading ${url}): ${describeRsyncFailure(r)}; nothing was sent`,
      r.code,
    );
  }
  return readSmallFile(`${dir}/${name}`, PULLED_MAX_BYTES);
}

/** The most of a fanout file read from the primary: a marker or an envelope is far smaller. */
const PULLED_MAX_BYTES = 64 * 1024;

function pushJob(
  fleet: Fleet,
  pub: PublisherHost,
  source: string,
  more: Partial<RsyncJob>,
): RsyncJob {
  return {
    source,
    dest: writeUrl(fleet),
    address: pub.address,
    passwordFile: fleet.auth.passwordFile,
    timeout: fleet.rsync.timeout,
    connectTimeout: fleet.rsync.connectTimeout,
    // Files land together at the end; meanwhile they sit in the primary's
    // temp dir and .~tmp~ dirs, which its read module never serves.
    delayUpdates: true,
    tempDir: SERVER_TEMP_DIR,
    // Two publishes within one second may rewrite a file with the same size:
    // only the exact mtime tells the new one apart.
    exactTimes: true,
    ...more,
  };
}

function writeUrl(fleet: Fleet): string {
  return formatRsyncUrl({
    ...fleet.primary.listen,
    module: fleet.modules.write,
    user: fleet.auth.user,
  });
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
