/**
 * The version a server vouches for: the one its tree verifiably holds.
 *
 * In a signed fleet a server announces a version (the read module's
 * comment, `/status`, `/version`, the proxy's routing) only once its tree is
 * that version's manifest, path for path, and the manifest the one the
 * envelope signs. The check is made where the tree is, by the server itself,
 * whatever brought the files (a push, a publish, a repair, a restore).
 *
 * The tree's own manifest is kept in the state dir with its stat record
 * (lib/release's `updateManifest`), so a check hashes only what changed:
 * - by difference, when the version log has an unbroken chain from the
 *   version last vouched for and a watcher of the tree reports every path
 *   changed since the last check: the log's paths and the watched ones are
 *   stat'ed and hashed, their lines spliced into the kept manifest (the log
 *   comes from upstream and is not signed; the watched paths catch what it
 *   leaves out);
 * - by a walk of the whole tree otherwise (start, a gap in the log, events
 *   lost, a directory that appeared whole, a difference that does not give
 *   the signed manifest): every path stat'ed, those whose stat changed
 *   hashed.
 * Under the marker it vouched for, nothing is checked while the tree
 * changes (a check by difference, a walk after lost events, a whole one),
 * so a push landing its paths before its marker is not refused halfway;
 * what changed (an edit on the server's disk, a push that stopped before
 * its marker) is checked once the tree has been quiet for a moment (no
 * event, nothing written in its temp dir), or has kept changing for half a
 * minute.
 * The answer is the same SHA-256 the envelope signs, or a refusal naming the
 * first path that differs.
 *
 * @module
 */

import {
  compileExcludes,
  detour,
  quoted,
  readSmallBytes,
  readSmallFile,
  receivingSince,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  VERSION_LOG,
  VERSION_MARKER,
  writePrivate,
} from "../core/mod.ts";
import {
  comparePaths,
  diffManifests,
  ENVELOPE_MAX_BYTES,
  MANIFEST_LIMITS,
  manifestDigest,
  markerMismatch,
  parseManifest,
  patchManifestState,
  type PathChange,
  type PublicKey,
  readKeptManifest,
  readManifestState,
  RELEASE_SKIP,
  SignatureError,
  type StateFiles,
  updateManifest,
  verifyRelease,
  writeManifestState,
} from "../release/mod.ts";
import {
  changesBetween,
  LOG_READ_MAX_BYTES,
  parseLog,
  parseMarker,
  sameVersion,
  type VersionMarker,
} from "../version/mod.ts";

/** What a check found. */
export type Vouch =
  /** The tree is the marker's version, as signed: announce it. */
  | { state: "verified"; marker: VersionMarker; by: "difference" | "walk"; hashed: number }
  /**
   * Nothing to check against (an unsigned fleet, or no marker yet): the
   * marker is announced as read, as its push put it last.
   */
  | { state: "unchecked"; marker: VersionMarker | null; why: string }
  /** The tree is not the marker's version (or the version is not signed): announce none. */
  | { state: "refused"; marker: VersionMarker | null; why: string; path: string | null };

/** What a {@linkcode Voucher} checks, and where it keeps its manifest. */
export interface VoucherOptions {
  /** The tree served. */
  root: string;
  /** A private dir for the tree's manifest and record (made if missing). */
  stateDir: string;
  /** The fleet's public keys; none: nothing is checked. */
  trusted: readonly PublicKey[];
  /** `push.exclude`: paths no push brings, so no manifest lists. */
  excludes: string[];
  /**
   * Whether a watcher of the tree reports every change through
   * {@linkcode Voucher.changed} now: only then is a check made by
   * difference; otherwise a check (at a new marker, or whole) walks.
   */
  watched: () => boolean;
  /**
   * How long paths changed under an unchanged marker wait for the tree to be
   * quiet before they are checked (ms; default {@linkcode QUIET_MS}).
   */
  quietMs?: number;
  /**
   * The most a change under an unchanged marker waits for quiet (ms, from
   * the first change since the last check; default
   * {@linkcode QUIET_MAX_MS}): a tree written again and again is checked
   * all the same.
   */
  quietMaxMs?: number;
  /** The wall clock (ms since the epoch) the temp dir's times are read against; default `Date.now` (tests step it). */
  clock?: () => number;
}

/** How long changed paths wait for quiet by default: a push's paths and its marker land within it. */
export const QUIET_MS = 2_000;

/** The most changed paths wait for quiet by default: far past a push's bursts, far below a reconcile. */
export const QUIET_MAX_MS = 30_000;

