/**
 * Signed versions, the publisher's part (docs/publishing.md, "Signed
 * versions"): the signing key, refused unless the fleet lists its public key;
 * the manifest of staging, kept in the publisher's state dir with a stat
 * record so that only what changed since the last publish is hashed (after
 * a walk of staging), or patched for the paths git says changed (a publish
 * by difference: nothing else read); the manifest and the signed envelope
 * written beside the marker; and whether the primary already holds a signed
 * release of the version.
 *
 * The manifest lists what the tree transfer sends, exactly: staging without
 * fanout's own files, and without what `push.exclude` keeps from the
 * primary. rsync itself says what that is (a dry run with the transfer's own
 * patterns), so a pattern never means one thing to rsync and another to the
 * manifest.
 *
 * @module
 */

import type { Fleet, PublisherHost } from "../config/mod.ts";
import {
  ConfigError,
  type Logger,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
} from "../core/mod.ts";
import {
  ENVELOPE_MAX_BYTES,
  loadSigningKey,
  manifestDigest,
  markerMismatch,
  parsePublicKey,
  patchManifestState,
  type PathChange,
  readKeptManifest,
  readManifestState,
  RELEASE_SKIP,
  type SigningKey,
  signRelease,
  type StateFiles,
  updateManifest,
  verifyRelease,
  writeManifestState,
} from "../release/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import { writeAtomic } from "./_atomic.ts";
import { excludesExport, sentBy } from "./exclude.ts";

/**
 * The root names no manifest lists: fanout's own files, and its temp dir on
 * the servers.
 *
 * @example
 * ```ts
 * const listed = !MANIFEST_SKIP.includes(path.split("/")[0]);
 * ```
 */
export const MANIFEST_SKIP: readonly string[] = [...RELEASE_SKIP, SERVER_TEMP_DIR];

/** The fleet-file key that names the signing key, for messages. */
const KEY_SETTING = "release.signing_key_file";

/**
 * The key this publisher signs versions with: null in an unsigned fleet
 * (`release.public_keys` empty); otherwise the key in
 * `release.signing_key_file`, which must be one the fleet lists.
 *
 * @throws {ConfigError} naming the file and what to do: missing (make one
 * with `fanout keygen`), not a private key, open to others, or a key the
 * fleet does not list (exit 2).
 *
 * @example
 * ```ts
 * const key = await releaseKey(fleet); // null: versions are not signed
 * ```
 */
export async function releaseKey(fleet: Fleet): Promise<SigningKey | null> {
  const { publicKeys, signingKeyFile: path } = fleet.release;
  if (publicKeys.length === 0) return null;
  const file = fleet.file ?? "flags";
  const refuse = (message: string) => new ConfigError(file, [{ path: KEY_SETTING, message }]);
  try {
    Deno.lstatSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw refuse(
      `${path} does not exist, and release.public_keys asks for signed versions: ` +
        `make a key pair with "fanout keygen -c ${file}" and list its public key there`,
    );
  }
  const key = await loadSigningKey(path, { setting: KEY_SETTING, fleetFile: file });
  const listed = publicKeys.map(parsePublicKey);
  if (!listed.some((k) => k.text === key.publicKey.text)) {
    throw refuse(
      `${path} holds key ${key.publicKey.text} (id ${key.publicKey.id}), which ` +
        `release.public_keys does not list (it lists ${listed.map((k) => k.id).join(", ")}): ` +
        "add it there once every host has the fleet file, or point release.signing_key_file " +
        `at a listed key's file ("fanout keygen" makes a new pair)`,
    );
  }
  return key;
}

/**
 * Files of the publisher's state dir that signing uses: the kept manifest
 * of staging and its stat record, and a path that is never created (the
 * destination of the dry run that lists what the transfer sends).
 */
export interface ReleaseFiles extends StateFiles {
  nowhere: string;
}

/** The manifest of staging, ready to sign and send. */
export interface StagingManifest {
  /** Its text, as sent. */
  bytes: Uint8Array<ArrayBuffer>;
  /** The SHA-256 of `bytes`, lowercase hex. */
  digest: string;
  /** Paths it lists. */
  paths: number;
  /** Files and symlinks hashed for it (the rest came from the kept manifest). */
  hashed: number;
}

/**
 * The manifest of staging now, built from the kept one (only paths whose
 * `lstat` changed are hashed), and kept for the next publish. Builds from
 * nothing after a fresh export, and when the kept state is missing or cannot
 * be read (said in one warning).
 *
 * @throws {ManifestError} / {TreeError} for a tree no manifest can list (a
 * name with a control character); nothing has been sent then.
 * @throws {TransferError} when rsync cannot list what the transfer sends.
 */
