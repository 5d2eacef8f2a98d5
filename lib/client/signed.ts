/**
 * Verified releases on the client (`release.public_keys` set): a version is
 * applied only as its publisher signed it.
 *
 * 1. The source's marker, envelope and manifest come in one small request
 *    into the state dir. The envelope must verify with a trusted key, its
 *    version must be no older than the newest this host applied (an old
 *    signed version served again is refused), the manifest must have the
 *    SHA-256 it signs, and the marker must be its version. When the server
 *    announces the version dest holds, the files kept from the fetch that
 *    applied it stand in for the request, checked the same way; a tree
 *    that is not that release already is brought to it as below, after
 *    the request.
 * 2. The tree is compared with the manifest path by path; a file is hashed
 *    (a symlink's target read) unless the stat record of the last verified
 *    tree vouches for it.
 * 3. Only the paths that differ are fetched, into a directory no reader of
 *    dest sees, with the tree's own files as rsync's delta basis, and each is
 *    checked against the manifest (type, mode, size, SHA-256) before any
 *    goes live.
 * 4. The layout puts them in place (lib/client/inplace_signed.ts, or a new
 *    `--atomic` tree), removes what the manifest does not list, then writes
 *    the manifest, the envelope and, last, the marker.
 *
 * A refusal changes nothing in dest and says, in one line, the server and
 * the first path at fault (exit 4).
 *
 * @module
 */

