/**
 * Verified releases on the client (`release.public_keys` set): a version is
 * applied only as its publisher signed it.
 *
 * 1. The source's marker, envelope and manifest come in one small request
 *    into the state dir. The envelope must verify with a trusted key, its
 *    version must be no older than the newest this host applied (an old
 *    signed version served again is refused), the manifest must have the
 *    SHA-256 it signs, and the marker must be its version.
 * 2. The tree is compared with the manifest path by path; a file is hashed
 *    unless the stat record of the last verified tree vouches for it.
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
  DEST_MARKER,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  sleep,
  stripControl,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import {
  comparePaths,
  ENVELOPE_MAX_BYTES,
  type Manifest,
  MANIFEST_LIMITS,
  manifestDigest,
  type ManifestEntry,
  markerMismatch,
  parseManifest,
  type PlannedFix,
  readRecord,
  type RecordEntry,
  RecordError,
  recordTree,
  SignatureError,
  type TreeEntry,
  type TreeMismatch,
  type TreePlan,
  verifyRelease,
  verifyTree,
  writeRecord,
} from "../release/mod.ts";
import { type RsyncResult, writeFileList } from "../rsync/mod.ts";
import {
  describeVersion,
  MARKER_MAX_BYTES,
  parseMarker,
  sameVersion,
  stampMarker,
} from "../version/mod.ts";
import type { ApplyContext, CheckedRelease, ReleaseApplied, TreeLayout } from "./layout.ts";
import {
  type ClientJob,
  failUnlessOk,
  retrying,
  RsyncFailure,
  rsyncRun,
  safeAttrs,
  serverOf,
} from "./job.ts";
import { transfer } from "./transfer.ts";
import { firstDetour } from "./dest_paths.ts";

/** The release's own files at a tree's root, fetched together. */
const CONTROL = [VERSION_MARKER, RELEASE_ENVELOPE, RELEASE_MANIFEST];

/**
 * What a walk of a tree leaves out: the release's own files (checked in
 * their own right) and fanout's destination marker. The version log is not
 * among them: it is not signed, so a verified tree does not keep one.
 */
export const TREE_SKIP: readonly string[] = [...CONTROL, DEST_MARKER];

/** Names a manifest may not list: fanout's own files. */
const RESERVED = new Set([...TREE_SKIP, VERSION_LOG]);

/** The mode bits a client never takes from a server (see safeAttrs in lib/client/job.ts). */
const NOT_TAKEN = 0o6002;

/** A comparison that lands between a version's files and its marker is tried this often. */
const PASSES = 2;

/** Files in the state dir. */
const FETCH_DIR = "release-fetch";
const APPLIED_FILE = "release-applied.json";
const MANIFEST_COPY = "release-manifest";
const RECORD_FILE = "release-record";
const PATHS_LIST = "release-paths.list";

/**
 * A version refused (exit 4). Its one line names the server, the path at
 * fault and why. `staged` when a fetched path was not the manifest's, which
 * a version landing on the server during the run causes too: the run reads
 * the source's marker again before it blames the server.
 *
 * @example
 * ```ts
 * throw new ReleaseRefusal(job, "lib/a.ts", "SHA-256 differs", true);
 * ```
 */
export class ReleaseRefusal extends SafetyError {
  /** The path at fault, relative to the tree. */
  readonly path: string;
  readonly staged: boolean;
  constructor(
    job: Pick<ClientJob, "source" | "dest">,
    path: string,
    why: string,
    staged = false,
  ) {
    super(
      `refusing the version from ${serverOf(job.source)} for ${job.dest}: ` +
        `${stripControl(path, { oneLine: true })}: ${why}; nothing changed`,
    );
    this.name = "ReleaseRefusal";
    this.path = path;
    this.staged = staged;
  }
}