export async function stagingManifest(
  fleet: Fleet,
  pub: PublisherHost,
  files: ReleaseFiles,
  opts: { fresh: boolean; excludes: string[]; log: Logger },
): Promise<StagingManifest> {
  const started = performance.now();
  const before = opts.fresh ? null : keptState(files, opts.log);
  const filter = await transferFilter(fleet, pub.staging, files.nowhere, opts.excludes);
  const next = await updateManifest(pub.staging, before, {
    skip: MANIFEST_SKIP,
    filter,
  });
  const bytes = await writeManifestState(files, next);
  const m = {
    bytes,
    digest: await manifestDigest(bytes),
    paths: next.manifest.entries.length,
    hashed: next.hashed,
  };
  opts.log.debug("manifest built", {
    paths: m.paths,
    hashed: m.hashed,
    kept: before !== null,
    ms: Math.round(performance.now() - started),
  });
  return m;
}

/**
 * The kept manifest's bytes when its SHA-256 is `digest` (the last
 * publish's); a reason instead. Read apart from {@linkcode patchedManifest}
 * so that it overlaps with what a publish waits for first (the primary).
 *
 * @example
 * ```ts
 * const kept = keptManifest(files, last.manifest); // started now, awaited later
 * ```
 */
export async function keptManifest(
  files: StateFiles,
  digest: string,
): Promise<Uint8Array | string> {
  try {
    const kept = readKeptManifest(files);
    if (kept && await manifestDigest(kept) === digest) return kept;
    return "the kept manifest is not the one last published";
  } catch (e) {
    return `the kept manifest cannot be read: ${(e as Error).message}`;
  }
}

/**
 * The manifest of staging after a publish by difference: `kept` (from
 * {@linkcode keptManifest}) brought up to date for `changes` alone, and kept
 * with its record for the next publish. A reason instead when that cannot
 * be done: the manifest is then built from a walk of staging, as a
 * whole-tree publish builds it.
 *
 * @example
 * ```ts
 * const m = await patchedManifest(files, staging, kept, difference.manifest, log);
 * if (typeof m === "string") log.debug("walking staging for the manifest", { because: m });
 * ```
 */
export async function patchedManifest(
  files: StateFiles,
  staging: string,
  kept: Uint8Array,
  changes: readonly PathChange[],
  log: Logger,
): Promise<StagingManifest | string> {
  const started = performance.now();
  try {
    const next = await patchManifestState(files, kept, staging, changes);
    const m = { ...next, digest: await manifestDigest(next.bytes) };
    log.debug("manifest built", {
      paths: m.paths,
      hashed: m.hashed,
      kept: true,
      patched: true,
      ms: Math.round(performance.now() - started),
    });
    return m;
  } catch (e) {
    return `the kept manifest cannot be brought up to date: ${(e as Error).message}`;
  }
}

/** The kept manifest and record, or null (said when they were there but unusable). */
function keptState(files: StateFiles, log: Logger): ReturnType<typeof readManifestState> {
  try {
    return readManifestState(files);
  } catch (e) {
    log.warn("the kept manifest cannot be used; hashing the whole tree", {
      error: (e as Error).message,
    });
    return null;
  }
}

/**
 * Which paths of `staging` the tree transfer sends, as a walk filter; none
 * needed when no pattern can match an export (lib/publish/exclude.ts).
 *
 * @throws {TransferError} when rsync cannot list them.
 */
async function transferFilter(
  fleet: Fleet,
  staging: string,
  nowhere: string,
  excludes: string[],
): Promise<((path: string) => boolean) | undefined> {
  if (!excludesExport(fleet)) return undefined;
  const sent = await sentBy(fleet, staging, nowhere, excludes);
  return (path) => sent.has(path);
}

/**
 * Writes the release files of `marker` into `dir`, beside the marker: the
 * manifest and the envelope signed with `key` (the marker's seq, commit, ref
 * and publish time, and the manifest's SHA-256).
 *
 * @example
 * ```ts
 * await stageRelease(markerDir, key, marker, manifest);
 * ```
 */
export async function stageRelease(
  dir: string,
  key: SigningKey,
  marker: VersionMarker,
  m: StagingManifest,
): Promise<void> {
  const envelope = await signRelease({ ...marker, manifest_sha256: m.digest }, key);
  await writeAtomic(`${dir}/${RELEASE_MANIFEST}`, m.bytes);
  await writeAtomic(`${dir}/${RELEASE_ENVELOPE}`, envelope);
}

/**
 * Whether `envelope` (the primary's, or null) is a signed release of
 * `marker` whose manifest is `m`, by a key the fleet lists: then a publish
 * of the same tree has nothing to send. Anything else (no envelope, an
 * unlisted or rotated-out key, another manifest) asks for a new version.
 *
 * @example
 * ```ts
 * if (await releaseCurrent(fleet, bytes, previous, manifest)) console.log("already signed");
 * ```
 */
export async function releaseCurrent(
  fleet: Fleet,
  envelope: Uint8Array | null,
  marker: VersionMarker,
  m: Pick<StagingManifest, "digest">,
): Promise<boolean> {
  if (!envelope || envelope.length > ENVELOPE_MAX_BYTES) return false;
  try {
    const r = await verifyRelease(envelope, fleet.release.publicKeys.map(parsePublicKey));
    return markerMismatch(r, marker) === null && r.manifest_sha256 === m.digest;
  } catch {
    return false;
  }
}
