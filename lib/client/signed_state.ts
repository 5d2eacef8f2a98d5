/**
 * What the state dir keeps of the last signed release applied (see
 * lib/client/signed.ts): its version (the floor below which a version is a
 * replay), its manifest and the stat record of the tree it made, which
 * vouches for files unchanged since, so they are not read again.
 *
 * @module
 */

import { RELEASE_ENVELOPE, sleep, writePrivate } from "../core/mod.ts";
import {
  ENVELOPE_MAX_BYTES,
  MANIFEST_LIMITS,
  manifestDigest,
  type ManifestEntry,
  readRecord,
  type RecordEntry,
  RecordError,
  recordTree,
  relistedPaths,
  SignatureError,
  type TreeEntry,
  verifyRelease,
  walkTree,
  writeRecord,
} from "../release/mod.ts";
import type { ApplyContext, CheckedRelease, TreeLook } from "./layout.ts";
import type { ClientJob } from "./job.ts";
import { readBounded, TREE_SKIP, treeSkip } from "./signed_files.ts";

/** Files in the state dir. */
const APPLIED_FILE = "release-applied.json";
const MANIFEST_COPY = "release-manifest";
const RECORD_FILE = "release-record";
/** What the state dir keeps of the last release applied. */
interface Applied {
  /** The release's version and manifest. */
  seq: number;
  commit: string;
  manifest_sha256: string;
  /** The newest seq this host applied: older ones are refused. */
  floor_seq: number;
  /** The tree the stat record describes; null while a tree is being changed. */
  tree: string | null;
  /** When the record's walk began (ms since the epoch). */
  recorded_at: number;
  /**
   * The record is the manifest's, path for path: its walk was compared with
   * this manifest and nothing differed (none missing, none extra, each
   * type, mode, size and content as listed). Only then may a tree that is
   * its record be taken for the release without reading the manifest.
   */
  whole?: boolean;
}

function readApplied(job: ClientJob): Applied | null {
  try {
    const a = JSON.parse(Deno.readTextFileSync(`${job.stateDir}/${APPLIED_FILE}`));
    const ok = Number.isSafeInteger(a.seq) && Number.isSafeInteger(a.floor_seq) &&
      typeof a.commit === "string" && typeof a.manifest_sha256 === "string" &&
      (a.tree === null || typeof a.tree === "string") && Number.isFinite(a.recorded_at) &&
      (a.whole === undefined || typeof a.whole === "boolean");
    return ok ? a : null;
  } catch {
    return null;
  }
}

async function writeApplied(job: ClientJob, a: Applied): Promise<void> {
  await writePrivate(
    `${job.stateDir}/${APPLIED_FILE}`,
    new TextEncoder().encode(JSON.stringify(a)),
  );
}

/**
 * The lowest seq this host takes: the newest it applied, by its state dir
 * or by the envelope of the tree it holds (when it verifies); -1 when none.
 */
export async function releaseFloor(job: ClientJob, current: string | null): Promise<number> {
  let floor = readApplied(job)?.floor_seq ?? -1;
  const env = current ? readBounded(`${current}/${RELEASE_ENVELOPE}`, ENVELOPE_MAX_BYTES) : "";
  if (typeof env !== "string") {
    try {
      floor = Math.max(floor, (await verifyRelease(env, job.publicKeys ?? [])).seq);
    } catch (e) {
      if (!(e instanceof SignatureError)) throw e;
    }
  }
  return floor;
}

/**
 * The version the state dir says `tree` holds as signed, or null: what the
 * fast path may trust when dest's marker names it.
 *
 * @example
 * ```ts
 * if (sameVersion(verifiedVersion(job, current), readMarker(current))) skipWalk();
 * ```
 */
export function verifiedVersion(
  job: ClientJob,
  tree: string | null,
): { seq: number; commit: string } | null {
  const a = readApplied(job);
  return a && tree && a.tree === tree ? { seq: a.seq, commit: a.commit } : null;
}

/**
 * Says, before a tree changes, that the state dir's record no longer
 * describes it: a run killed from here on leaves the next one to hash every
 * file again.
 */
export async function markApplying(job: ClientJob): Promise<void> {
  const a = readApplied(job);
  if (a?.tree) await writeApplied(job, { ...a, tree: null });
  await Deno.remove(`${job.stateDir}/${RECORD_FILE}`).catch(() => {});
}