/**
 * Brings the tree to the source's signed release through `layout`, checking
 * the release first; a fetched path that is not the manifest's is blamed on
 * the server only when the source's marker still names the version checked.
 *
 * @throws {ReleaseRefusal} for a release, or a fetched path, that is not as
 * signed; {@linkcode TransferError} when the source cannot be read.
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
): Promise<ReleaseApplied & { release: CheckedRelease }> {
  for (let pass = 1;; pass++) {
    const c = await retrying(job, "fetch the signed release", async () => {
      const files = await fetchControl(job);
      return await checkRelease(job, files, await releaseFloor(job, current));
    });
    try {
      const done = await retrying(job, "sync", () => layout.applyRelease!(c, ctx));
      return { ...done, release: c };
    } catch (e) {
      if (!(e instanceof ReleaseRefusal) || !e.staged || pass >= PASSES) throw e;
      const now = await fetchControl(job).then((f) => f.get(VERSION_MARKER)).catch(() => null);
      const marker = now instanceof Uint8Array ? parseMarker(new TextDecoder().decode(now)) : null;
      if (!marker || sameVersion(marker, c.marker)) throw e;
      job.log.debug("a version landed while the release was fetched; fetching it", {
        checked: describeVersion(c.marker),
        now: describeVersion(marker),
      });
    }
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
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const n of CONTROL) {
    const at = `${dir}/${n}`;
    if (n !== RELEASE_MANIFEST || typeof readBounded(at, MANIFEST_LIMITS.maxBytes) === "string") {
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
    // Nothing larger than a manifest may be is fetched; directories are not
    // entered. rsync names what it skips for its size (--info=skip1).
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
  const limits: Record<string, number> = {
    [VERSION_MARKER]: MARKER_MAX_BYTES,
    [RELEASE_ENVELOPE]: ENVELOPE_MAX_BYTES,
    [RELEASE_MANIFEST]: MANIFEST_LIMITS.maxBytes,
  };
  const out: Fetched = new Map();
  for (const n of CONTROL) {
    out.set(
      n,
      missing.includes(n)
        ? "the source has none"
        : over.has(n)
        ? `more than ${limits[n]} bytes`
        : readBounded(`${dir}/${n}`, limits[n]),
    );
  }
  return out;
}

/** The bytes of the regular file at `path`, or why not: none there, another kind, too large. */
function readBounded(path: string, max: number): Uint8Array<ArrayBuffer> | string {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    return "the source has none";
  }
  if (!st.isFile) return "not a regular file";
  if (st.size > max) return `more than ${max} bytes`;
  return Deno.readFileSync(path);
}

/**
 * Checks the fetched files: the envelope verifies with a trusted key, its
 * seq is at least `floor`, the manifest is the one it signs (and lists none
 * of fanout's own files), and the marker is its version.
 *
 * @throws {ReleaseRefusal} naming the file at fault.
 */
async function checkRelease(
  job: ClientJob,
  files: Fetched,
  floor: number,
): Promise<CheckedRelease> {
  const refuse = (path: string, why: string) => new ReleaseRefusal(job, path, why);
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
    throw refuse(RELEASE_MANIFEST, `its SHA-256 is not the one the release of ${seq} signs`);
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(manifestBytes);
  } catch (e) {
    if (e instanceof SafetyError) throw refuse(RELEASE_MANIFEST, e.message);
    throw e;
  }
  const own = manifest.entries.find((e) => RESERVED.has(e.path.split("/")[0]));
  if (own) throw refuse(own.path, `the manifest of ${seq} lists a file of fanout's own`);
  const markerBytes = bytes(VERSION_MARKER, "the source has none");
  const marker = parseMarker(new TextDecoder().decode(markerBytes));
  if (!marker) throw refuse(VERSION_MARKER, "not a version marker");
  const field = markerMismatch(release, marker);
  if (field) {
    throw refuse(VERSION_MARKER, `its ${field} is not the one the release of ${seq} signs`);
  }
  return {
    release,
    marker,
    bytes: { marker: markerBytes, envelope, manifest: manifestBytes },
    manifest: { entries: manifest.entries.map(taken) },
  };
}