/** The most of a marker read: a marker is a few hundred bytes. */
const MARKER_MAX_BYTES = 4096;

/** More paths changed than this between two checks: a walk is cheaper than the list. */
const MAX_CHANGED = 10_000;

/** Relative paths a server keeps in its tree beside the version. */
const SERVER_SKIP: readonly string[] = [...RELEASE_SKIP, SERVER_TEMP_DIR];

/** rsync's `--delay-updates` dirs: a transfer's files on their way, never the version's. */
const DELAY_DIR = /(^|\/)\.~tmp~$/;

/**
 * Checks a server's tree against the version its marker names, keeping
 * what it learns so the next check hashes only what changed. One check at a
 * time: a check asked for while one runs waits for it.
 *
 * @example
 * ```ts
 * const voucher = new Voucher({ root: "/srv/plugins", stateDir: "/var/lib/fanout/vouch",
 *   trusted: keys, excludes: [".git"], watched: () => watcher.mode === "events" });
 * const v = await voucher.check();
 * console.log(v.state === "refused" ? `not announced: ${v.why}` : v.marker);
 * ```
 */
export class Voucher {
  #o: VoucherOptions;
  #files: StateFiles;
  #vouchedFile: string;
  #excluded: (path: string) => boolean;
  #last: { markerText: string | null; vouch: Vouch } | null = null;
  /** Paths changed since the last check, and whether everything under them changed. */
  #changed = new Map<string, boolean>();
  #changedAt = 0;
  /** When the first change (or loss) since the last check came; null: none. */
  #busySince: number | null = null;
  /** Changes were lost (or there is no watcher): the next check walks. */
  #walkNext = true;
  /** A patched manifest and record to keep once their version is announced. */
  #keep: { manifest: Uint8Array; record: Uint8Array } | null = null;
  /** Their writing, which the next check waits for (never rejects). */
  #persisting: Promise<void> = Promise.resolve();
  /** The check running or last run: the next waits for it (#check never rejects). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: VoucherOptions) {
    this.#o = opts;
    this.#files = {
      manifest: `${opts.stateDir}/tree.manifest`,
      record: `${opts.stateDir}/tree.record`,
    };
    this.#vouchedFile = `${opts.stateDir}/vouched.version`;
    const m = compileExcludes(opts.excludes);
    this.#excluded = (p) => DELAY_DIR.test(p) || m.excluded(p);
  }

  /** What the last check found; null before the first. */
  get last(): Vouch | null {
    return this.#last?.vouch ?? null;
  }

  /**
   * Paths a watcher of the tree saw change (`deep`: with what is below
   * them): the next check looks at them again. While `watched` says no
   * watcher reports every change, checks walk the whole tree instead.
   *
   * @example
   * ```ts
   * watcher.onChanges = (changes) => voucher.changed(changes);
   * ```
   */
  changed(changes: readonly { path: string; deep: boolean }[]): void {
    for (const c of changes) {
      this.#changed.set(c.path, (this.#changed.get(c.path) ?? false) || c.deep);
    }
    this.#busy();
    this.#walkNext ||= this.#changed.size > MAX_CHANGED;
  }

  /**
   * Resolves once what the last check keeps (its manifest and record) is
   * written: a check by difference announces first and writes after.
   *
   * @example
   * ```ts
   * await voucher.settled(); // before the state dir goes
   * ```
   */
  settled(): Promise<void> {
    return this.#persisting;
  }

  /** The watcher lost events or stopped: the next check walks the whole tree. */
  lost(): void {
    // Lost events are changes too: the walk waits for quiet as they would.
    this.#busy();
    this.#walkNext = true;
  }

