/**
 * The version a publish lands, after its tree: the marker with the next
 * `seq`, the version log's entry, and signed the envelope, sent last in one
 * transfer so a host whose marker says seq N holds all of version N; then
 * the record a publish by difference goes by next. Also what a publish reads
 * of versions before it sends: its own record of the last one offered, the
 * ref as a marker names it, and whether a commit is older than the
 * published one.
 * Internal to lib/publish.
 *
 * @module
 */

import type { Fleet, PublisherHost } from "../config/mod.ts";
import {
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  TransferError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import type { SigningKey } from "../release/mod.ts";
import { classifyItems, type RsyncResult, type RsyncStats } from "../rsync/mod.ts";
import {
  appendEntry,
  formatMarker,
  newEntry,
  parseMarker,
  sameVersion,
  stampMarker,
  type VersionMarker,
} from "../version/mod.ts";
import { writeAtomic } from "./_atomic.ts";
import { sendLast } from "./_primary.ts";
import type {
  Ahead,
  Known,
  Published,
  PublisherFiles,
  PublishOptions,
  PublishResult,
} from "./_types.ts";
import { keepLastPublish, type LastPublish } from "./difference.ts";
import { type GitRepo, isAncestor } from "./git.ts";
import { stageRelease, type StagingManifest } from "./release.ts";

/** A version log entry ({@linkcode newEntry}). */
type LogEntry = ReturnType<typeof newEntry>;

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
 *
 * @throws {TransferError} when the primary does not take them.
 *
 * @example
 * ```ts
 * return await land(opts, files, key, known, { stats, items, manifest, deleted: [] });
 * ```
 */
export async function land(
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

/**
 * The record of a publish whose marker is on the primary.
 *
 * @example
 * ```ts
 * await keepLastPublish(files.published, landed(known, marker, manifest));
 * ```
 */
export function landed(k: Known, marker: VersionMarker, m: StagingManifest | null): LastPublish {
  return { marker, tree: k.target.tree, excludes: k.excludes, manifest: m?.digest ?? null };
}

/**
 * The result's `release`: who signed the version and its manifest's counts;
 * null unsigned.
 *
 * @example
 * ```ts
 * signedBy(key, manifest); // { keyId: "a1b2c3d4", paths: 1200, hashed: 3 }
 * ```
 */
export function signedBy(
  key: SigningKey | null,
  m: StagingManifest | null,
): PublishResult["release"] {
  return key && m ? { keyId: key.publicKey.id, paths: m.paths, hashed: m.hashed } : null;
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
 * Refuses (without `force`) a commit that is an ancestor of the published
 * one, or one that cannot be compared with it; returns true for a rollback.
 * `known` is the answer asked ahead, used when it is about `previous`.
 *
 * @throws {SafetyError} for an older or unrelated commit without `force`.
 *
 * @example
 * ```ts
 * const rollback = await checkOrder(repo, commit, "main", previous, "rsync1", false);
 * ```
 */
export async function checkOrder(
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

/**
 * The publisher's own record of the version it offered last; null when
 * there is none or it does not parse.
 *
 * @example
 * ```ts
 * const local = await readLocal(publisherFiles(pub).state);
 * ```
 */
export async function readLocal(file: string): Promise<VersionMarker | null> {
  try {
    return parseMarker(await Deno.readTextFile(file));
  } catch {
    return null;
  }
}

/**
 * The ref as the marker names it: `main` for `refs/heads/main`, 8 digits for a commit id.
 *
 * @example
 * ```ts
 * markerRef("refs/heads/main", commit); // "main"
 * markerRef("1a2b3c4d5e", "1a2b3c4d5e6f..."); // "1a2b3c4d"
 * ```
 */
export function markerRef(ref: string, commit: string): string {
  if (/^[0-9a-f]{4,64}$/i.test(ref) && commit.startsWith(ref.toLowerCase())) return short(commit);
  return ref.replace(/^refs\/heads\//, "");
}

/**
 * A commit id as messages show it: its first 8 digits.
 *
 * @example
 * ```ts
 * short("1a2b3c4d5e6f7a8b"); // "1a2b3c4d"
 * ```
 */
export function short(commit: string): string {
  return commit.slice(0, 8);
}
