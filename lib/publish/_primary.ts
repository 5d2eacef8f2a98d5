/**
 * The publisher's transfers with the primary: its marker (and, signed, its
 * envelope) read from its open read module in one transfer; the tree sent to
 * its write module, whole or as a list of changed paths and then a list of
 * deletions; and the version's own files sent last.
 * Internal to lib/publish.
 *
 * @module
 */

import type { Fleet, PublisherHost } from "../config/mod.ts";
import {
  formatHostPort,
  formatRsyncUrl,
  readSmallFile,
  RELEASE_ENVELOPE,
  SERVER_TEMP_DIR,
  TransferError,
  VERSION_MARKER,
} from "../core/mod.ts";
import {
  describeRsyncFailure,
  listedVersion,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  runRsync,
  writeFileList,
} from "../rsync/mod.ts";
import { parseMarker, type VersionMarker } from "../version/mod.ts";

/** What the primary holds of fanout's own files, as read before a publish. */
export interface PrimaryState {
  /** Its marker; null when it has none (or none that parses). */
  marker: VersionMarker | null;
  /** Its envelope's bytes, when asked for and there; null otherwise. */
  envelope: Uint8Array | null;
  /**
   * Signed: the version its read module's comment announces, which is the
   * one it has checked its tree against (null: none); undefined when the
   * listing could not tell, or unsigned.
   */
  announced?: VersionMarker | null;
}

/** The most of a fanout file read from the primary: a marker or an envelope is far smaller. */
const PULLED_MAX_BYTES = 64 * 1024;

/**
 * The primary's marker, and with `signed` its envelope, read from its open
 * read module into `dir` (emptied first) in one transfer.
 *
 * @throws {TransferError} when the primary cannot be reached.
 *
 * @example
 * ```ts
 * const { marker, envelope } = await readPrimary(fleet, pub, `${stateDir}/primary-marker`, true);
 * ```
 */
export async function readPrimary(
  fleet: Fleet,
  pub: PublisherHost,
  dir: string,
  signed: boolean,
): Promise<PrimaryState> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const names = signed ? [VERSION_MARKER, RELEASE_ENVELOPE] : [VERSION_MARKER];
  // The listing goes alongside the pull: one small exchange, no rsync process.
  const announced = signed
    ? listedVersion(
      fleet.primary.listen,
      fleet.modules.read,
      Math.min(fleet.rsync.connectTimeout, 5_000),
    )
    : Promise.resolve(undefined);
  await pullFromPrimary(fleet, pub, dir, names);
  const text = readSmallFile(`${dir}/${VERSION_MARKER}`, PULLED_MAX_BYTES);
  const envelope = signed ? readSmallFile(`${dir}/${RELEASE_ENVELOPE}`, PULLED_MAX_BYTES) : null;
  return {
    marker: text === null ? null : parseMarker(text),
    envelope: envelope === null ? null : new TextEncoder().encode(envelope),
    announced: await announced,
  };
}

/**
 * Fetches fanout's files `names` from the root of the primary's tree (its
 * open read module) into `dir`; one it lacks, or past the size read, is
 * just not there afterwards.
 *
 * @throws {TransferError} when the primary cannot be reached.
 */
async function pullFromPrimary(
  fleet: Fleet,
  pub: PublisherHost,
  dir: string,
  names: string[],
): Promise<void> {
  const url = formatRsyncUrl({ ...fleet.primary.listen, module: fleet.modules.read, path: "/" });
  const list = `${dir}/.names`;
  await writeFileList(list, names);
  const r = await runRsync(
    rsyncArgs({
      source: url,
      dest: `${dir}/`,
      address: pub.address,
      timeout: fleet.rsync.timeout,
      connectTimeout: fleet.rsync.connectTimeout,
      filesFrom: list,
      extra: ["--ignore-missing-args", `--max-size=${PULLED_MAX_BYTES}`],
    }),
    { rsync: fleet.rsync.path },
  );
  if (r.code !== 0) {
    throw new TransferError(
      `cannot reach the primary ${fleet.primary.name} at ${formatHostPort(fleet.primary.listen)} ` +
        `(reading ${url}): ${describeRsyncFailure(r)}; nothing was sent`,
      r.code,
    );
  }
}