/**
 * Keeps, in the state dir, that `tree` holds release `c` now: its manifest,
 * the stat record of the tree and the version (the floor of later ones).
 * `walked` is a walk of the tree begun at `at`, of paths it found as the
 * manifest lists them (a path it leaves out is hashed by the next run, which
 * records it then), `whole` when it is every path the manifest lists,
 * compared with it and found as listed; without one the tree is walked here, from the next whole
 * second on, so no file changed just before is left that an edit within
 * the same second of its change time could hide behind (Deno gives change
 * times in whole seconds).
 */
export async function recordRelease(
  job: ClientJob,
  c: CheckedRelease,
  tree: string,
  walked: { entries: readonly RecordEntry[]; at: number; whole?: boolean } | null,
): Promise<void> {
  let w = walked;
  if (!w) {
    await sleep(1001 - Date.now() % 1000, job.signal);
    const at = Date.now();
    w = { entries: (await recordTree(tree, { skip: TREE_SKIP })).entries, at };
  }
  const prev = readApplied(job);
  await writePrivate(`${job.stateDir}/${MANIFEST_COPY}`, c.bytes.manifest);
  await writeRecord(`${job.stateDir}/${RECORD_FILE}`, { entries: w.entries });
  await writeApplied(job, {
    seq: c.release.seq,
    commit: c.release.commit,
    manifest_sha256: c.release.manifest_sha256,
    floor_seq: Math.max(c.release.seq, prev?.floor_seq ?? -1),
    tree,
    recorded_at: w.at,
    whole: walked?.whole === true,
  });
}

/**
 * What the stat record of `tree` vouches for: a file or symlink walked as
 * it was recorded (type, mode, inode, size, mtime and change time), whose
 * change time is older than the record's walk by a whole second, and that
 * the last applied manifest listed by the very line `want` comes from. Null
 * when there is no usable record of `tree`. When `now`, the release being
 * applied, has the last applied manifest (its SHA-256), every line is that
 * manifest's and the kept copy is not read; else the kept copy is compared
 * with `now`'s line by line, not parsed again. `basis` is the record as
 * read beforehand ({@linkcode lookAt}).
 *
 * @example
 * ```ts
 * const plan = await planTree(dest, c.manifest, { skip: TREE_SKIP, known: await recordVouches(job, dest, c) ?? undefined });
 * ```
 */
export async function recordVouches(
  job: ClientJob,
  tree: string,
  now: CheckedRelease,
  basis: RecordBasis | null = recordBasis(job, tree),
): Promise<((got: TreeEntry, want: ManifestEntry) => boolean) | null> {
  if (!basis) return null;
  const a = basis.applied;
  // The paths `now` lists otherwise than the last manifest did (none when
  // it is that manifest): the record says nothing of their bytes.
  let relisted: Set<string> | null = new Set();
  if (now.release.manifest_sha256 !== a.manifest_sha256) {
    const old = await keptManifest(job, a);
    relisted = old && relistedPaths(old, now.bytes.manifest);
    if (!relisted) return null;
  }
  const fresh = relisted, stat = basis.stat;
  const cutoff = recordCutoff(a);
  return (got) => {
    const r = stat.get(got.path);
    return !fresh.has(got.path) && !!r && r.kind === got.kind && r.mode === got.mode &&
      statAsRecorded(r, got, cutoff);
  };
}

/**
 * The change time a recorded entry must be older than: the whole second
 * the record's walk began in (Deno gives change times in whole seconds, so
 * an edit within that second could hide behind an equal one).
 */
function recordCutoff(a: Applied): number {
  return Math.floor(a.recorded_at / 1000) * 1000;
}

/** Whether `got` has the inode, size, mtime and change time of its record `r`, the change time older than `cutoff`. */
function statAsRecorded(r: RecordEntry, got: TreeEntry, cutoff: number): boolean {
  return r.ino === got.ino && r.size === got.size && r.mtimeMs === got.mtimeMs &&
    r.ctimeMs === got.ctimeMs && r.ctimeMs < cutoff;
}

/**
 * True when `walked`, a walk of `tree`, is its stat record whole for
 * release `now`: the record was made of this manifest and found to be it
 * path for path ({@linkcode Applied.whole}), and the walk finds the same
 * paths, each directory of the recorded kind and mode, each file and
 * symlink as recorded (type, mode, inode, size, mtime and change time,
 * the change time older than the record's walk by a whole second, as
 * {@linkcode recordVouches} asks). Then the tree is the release, and its
 * manifest need not be read; anything else and the tree is compared with
 * the manifest as always.
 *
 * @example
 * ```ts
 * if (await recordIsRelease(job, dest, c, await look.walked)) return nothingToDo;
 * ```
 */