import {
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  TransferError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import {
  ENVELOPE_MAX_BYTES,
  type Manifest,
  MANIFEST_LIMITS,
  manifestDigest,
  type ManifestEntry,
  markerMismatch,
  parseManifest,
  SignatureError,
  verifyRelease,
} from "../release/mod.ts";
import { writeFileList } from "../rsync/mod.ts";
import {
  describeVersion,
  MARKER_MAX_BYTES,
  parseMarker,
  sameVersion,
  type VersionMarker,
} from "../version/mod.ts";
import {
  type ApplyContext,
  type CheckedRelease,
  KeptDiffers,
  type ReleaseApplied,
  type TreeLayout,
  type TreeLook,
} from "./layout.ts";
import { type ClientJob, failUnlessOk, retrying, rsyncRun, safeAttrs } from "./job.ts";
import {
  CONTROL,
  CONTROL_TMP,
  readBounded,
  ReleaseRefusal,
  TREE_SKIP,
  unreadable,
} from "./signed_files.ts";
import { lookAt, releaseFloor } from "./signed_state.ts";

/** Names a manifest may not list: fanout's own files, and the name its control files are written as. */
const RESERVED = new Set([...TREE_SKIP, VERSION_LOG, CONTROL_TMP]);

/** The mode bits a client never takes from a server (see safeAttrs in lib/client/job.ts). */
const NOT_TAKEN = 0o6002;

/** A comparison that lands between a version's files and its marker is tried this often. */
const PASSES = 2;

/**
 * Where the release files are fetched to, in the state dir. They stay there
 * after the run: the kept release a later run checks instead of fetching
 * (see {@linkcode syncRelease}).
 */
const FETCH_DIR = "release-fetch";

/** The most bytes each release file may have, fetched or kept. */
const LIMITS: Record<string, number> = {
  [VERSION_MARKER]: MARKER_MAX_BYTES,
  [RELEASE_ENVELOPE]: ENVELOPE_MAX_BYTES,
  [RELEASE_MANIFEST]: MANIFEST_LIMITS.maxBytes,
};
/**
 * Brings the tree to the source's signed release through `layout`, checking
 * the release first. What a version landing mid-run also causes is looked
 * at again before the server is blamed: release files that do not match
 * each other are fetched again, and a fetched path that is not the
 * manifest's counts unless the source now holds a newer signed version
 * (checked whole: a marker alone is the server's word).
 *
 * With `kept`, when the server holds the version dest holds, the release
 * kept in the state dir from the run that fetched it is checked, as a
 * fetched one is; when it is of that version and the tree is that release
 * already, the run ends there without a connection to the server. Anything
 * else, and the release is fetched as without it.
 *
 * @throws {ReleaseRefusal} for a release, or a fetched path, that is not as
 * signed; {@linkcode TransferError} when the source cannot be read, or kept
 * changing.
 *
 * @example
 * ```ts
 * const done = await syncRelease(job, layout, { state, backupDir: null }, await layout.current());
 * ```
 */
export async function syncRelease(
  job: ClientJob,
  layout: TreeLayout,
  ctx: ApplyContext,
  current: string | null,
  kept: KeptLook | null = null,
): Promise<ReleaseApplied & { release: CheckedRelease }> {
  // The newest seq checked this run: only a signed version newer than it
  // landing on the server explains a refusal away.
  let newest = -1;
  // The tree's walk and stat record, read while the release is fetched,
  // for the first try at applying it.
  let look: TreeLook | null = current && ctx.state !== "absent" ? lookAt(job, current, ctx) : null;
  try {
    // The server is asked first: a look of a millisecond or two, where the
    // kept release's check reads and hashes its manifest, wasted on a run
    // that has a new version to fetch.
    const c = kept && await kept.serverHolds()
      ? await keptRelease(job, current, kept.version)
      : null;
    if (c) {
      const first = look ?? undefined;
      look = null;
      const done = await confirmedKept(job, layout, c, { ...ctx, look: first });
      if (done) return done;
    }
    for (let pass = 1;; pass++) {
      let c: CheckedRelease | null = null;
      try {
        c = await fetchChecked(job, await releaseFloor(job, current));
        const checked = c;
        newest = Math.max(newest, checked.release.seq);
        const done = await retrying(job, "sync", () => {
          const first = look ?? undefined;
          look = null;
          return layout.applyRelease!(checked, { ...ctx, look: first });
        });
        return { ...done, release: checked };
      } catch (e) {
        if (!(e instanceof ReleaseRefusal) || !e.racy) throw e;
        const landed = c ? await newerRelease(job, newest) : null;
        // A path not sent at all may come from a server behind the proxy
        // still at another version: another pass may reach one holding it.
        if (c ? landed === null && !e.withheld : pass >= PASSES) throw e;
        if (landed !== null) newest = landed;
        if (pass >= PASSES) {
          if (landed === null) throw e;
          throw new TransferError(
            `${job.source}: a new version landed during each of ${PASSES} tries; nothing ` +
              `changed in ${job.dest} (the next run completes the sync)`,
          );
        }
        job.log.debug(
          landed === null
            ? "a path of the version was not sent; trying again"
            : "a version landed during the run; trying again",
          { path: e.path },
        );
      }
    }
  } finally {
    // A look never taken (the release refused) ends before the run does.
    await (look as TreeLook | null)?.walked.catch(() => {});
  }
}

/** What lets a run take the kept release instead of fetching it (see {@linkcode syncRelease}). */
export interface KeptLook {
  /** The version dest holds. */
  version: VersionMarker;
  /** Whether the server holds `version` as well (asked before the kept release is read). */
  serverHolds: () => Promise<boolean>;
}

/**
 * The release kept in the state dir from the last fetch, checked as a
 * fetched one is (read bounded, never through a symlink), when it is of
 * `version`; else null, and the run fetches the release.
 */
async function keptRelease(
  job: ClientJob,
  current: string | null,
  version: VersionMarker,
): Promise<CheckedRelease | null> {
  const dir = `${job.stateDir}/${FETCH_DIR}`;
  let why = "not a directory";
  try {
    if (Deno.lstatSync(dir).isDirectory) {
      const files: Fetched = new Map(
        CONTROL.map((n) => [n, readBounded(`${dir}/${n}`, LIMITS[n])]),
      );
      const c = await checkRelease(job, files, await releaseFloor(job, current), { lazy: true });
      if (sameVersion(c.marker, version)) return c;
      why = `of ${describeVersion(c.marker)}, dest holds ${describeVersion(version)}`;
    }
  } catch (e) {
    const io = e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied;
    if (!(e instanceof ReleaseRefusal || io)) throw e;
    why = e.message;
  }
  job.log.debug("the kept release is not taken; fetching the release", { why });
  return null;
}

/**
 * The kept release `c` applied with nothing to change (the tree is it
 * already), or null when the tree differs: then nothing changed.
 */
async function confirmedKept(
  job: ClientJob,
  layout: TreeLayout,
  c: CheckedRelease,
  ctx: ApplyContext,
): Promise<ReleaseApplied & { release: CheckedRelease } | null> {
  try {
    const done = await layout.applyRelease!(c, { ...ctx, keptOnly: true });
    job.log.debug("dest is the kept release of the version the server holds; nothing fetched", {
      version: describeVersion(c.marker),
    });
    return { ...done, release: c };
  } catch (e) {
    // A kept manifest that does not parse (read only now: lazily) is not
    // taken either: the release is fetched and checked as always.
    if (!(e instanceof KeptDiffers || e instanceof ReleaseRefusal)) throw e;
    job.log.debug(
      e instanceof KeptDiffers
        ? "dest differs from the kept release; fetching the release"
        : "the kept release is not taken; fetching the release",
      e instanceof ReleaseRefusal ? { why: e.message } : {},
    );
    return null;
  }
}

/**
 * The source's release, fetched and checked (the envelope verifies with a
 * listed key, its seq is at least `floor`, the manifest and the marker are
 * the ones it signs); a file fetched beside the envelope of another version
 * is fetched again once.
 *
 * @throws {ReleaseRefusal} naming the file at fault; {@linkcode TransferError}
 * when the source cannot be read.
 *
 * @example
 * ```ts
 * const c = await fetchRelease(job, await releaseFloor(job, current));
 * console.log(`seq ${c.release.seq}: ${c.manifest.entries.length} paths`);
 * ```
 */
export async function fetchRelease(job: ClientJob, floor: number): Promise<CheckedRelease> {
  for (let pass = 1;; pass++) {
    try {
      return await fetchChecked(job, floor);
    } catch (e) {
      if (!(e instanceof ReleaseRefusal) || !e.racy || pass >= PASSES) throw e;
    }
  }
}

/** One fetch of the release files, checked against `floor`; a failed transfer is retried. */
async function fetchChecked(job: ClientJob, floor: number): Promise<CheckedRelease> {
  return await retrying(job, "fetch the signed release", async () => {
    return await checkRelease(job, await fetchControl(job), floor);
  });
}

/**
 * The seq of the release the source holds now when it is signed, checked
 * whole and newer than `newest`; else null. A marker alone proves nothing:
 * a server that shows another one each time it is asked would pass every
 * refusal off as a version landing mid-run.
 */
async function newerRelease(job: ClientJob, newest: number): Promise<number | null> {
  try {
    return (await checkRelease(job, await fetchControl(job), newest + 1)).release.seq;
  } catch (e) {
    if (e instanceof ReleaseRefusal || e instanceof TransferError) return null;
    throw e;
  }
}

/** A control file's bytes, or why there are none. */
type Fetched = Map<string, Uint8Array | string>;

/**
 * Fetches the source's marker, envelope and manifest in one request. The
 * manifest kept from the last fetch is rsync's basis for the new one (a new
 * version's manifest mostly repeats the last one's lines); the marker and
 * the envelope are fetched whole.
 *
 * @throws {TransferError} when the source cannot be read.
 */
async function fetchControl(job: ClientJob): Promise<Fetched> {
  const dir = `${job.stateDir}/${FETCH_DIR}`;
  // Anything but a directory there (a symlink planted in its place) goes,
  // itself, not what it points at: the files are written into ours only.
  const there = await Deno.lstat(dir).catch(() => null);
  if (there && !there.isDirectory) await Deno.remove(dir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const n of CONTROL) {
    const at = `${dir}/${n}`;
    if (n !== RELEASE_MANIFEST || unreadable(at, MANIFEST_LIMITS.maxBytes) !== null) {
      await Deno.remove(at, { recursive: true }).catch(() => {});
    }
  }
  const list = `${dir}.list`;
  await writeFileList(list, CONTROL);
  const over = new Set<string>();
  const r = await rsyncRun(job, {
    source: job.source,
    dest: `${dir}/`,
    filesFrom: list,
    timeout: job.timeout,
    connectTimeout: job.connectTimeout,
    // No file larger than a manifest may be, no directory entered; rsync
    // names what it skips for its size (--info=skip1).
    extra: [
      `--max-size=${MANIFEST_LIMITS.maxBytes}`,
      "--no-recursive",
      "--info=skip1",
      ...safeAttrs(job),
    ],
  }, {
    onStdout: (line) => {
      const m = / is over max-size$/.exec(line);
      if (m) over.add(line.slice(0, m.index));
    },
  });
  const missing = CONTROL.filter((n) =>
    new RegExp(`link_stat "(?:[^"]*/)?${n.replaceAll(".", "\\.")}" \\(in `).test(r.stderr)
  );
  if (r.code !== 0 && !(r.code === 23 && missing.length)) failUnlessOk(job, r);
  const out: Fetched = new Map();
  for (const n of CONTROL) {
    out.set(
      n,
      missing.includes(n)
        ? "the source has none"
        : over.has(n)
        ? `more than ${LIMITS[n]} bytes`
        : readBounded(`${dir}/${n}`, LIMITS[n]),
    );
  }
  return out;
}

/**
 * Checks the fetched files: the envelope verifies with a trusted key, its
 * seq is at least `floor`, the manifest is the one it signs (and lists none
 * of fanout's own files), and the marker is its version. With `lazy`, the
 * manifest is parsed (and refused) when first used, not before: a kept
 * release whose tree is its stat record whole never needs it.
 *
 * @throws {ReleaseRefusal} naming the file at fault.
 */
async function checkRelease(
  job: ClientJob,
  files: Fetched,
  floor: number,
  opts: { lazy?: boolean } = {},
): Promise<CheckedRelease> {
  const refuse = (path: string, why: string, racy = false) =>
    new ReleaseRefusal(job, path, why, racy);
  const bytes = (n: string, none: string) => {
    const b = files.get(n)!;
    if (typeof b === "string") throw refuse(n, b === "the source has none" ? none : b);
    return b as Uint8Array<ArrayBuffer>;
  };
  const envelope = bytes(RELEASE_ENVELOPE, "the source has none (the version is not signed)");
  let release;
  try {
    release = await verifyRelease(envelope, job.publicKeys ?? []);
  } catch (e) {
    if (e instanceof SignatureError) throw refuse(RELEASE_ENVELOPE, e.message);
    throw e;
  }
  const seq = `seq ${release.seq}`;
  if (release.seq < floor) {
    throw refuse(
      RELEASE_ENVELOPE,
      `${seq} is older than seq ${floor}, the newest this host applied (an old signed version ` +
        `served again?)`,
    );
  }
  const manifestBytes = bytes(RELEASE_MANIFEST, "the source has none");
  if (await manifestDigest(manifestBytes) !== release.manifest_sha256) {
    throw refuse(RELEASE_MANIFEST, `its SHA-256 is not the one the release of ${seq} signs`, true);
  }
  const parse = (): Manifest => {
    let manifest: Manifest;
    try {
      manifest = parseManifest(manifestBytes);
    } catch (e) {
      if (e instanceof SafetyError) throw refuse(RELEASE_MANIFEST, e.message);
      throw e;
    }
    const own = manifest.entries.find((e) => RESERVED.has(topName(e.path)));
    if (own) throw refuse(own.path, `the manifest of ${seq} lists a file of fanout's own`);
    return { entries: manifest.entries.map(taken) };
  };
  let manifest = opts.lazy ? null : parse();
  const markerBytes = bytes(VERSION_MARKER, "the source has none");
  const marker = parseMarker(new TextDecoder().decode(markerBytes));
  if (!marker) throw refuse(VERSION_MARKER, "not a version marker");
  const field = markerMismatch(release, marker);
  if (field) {
    // A marker behind its envelope is what a source shows for the moment a
    // publish or push renames the envelope in before the marker: fetched
    // again before it counts (a source that stays so is still refused).
    const behind = marker.seq < release.seq;
    throw refuse(VERSION_MARKER, `its ${field} is not the one the release of ${seq} signs`, behind);
  }
  return {
    release,
    marker,
    bytes: { marker: markerBytes, envelope, manifest: manifestBytes },
    get manifest() {
      return manifest ??= parse();
    },
  };
}

/**
 * `e` with the mode the client gives it (see {@linkcode NOT_TAKEN}): `e`
 * itself, fresh from the parse, when it has none of those bits.
 */
function taken(e: ManifestEntry): ManifestEntry {
  return e.type === "symlink" || !(e.mode & NOT_TAKEN) ? e : { ...e, mode: e.mode & ~NOT_TAKEN };
}

/** The first name of a relative path. */
function topName(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(0, slash);
}