/**
 * Sends staging to the primary's write module, all but `excludes`, deleting
 * what staging lacks after the new files landed; with `checksum`, files are
 * compared by content (a primary whose tree is not what its marker names
 * may hold a file changed without its size or time).
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 *
 * @example
 * ```ts
 * const sent = await sendTree(fleet, pub, excludes);
 * ```
 */
export async function sendTree(
  fleet: Fleet,
  pub: PublisherHost,
  excludes: string[],
  opts: { checksum?: boolean } = {},
): Promise<RsyncResult> {
  const job = pushJob(fleet, pub, `${pub.staging}/`, {
    delete: true,
    deleteDelay: true,
    checksum: opts.checksum,
    excludes,
    // The daemon's --stats never count deletions on its side; the items do.
    itemize: true,
  });
  return await sendOrThrow(fleet, pub, job);
}

/**
 * Sends only `paths` of staging (sorted, each directory above a path listed
 * too) to the primary's write module: nothing else is looked at on either
 * side, no directory is synced beyond its own entry, and nothing is deleted
 * but what a path's new kind replaces. None: no transfer.
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 *
 * @example
 * ```ts
 * const sent = await sendPaths(fleet, pub, `${stateDir}/send.list`, ["lib", "lib/a.ts"], excludes);
 * ```
 */
export async function sendPaths(
  fleet: Fleet,
  pub: PublisherHost,
  list: string,
  paths: string[],
  excludes: string[],
): Promise<RsyncResult | null> {
  if (paths.length === 0) return null;
  await writeFileList(list, paths);
  const job = pushJob(fleet, pub, `${pub.staging}/`, {
    filesFrom: list,
    excludes,
    itemize: true,
    // Only the listed entries: every directory above a path is listed itself.
    // --force: a directory whose path is now a file goes, contents and all.
    extra: ["--no-implied-dirs", "--force"],
  });
  return await sendOrThrow(fleet, pub, job);
}

async function sendOrThrow(fleet: Fleet, pub: PublisherHost, job: RsyncJob): Promise<RsyncResult> {
  const sent = await runRsync(rsyncArgs(job), { rsync: fleet.rsync.path });
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
 * Deletes `paths` (each missing from `staging`, and with all below it) from
 * the primary, then sends `retouch`, directories of staging, again (their
 * own entries only), so that their mtimes are staging's after the deletions
 * in them. After the tree transfer (new files land before anything goes),
 * before the marker's (nothing changes after it lands). None: no transfer.
 *
 * @throws {TransferError} when the primary cannot be reached or refuses.
 *
 * @example
 * ```ts
 * await sendDeletions(fleet, pub, `${stateDir}/delete.list`, {
 *   staging,
 *   paths: ["lib/old"],
 *   retouch: ["lib"],
 * });
 * ```
 */
export async function sendDeletions(
  fleet: Fleet,
  pub: PublisherHost,
  list: string,
  d: { staging: string; paths: string[]; retouch: string[] },
): Promise<RsyncResult | null> {
  if (d.paths.length === 0) return null;
  await writeFileList(list, [...d.paths, ...d.retouch].map((p) => `${d.staging}/./${p}`));
  const job = pushJob(fleet, pub, "/", {
    filesFrom: list,
    itemize: true,
    // A path staging lacks is deleted on the primary, a directory with what is below it.
    extra: ["--no-implied-dirs", "--delete-missing-args", "--force"],
  });
  return await sendOrThrow(fleet, pub, job);
}

/**
 * Sends the version's files `names` of `dir` in one transfer: they land
 * together at its end (`--delay-updates`), in the order of their names.
 *
 * @throws {TransferError} (the rsync code and words, without blame) when
 * the primary does not take them; the caller says what it means.
 *
 * @example
 * ```ts
 * await sendLast(fleet, pub, markerDir, [".fanout-changes", ".fanout-version"], listFile);
 * ```
 */
export async function sendLast(
  fleet: Fleet,
  pub: PublisherHost,
  dir: string,
  names: string[],
  list: string,
): Promise<RsyncResult> {
  await writeFileList(list, names);
  const r = await runRsync(rsyncArgs(pushJob(fleet, pub, `${dir}/`, { filesFrom: list })), {
    rsync: fleet.rsync.path,
  });
  if (r.code !== 0) throw new TransferError(describeRsyncFailure(r), r.code);
  return r;
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