/** `e` with the mode the client gives it (see {@linkcode NOT_TAKEN}). */
function taken(e: ManifestEntry): ManifestEntry {
  return e.type === "symlink" ? e : { ...e, mode: e.mode & ~NOT_TAKEN };
}

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
}

function readApplied(job: ClientJob): Applied | null {
  try {
    const a = JSON.parse(Deno.readTextFileSync(`${job.stateDir}/${APPLIED_FILE}`));
    const ok = Number.isSafeInteger(a.seq) && Number.isSafeInteger(a.floor_seq) &&
      typeof a.commit === "string" && typeof a.manifest_sha256 === "string" &&
      (a.tree === null || typeof a.tree === "string") && Number.isFinite(a.recorded_at);
    return ok ? a : null;
  } catch {
    return null;
  }
}

async function writeApplied(job: ClientJob, a: Applied): Promise<void> {
  await writeAtomic(`${job.stateDir}/${APPLIED_FILE}`, new TextEncoder().encode(JSON.stringify(a)));
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeFile(tmp, bytes, { mode: 0o600 });
  await Deno.rename(tmp, path);
}

/**
 * The lowest seq this host takes: the newest it applied, by its state dir
 * or by the envelope of the tree it holds (when it verifies); -1 when none.
 */
async function releaseFloor(job: ClientJob, current: string | null): Promise<number> {
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
 * `walked` is a walk of the tree that found it as the manifest lists it,
 * begun at `at`; without one the tree is walked here, from the next whole
 * second on, so no file changed just before is left that an edit within
 * the same second of its change time could hide behind (Deno gives change
 * times in whole seconds).
 */
export async function recordRelease(
  job: ClientJob,
  c: CheckedRelease,
  tree: string,
  walked: { entries: readonly RecordEntry[]; at: number } | null,
): Promise<void> {
  let w = walked;
  if (!w) {
    await sleep(1001 - Date.now() % 1000, job.signal);
    const at = Date.now();
    w = { entries: recordTree(tree, { skip: TREE_SKIP }).entries, at };
  }
  const prev = readApplied(job);
  await writeAtomic(`${job.stateDir}/${MANIFEST_COPY}`, c.bytes.manifest);
  await writeRecord(`${job.stateDir}/${RECORD_FILE}`, { entries: w.entries });
  await writeApplied(job, {
    seq: c.release.seq,
    commit: c.release.commit,
    manifest_sha256: c.release.manifest_sha256,
    floor_seq: Math.max(c.release.seq, prev?.floor_seq ?? -1),
    tree,
    recorded_at: w.at,
  });
}

/**
 * What the stat record of `tree` vouches for: a file walked as it was
 * recorded (type, mode, inode, size, mtime and change time), whose change
 * time is older than the record's walk by a whole second, and that the
 * last applied manifest listed with the bytes `want` lists. Null when there
 * is no usable record of `tree`.
 *
 * @example
 * ```ts
 * const plan = await planTree(dest, c.manifest, { skip: TREE_SKIP, known: await recordVouches(job, dest) ?? undefined });
 * ```
 */
export async function recordVouches(
  job: ClientJob,
  tree: string,
): Promise<((got: TreeEntry, want: ManifestEntry) => boolean) | null> {
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
  const bytes = readBounded(`${job.stateDir}/${MANIFEST_COPY}`, MANIFEST_LIMITS.maxBytes);
  if (!record || typeof bytes === "string") return null;
  if (await manifestDigest(bytes) !== a.manifest_sha256) return null;
  let old: Manifest;
  try {
    old = parseManifest(bytes);
  } catch {
    return null;
  }
  const was = new Map(old.entries.map((e) => [e.path, e]));
  const stat = new Map(record.entries.map((e) => [e.path, e]));
  const cutoff = Math.floor(a.recorded_at / 1000) * 1000;
  return (got, want) => {
    const o = was.get(got.path), r = stat.get(got.path);
    return !!o && !!r && o.type === want.type && o.size === want.size &&
      o.sha256 === want.sha256 && r.kind === got.kind && r.mode === got.mode &&
      r.ino === got.ino && r.size === got.size && r.mtimeMs === got.mtimeMs &&
      r.ctimeMs === got.ctimeMs && r.ctimeMs < cutoff;
  };
}

/**
 * What a walk of the tree leaves out for `ctx`: {@linkcode TREE_SKIP}, and
 * a checkout's `.git` when it is being adopted (adoption removes it).
 */
export function treeSkip(ctx: ApplyContext): string[] {
  return [...TREE_SKIP, ...(ctx.state === "adopt" ? [".git"] : [])];
}

/**
 * `known` (from {@linkcode recordVouches}) for planTree, counting the files
 * it did not vouch for, which the plan then read: when there were any, the
 * record is written again so the next run need not.
 *
 * @example
 * ```ts
 * const vouch = vouching(await recordVouches(job, dest));
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

/**
 * The plan for a tree not there yet: every path of `m` missing.
 *
 * @example
 * ```ts
 * const plan = live ? await planTree(live, m) : everythingMissing(m);
 * ```
 */
export function everythingMissing(m: Manifest): TreePlan {
  return {
    wrong: m.entries.map((want) => ({
      path: want.path,
      why: "missing",
      detail: "missing",
      want,
      got: null,
    })),
    extra: [],
    walked: [],
  };
}

/** The planned fixes that need bytes from the server: files and symlinks not as listed. */
export function toFetch(plan: TreePlan): PlannedFix[] {
  return plan.wrong.filter((w) => w.want.type !== "dir" && w.why !== "mode");
}

/**
 * `tree` when rsync may read its files as the delta basis of the `fetch`
 * paths: each is a regular file there or absent, and none leads through a
 * symlink (rsync would read, and send the checksums of, a file outside it).
 */
export function basisFor(tree: string | null, fetch: readonly PlannedFix[]): string | null {
  if (!tree || fetch.some((w) => w.got && w.got.kind !== "file")) return null;
  return firstDetour(tree, fetch.map((w) => w.path), () => false) ? null : tree;
}

/**
 * Creates the directories above `entries` in `root` (mode 0700), for a
 * transfer that does not send them (`--no-implied-dirs`).
 */
export async function makeParents(
  root: string,
  entries: readonly { path: string }[],
): Promise<string[]> {
  const dirs = new Set<string>();
  for (const e of entries) {
    const parts = e.path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  const sorted = [...dirs].sort(comparePaths);
  for (const d of sorted) await Deno.mkdir(`${root}/${d}`, { recursive: true, mode: 0o700 });
  return sorted;
}

/**
 * Fetches the `entries` of the source into `into` (each parent there
 * already), and nothing else: no directory is entered, no file larger than
 * the largest listed is taken, and `basis` (dest's tree) serves as rsync's
 * delta basis. Null when rsync could not send them all (a path gone or never
 * there on the server): the check that follows names the path.
 *
 * @throws {TransferError} for any other failure.
 */
export async function fetchPaths(
  job: ClientJob,
  into: string,
  entries: readonly ManifestEntry[],
  basis: string | null,
): Promise<RsyncResult | null> {
  const list = `${job.stateDir}/${PATHS_LIST}`;
  await writeFileList(list, entries.map((e) => e.path));
  const largest = entries.reduce((n, e) => Math.max(n, e.size), 1);
  try {
    return await transfer(job, {
      source: job.source,
      dest: `${into}/`,
      timeout: job.timeout,
      connectTimeout: job.connectTimeout,
      filesFrom: list,
      extra: [
        ...safeAttrs(job),
        "--no-recursive",
        "--no-implied-dirs",
        `--max-size=${largest}`,
        // --ignore-times: a basis file of the listed size and time is still
        // only a basis (rsync would copy it as it is otherwise), and the
        // listed paths are those dest has wrong.
        ...(basis ? ["--ignore-times", `--copy-dest=${basis}`] : []),
      ],
    }, { keepDirty: true });
  } catch (e) {
    if (e instanceof RsyncFailure && (e.rsyncCode === 23 || e.rsyncCode === 24)) return null;
    throw e;
  }
}

/**
 * Checks what {@linkcode fetchPaths} put in `root`: each of `entries` as the
 * manifest lists it, the `parents` made for them (mode 0700), nothing else.
 *
 * @throws {ReleaseRefusal} (`staged`) naming the first path that is not.
 */
export async function checkFetched(
  job: ClientJob,
  c: CheckedRelease,
  root: string,
  entries: readonly ManifestEntry[],
  parents: readonly string[],
): Promise<void> {
  const dirs: ManifestEntry[] = parents.map((path) => ({
    path,
    type: "dir",
    mode: 0o700,
    size: 0,
    sha256: null,
  }));
  const all = [...dirs, ...entries].sort((a, b) => comparePaths(a.path, b.path));
  const bad = await verifyTree(root, { entries: all });
  if (bad) throw new ReleaseRefusal(job, bad.path, offence(bad, c), true);
}

/**
 * Why a path is not as the manifest of `c` lists it, in words.
 *
 * @example
 * ```ts
 * offence({ path: "a", why: "content", detail: "SHA-256 differs" }, c); // "SHA-256 differs from the signed manifest of seq 4"
 * ```
 */
export function offence(m: TreeMismatch, c: CheckedRelease): string {
  const of = `the signed manifest of seq ${c.release.seq}`;
  switch (m.why) {
    case "missing":
      return `not sent by the server (not there, or larger than ${of} says)`;
    case "extra":
      return `sent, but not in ${of}`;
    case "content":
      return /SHA-256/.test(m.detail)
        ? `SHA-256 differs from ${of}`
        : `${m.detail}, as ${of} lists it`;
    default:
      return `${m.detail}, as ${of} lists it`;
  }
}

/**
 * Writes the release's files into `dir`: the manifest, the envelope and,
 * last, the marker (with its publish time as its mtime, as every server's
 * has). Each replaces the old one in one rename. Returns whether any of
 * them differed from what `dir` held.
 */
export async function writeControl(dir: string, c: CheckedRelease): Promise<boolean> {
  const files: [string, Uint8Array][] = [
    [RELEASE_MANIFEST, c.bytes.manifest],
    [RELEASE_ENVELOPE, c.bytes.envelope],
    [VERSION_MARKER, c.bytes.marker],
  ];
  let changed = false;
  for (const [name, bytes] of files) {
    const digest = name === RELEASE_MANIFEST ? c.release.manifest_sha256 : null;
    if (await holds(`${dir}/${name}`, bytes, digest)) continue;
    changed = true;
    const tmp = `${dir}/${name}.fanout-tmp`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.writeFile(tmp, bytes, { createNew: true, mode: 0o644 });
    if (name === VERSION_MARKER) stampMarker(tmp);
    await Deno.rename(tmp, `${dir}/${name}`);
  }
  return changed;
}

/**
 * True when the regular file at `path` holds `bytes`; compared by `digest`
 * (their SHA-256) when given, for a manifest of megabytes.
 */
async function holds(path: string, bytes: Uint8Array, digest: string | null): Promise<boolean> {
  const got = readBounded(path, bytes.length);
  if (typeof got === "string" || got.length !== bytes.length) return false;
  if (digest) return await manifestDigest(got) === digest;
  for (let i = 0; i < got.length; i++) if (got[i] !== bytes[i]) return false;
  return true;
}