export function recordIsRelease(
  job: ClientJob,
  tree: string,
  now: CheckedRelease,
  walked: readonly TreeEntry[],
  basis: RecordBasis | null = recordBasis(job, tree),
): boolean {
  const a = basis?.applied;
  if (!basis || !a?.whole || a.manifest_sha256 !== now.release.manifest_sha256) return false;
  if (walked.length !== basis.stat.size) return false;
  const cutoff = recordCutoff(a);
  return walked.every((got) => {
    const r = basis.stat.get(got.path);
    if (!r || r.kind !== got.kind || r.mode !== got.mode) return false;
    return got.kind === "dir" || statAsRecorded(r, got, cutoff);
  });
}

/**
 * Whether the state dir's record of `tree` is marked whole for the
 * manifest it was made of ({@linkcode recordIsRelease}): when it is not, a
 * run that finds the tree to be the release writes it again, so the next
 * no-op need not read the manifest.
 *
 * @example
 * ```ts
 * if (!recordIsWhole(job, dest)) await recordRelease(job, c, dest, { entries, at, whole: true });
 * ```
 */
export function recordIsWhole(job: ClientJob, tree: string): boolean {
  const a = readApplied(job);
  return a?.tree === tree && a.whole === true;
}

/** What the state dir says of a tree before its release is known: the version applied and the stat record. */
interface RecordBasis {
  applied: Applied;
  stat: Map<string, RecordEntry>;
}

/** The state dir's record of `tree`, or null when there is no usable one. */
function recordBasis(job: ClientJob, tree: string): RecordBasis | null {
  const a = readApplied(job);
  if (!a || a.tree !== tree) return null;
  let record;
  try {
    record = readRecord(`${job.stateDir}/${RECORD_FILE}`);
  } catch (e) {
    if (!(e instanceof RecordError)) throw e;
    job.log.warn(`${e.message}; checking every file`);
    return null;
  }
  return record && { applied: a, stat: new Map(record.entries.map((e) => [e.path, e])) };
}

/**
 * Begins, in the background, the walk of `tree` and the reading of its stat
 * record that applying a release to it starts with (for `ctx`: what its
 * walk leaves out, no record when a killed run left it dirty), so that
 * they run while the release is fetched; the release's layout takes them
 * ({@linkcode TreeLook}). It only reads. A walk that fails throws where the
 * look is taken.
 *
 * @example
 * ```ts
 * const look = lookAt(job, dest, ctx);
 * const c = await fetchRelease(job, floor);
 * await layout.applyRelease(c, { ...ctx, look });
 * ```
 */
export function lookAt(job: ClientJob, tree: string, ctx: ApplyContext): TreeLook {
  const at = Date.now();
  const walked = walkTree(tree, { skip: treeSkip(ctx) });
  // Read once the walk is under way, while the release is still coming.
  const basis = walked.then(() => ctx.forced ? null : recordBasis(job, tree));
  // Taken or not (a refused release), neither rejects unseen.
  walked.catch(() => {});
  basis.catch(() => {});
  return {
    tree,
    at,
    walked,
    vouches: async (now) => await recordVouches(job, tree, now, await basis),
    isRelease: async (now) => recordIsRelease(job, tree, now, await walked, await basis),
  };
}

/** The bytes of the manifest of the last release applied, as the state dir keeps it; null when they are not that one's. */
async function keptManifest(job: ClientJob, a: Applied): Promise<Uint8Array<ArrayBuffer> | null> {
  const bytes = readBounded(`${job.stateDir}/${MANIFEST_COPY}`, MANIFEST_LIMITS.maxBytes);
  if (typeof bytes === "string" || await manifestDigest(bytes) !== a.manifest_sha256) return null;
  return bytes;
}

/**
 * `known` (from {@linkcode recordVouches}) for planTree, counting the files
 * it did not vouch for, which the plan then read: when there were any, the
 * record is written again so the next run need not.
 *
 * @example
 * ```ts
 * const vouch = vouching(await recordVouches(job, dest, c));
 * const plan = await planTree(dest, m, { known: vouch.known });
 * if (vouch.hashed()) await recordRelease(job, c, dest, { entries: plan.walked, at });
 * ```
 */
export function vouching(
  known: ((got: TreeEntry, want: ManifestEntry) => boolean) | null,
): { known: (got: TreeEntry, want: ManifestEntry) => boolean; hashed: () => number } {
  let hashed = 0;
  return {
    known: (got, want) => {
      if (known?.(got, want)) return true;
      if (want.type === "file") hashed++;
      return false;
    },
    hashed: () => hashed,
  };
}