  #busy(): void {
    this.#changedAt = performance.now();
    this.#busySince ??= this.#changedAt;
  }

  /**
   * Checks the tree's version: at once when the marker is the one last
   * checked and nothing changed since, or only just (the tree not quiet
   * yet: whatever the check, it waits, at most `quietMaxMs`), else by
   * difference or by a walk; `whole` walks whatever else.
   */
  check(whole = false): Promise<Vouch> {
    const run = this.#queue.then(() => this.#check(whole));
    this.#queue = run;
    return run;
  }

  async #check(whole: boolean): Promise<Vouch> {
    await this.#persisting;
    const markerText = readSmallFile(`${this.#o.root}/${VERSION_MARKER}`, MARKER_MAX_BYTES);
    const sameMarker = this.#last !== null && this.#last.markerText === markerText;
    // The waits are timed on the monotonic clock: a wall clock stepped back
    // would stretch them by the step. Only file times need the wall clock.
    const now = performance.now();
    // A push lands its paths, then its marker: under the marker, wait.
    const quietMs = this.#o.quietMs ?? QUIET_MS;
    const wall = (this.#o.clock ?? Date.now)();
    const landing = this.#busySince !== null &&
      now - this.#busySince < (this.#o.quietMaxMs ?? QUIET_MAX_MS) &&
      (now - this.#changedAt < quietMs || receivingSince(this.#o.root, wall - quietMs));
    const watched = this.#o.watched();
    if (sameMarker && landing) {
      this.#walkNext ||= whole;
      return this.#last!.vouch;
    }
    if (!whole && sameMarker && this.#changed.size === 0 && (!this.#walkNext || !watched)) {
      return this.#last!.vouch;
    }
    const changed = this.#changed;
    this.#changed = new Map();
    this.#busySince = null;
    const walk = whole || this.#walkNext || !watched;
    this.#walkNext = false;
    let vouch: Vouch;
    try {
      vouch = await this.#vouch(markerText, walk ? null : changed);
    } catch (e) {
      vouch = refused(markerText, `the tree cannot be checked: ${(e as Error).message}`, null);
    }
    this.#last = { markerText, vouch };
    return vouch;
  }

  /** `changed`: the paths watched since the last check; null: walk. */
  async #vouch(markerText: string | null, changed: Map<string, boolean> | null): Promise<Vouch> {
    const marker = markerText === null ? null : parseMarker(markerText);
    if (this.#o.trusted.length === 0) {
      return {
        state: "unchecked",
        marker,
        why: "unsigned fleet: nothing to check the tree against",
      };
    }
    if (markerText === null) return { state: "unchecked", marker: null, why: "no version yet" };
    if (marker === null) return refused(markerText, "the version marker is not a marker", null);
    const signed = await this.#signedManifest(marker);
    if (typeof signed === "string") return refused(markerText, signed, null);
    await Deno.mkdir(this.#o.stateDir, { recursive: true, mode: 0o700 });
    const byDifference = changed && await this.#byDifference(marker, signed.digest, changed);
    if (typeof byDifference === "number") {
      return this.#vouched(markerText, marker, "difference", byDifference);
    }
    const walked = await this.#byWalk();
    if (walked.digest === signed.digest) {
      return this.#vouched(markerText, marker, "walk", walked.hashed);
    }
    const path = firstDifference(signed.bytes, walked.bytes);
    return refused(
      markerText,
      `the tree is not version ${marker.seq}'s manifest${path ? ` at ${quoted(path, 200)}` : ""}`,
      path,
    );
  }

  /** Keeps `markerText` as the version vouched for, and says so. */
  async #vouched(
    markerText: string,
    marker: VersionMarker,
    by: "difference" | "walk",
    hashed: number,
  ): Promise<Vouch> {
    const keep = this.#keep;
    this.#keep = null;
    const text = new TextEncoder().encode(markerText);
    if (keep === null) {
      await writePrivate(this.#vouchedFile, text);
    } else {
      // The manifest, the record, then the version they describe: a stop
      // in between leaves a version older than the state, which only costs
      // a walk (every start walks).
      this.#persisting = (async () => {
        await writePrivate(this.#files.manifest, keep.manifest);
        await writePrivate(this.#files.record, keep.record);
        await writePrivate(this.#vouchedFile, text);
      })().catch(() => this.lost());
    }
    return { state: "verified", marker, by, hashed };
  }

  /**
   * The manifest in the tree and its SHA-256 when the envelope beside it
   * signs it for `marker`'s version; else why not.
   */
  async #signedManifest(
    marker: VersionMarker,
  ): Promise<{ bytes: Uint8Array<ArrayBuffer>; digest: string } | string> {
    const envelope = readSmallBytes(`${this.#o.root}/${RELEASE_ENVELOPE}`, ENVELOPE_MAX_BYTES);
    if (envelope === null) return `no release envelope beside version ${marker.seq}`;
    let release;
    try {
      release = await verifyRelease(envelope, this.#o.trusted);
    } catch (e) {
      if (e instanceof SignatureError) return e.message;
      throw e;
    }
    const field = markerMismatch(release, marker);
    if (field) return `the envelope is not version ${marker.seq}'s (its ${field} differs)`;
    const bytes = readSmallBytes(`${this.#o.root}/${RELEASE_MANIFEST}`, MANIFEST_LIMITS.maxBytes);
    if (bytes === null) return `no manifest beside version ${marker.seq}`;
    const digest = await manifestDigest(bytes);
    if (digest !== release.manifest_sha256) {
      return `the manifest beside version ${marker.seq} is not the one its envelope signs`;
    }
    return { bytes, digest };
  }

  /**
   * Files and symlinks hashed when the log's paths since the version last
   * vouched for and the paths watched since the last check, spliced into
   * the kept manifest, give `digest`; null when they cannot say or the
   * result is not `digest` (a walk decides then).
   */
  async #byDifference(
    marker: VersionMarker,
    digest: string,
    changed: Map<string, boolean>,
  ): Promise<number | null> {
    const logged = this.#loggedSinceVouched(marker);
    if (logged === null) return null;
    try {
      const kept = readKeptManifest(this.#files);
      if (kept === null) return null;
      const changes = await this.#pathChanges([...logged, ...changed.keys()], changed);
      if (changes === null) return null;
      const patched = await patchManifestState(this.#files, kept, this.#o.root, changes, {
        write: false,
      });
      if (await manifestDigest(patched.bytes) !== digest) {
        // Kept before the walk: the paths just hashed may have kept their
        // size, mtime and (to the second) ctime, which a walk alone trusts.
        await writePrivate(this.#files.manifest, patched.bytes);
        await writePrivate(this.#files.record, patched.record);
        return null;
      }
      // Kept once the version is announced: the next check waits for it.
      this.#keep = { manifest: patched.bytes, record: patched.record };
      return patched.hashed;
    } catch {
      return null; // a kept state that cannot be patched: the walk rebuilds it
    }
  }

  /**
   * The paths the version log names from the version last vouched for to
   * `marker` (none when it is that version); null when there is no such
   * chain.
   */
  #loggedSinceVouched(marker: VersionMarker): string[] | null {
    const vouchedText = readSmallFile(this.#vouchedFile, MARKER_MAX_BYTES);
    const vouched = vouchedText === null ? null : parseMarker(vouchedText);
    if (vouched === null) return null;
    if (sameVersion(vouched, marker)) return [];
    const logText = readSmallFile(`${this.#o.root}/${VERSION_LOG}`, LOG_READ_MAX_BYTES);
    const list = logText === null ? null : changesBetween(parseLog(logText), vouched, marker);
    return list === null ? null : [...list.paths, ...list.deleted];
  }

  /**
   * Each path, listed when it is in the tree now and a push brings it; null
   * when one lies below a symlink (the walk, which never follows one,
   * decides then), is a directory that changed whole (what is below it is
   * not in the list), or cannot be looked up by its name: one holding
   * U+FFFD is how a name that is not UTF-8 reaches us, and finding nothing
   * by it is no proof the file is gone (the walk refuses such a name).
   */
  async #pathChanges(paths: string[], changed: Map<string, boolean>): Promise<PathChange[] | null> {
    const out: PathChange[] = [];
    for (const path of new Set(paths)) {
      if (path === "." || path === "" || SERVER_SKIP.includes(path.split("/")[0])) continue;
      if (path.includes("\uFFFD") || detour(this.#o.root, path) !== null) return null;
      let st: Deno.FileInfo | null;
      try {
        st = await Deno.lstat(`${this.#o.root}/${path}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) return null;
        st = null;
      }
      if (st?.isDirectory && changed.get(path)) return null;
      out.push({ path, listed: st !== null && !this.#excluded(path) });
    }
    return out;
  }

  /** The tree's manifest by a walk, hashing only what changed since the kept one. */
  async #byWalk(): Promise<{ bytes: Uint8Array<ArrayBuffer>; digest: string; hashed: number }> {
    let before = null;
    try {
      before = readManifestState(this.#files);
    } catch { /* unusable: everything is hashed */ }
    const next = await updateManifest(this.#o.root, before, {
      skip: SERVER_SKIP,
      filter: (p) => !this.#excluded(p),
    });
    const bytes = await writeManifestState(this.#files, next);
    return { bytes, digest: await manifestDigest(bytes), hashed: next.hashed };
  }
}

function refused(markerText: string | null, why: string, path: string | null): Vouch {
  const marker = markerText === null ? null : parseMarker(markerText);
  return { state: "refused", marker, why, path };
}

/** The first path the two manifests disagree on, in path order; null when none or unreadable. */
function firstDifference(signed: Uint8Array, tree: Uint8Array): string | null {
  try {
    const d = diffManifests(parseManifest(signed), parseManifest(tree));
    return [...d.added, ...d.removed, ...d.changed, ...d.typeChanged].sort(comparePaths)[0] ??
      null;
  } catch {
    return null;
  }
}
