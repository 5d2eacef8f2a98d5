/**
 * One client run: make a local directory identical to the source tree.
 *
 * The order keeps every refusal free of side effects and the common case
 * cheap:
 *
 * 1. recover from a run that was killed (stop its orphaned rsync, remove the
 *    `.~tmp~` staging dirs `--delay-updates` left behind); dest stays marked
 *    unfinished until a run completes it, so a run killed after this step
 *    leaves it marked too;
 * 2. refuse a dangerous destination (lib/client/safety.ts);
 * 3. fast path (when `client.verify_every` allows it): read the source's
 *    version and stop when it matches dest's. The health endpoint's
 *    announcement (lib/client/announced.ts: one HTTP answer, no rsync on
 *    the server) may only say "dest's version"; anything else, and the
 *    version is read through rsync (the module listing, else the marker);
 *    when the source is ahead, catch up by its version log
 *    (lib/client/catchup.ts: just the changed paths, no tree walk) when the
 *    log can vouch for the change;
 * 4. compare: a dry run lists the drift. Nothing to change ends the run here,
 *    so a no-op costs one tree walk, not two. An empty source, a source that
 *    lost its version marker, or more deletions than `client.max_delete`
 *    are refused here, before dest is touched;
 * 5. apply, through the tree layout: in place (lib/client/inplace.ts: just
 *    the listed paths for a small drift, else `rsync -a --delete-delay
 *    --delay-updates`), or a new tree swapped in whole (`--atomic`,
 *    lib/client/atomic.ts).
 *
 * A signed fleet (`release.public_keys`) takes steps 3 to 5 its own way
 * (lib/client/signed.ts): the fast path only where the state dir vouches
 * for dest's marker, and instead of the comparison and the version log, the
 * source's signed release checked, dest compared with its manifest, and
 * only what it has wrong fetched and checked before it goes live. When the
 * health endpoint announces dest's version, the release kept from the run
 * that fetched it is checked instead of fetched again, and a dest that is
 * that release costs the server no rsync connection.
 *
 * Connection failures (refused, reset, timeouts, a full server) are retried
 * with backoff, each attempt on a new connection so a proxy can pick another
 * server; anything else fails at once.
 *
 * @module
 */

import {
  exists,
  FanoutError,
  parseRsyncUrl,
  readSmallFile,
  SafetyError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import { listedVersion, type RsyncResult } from "../rsync/mod.ts";
import {
  describeVersion,
  MARKER_MAX_BYTES,
  markerFromScan,
  parseMarker,
  readMarker,
  sameVersion,
  type VersionMarker,
} from "../version/mod.ts";
import { adoptDest, checkDest, type DestState, rememberDest, tooManyDeletions } from "./safety.ts";
import type { TreeLayout } from "./layout.ts";
import type { ClientRunResult } from "./status.ts";
import {
  type ClientJob,
  failUnlessOk,
  retrying,
  rsyncRun,
  safeAttrs,
  serverOf,
  stamp,
} from "./job.ts";
import { compare, type Drift, driftCount } from "./drift.ts";
import { clearDirty, dirtyFile, recoverInterrupted } from "./transfer.ts";
import { catchUp } from "./catchup.ts";
import { announcesHeld } from "./announced.ts";

/**
 * Comparisons in one run while each transfer's marker turns out newer than
 * its listing of the tree; past it the next run compares again. Two: a
 * version landing mid-transfer is rare and one more pass brings it; versions
 * landing faster than a pass race every pass, and more passes only cost time.
 */
const SCAN_PASSES = 2;

/** Files in the state dir. */
const RECORD_FILE = "client-dest.json";
const PIN_FILE = "client-pin.json";

/** What the previous run left, for the fast path. */
export interface PreviousRun {
  /** The last status written, or null. */
  status: ClientRunResult | null;
}

/**
 * Runs one sync of `job` and returns its result (never throws for failures
 * the user can act on: they are in `exit_code` and `error`).
 *
 * @throws only for internal errors (bugs).
 *
 * @example
 * ```ts
 * const result = await runClient(job, { status: readStatus(job.stateDir) });
 * writeStatus(job.stateDir, result);
 * ```
 */
export async function runClient(
  job: ClientJob,
  prev: PreviousRun,
  layout: TreeLayout,
): Promise<ClientRunResult> {
  const started = Date.now();
  const run = await syncSteps(job, prev, layout);
  // A failed transfer's staging dirs (or half-built tree) hold partial
  // files: on a full disk they would keep it full until the next run.
  // The dirty flag stays up: the next run compares the whole tree.
  if (run.error && await exists(dirtyFile(job))) await layout.recover().catch(() => {});
  return {
    host: job.host,
    time: new Date(started).toISOString(),
    duration_ms: Date.now() - started,
    mode: run.error ? "failed" : run.mode,
    source: job.source,
    server: run.server,
    dest: job.dest,
    version: run.version,
    previous_version: run.previous_version,
    drift: run.drift,
    files_changed: run.files_changed,
    files_deleted: run.files_deleted,
    bytes_changed: run.bytes_changed,
    bytes_received: run.bytes_received,
    backup_dir: run.backup_dir,
    verified_at: run.verified_at,
    exit_code: run.error?.exitCode ?? 0,
    error: run.error?.message ?? null,
  };
}

/** What the steps of a run found and did; {@linkcode runClient} adds who, when and how long. */
type Sync =
  & Pick<
    ClientRunResult,
    | "mode"
    | "server"
    | "version"
    | "previous_version"
    | "drift"
    | "files_changed"
    | "files_deleted"
    | "bytes_changed"
    | "bytes_received"
    | "backup_dir"
    | "verified_at"
  >
  & {
    /** Why the run failed; null when it did not. */
    error: FanoutError | null;
  };

/** What a transfer did, as the status counts it. */
type Applied = Pick<
  Sync,
  "files_changed" | "files_deleted" | "bytes_changed" | "bytes_received" | "backup_dir"
>;

/** Dest as the run finds it. */
interface DestStart {
  /** A killed run left dest dirty: the whole tree is compared. */
  forced: boolean;
  state: DestState;
  /** The directory holding dest's tree (lib/client/layout.ts), null when none yet. */
  current: string | null;
  /** The version dest holds. */
  before: VersionMarker | null;
}

/**
 * The run's steps in order (see the module doc). A failure ends them: the
 * result keeps what the run knew by then (dest's version, the server, the
 * drift), so the status says how far it got.
 */
async function syncSteps(job: ClientJob, prev: PreviousRun, layout: TreeLayout): Promise<Sync> {
  let known: Sync = {
    mode: "failed",
    server: null,
    version: null,
    previous_version: null,
    drift: 0,
    ...NOTHING_APPLIED,
    verified_at: prev.status?.verified_at ?? null,
    error: null,
  };
  try {
    const start = await openDest(job, layout);
    known = { ...known, version: start.before, previous_version: start.before };
    const pin = readPin(job.stateDir);
    const signed = (job.publicKeys?.length ?? 0) > 0;
    const fastOk = fastPathAllowed(job, prev, start) && (!signed || await verifiedHere(job, start));
    let remoteBefore: VersionMarker | null = null;
    if (pin || job.verifyEvery > 0) {
      remoteBefore = await versionBefore(job, fastOk ? start.before : null);
      known = { ...known, server: serverOf(job.source) };
    }
    if (pin && await heldByPin(job, pin, remoteBefore)) return { ...known, mode: "pinned" };
    if (fastOk && remoteBefore && sameVersion(remoteBefore, start.before)) {
      job.log.debug("version unchanged; tree walk skipped", {
        version: describeVersion(start.before),
      });
      return { ...known, mode: "fast" };
    }

    const backupDir = job.backupDir ? `${job.backupDir}/${stamp(new Date())}` : null;
    if (signed) {
      known = { ...known, server: serverOf(job.source) };
      const done = await signedSync(job, layout, start, backupDir, remoteBefore === null);
      // Dest is the release's: down goes the dirty flag, which recovery
      // keeps up (lib/client/transfer.ts) while dest may be unfinished.
      await clearDirty(job);
      return { ...known, ...done };
    }
    if (fastOk && remoteBefore && start.before && remoteBefore.seq > start.before.seq) {
      const caught = await caughtUp(job, layout, start, start.before, backupDir);
      if (caught) return { ...known, ...caught };
    }
    const scan = await comparePasses(job, layout, start, backupDir);
    if (scan.error) {
      return {
        ...known,
        server: scan.server ?? known.server,
        drift: scan.drift,
        error: scan.error,
      };
    }
    // The whole tree compared and applied: dest is the source's (see above).
    await clearDirty(job);
    const after = readMarker(scan.tree ?? job.dest);
    warnIfBackwards(job, start.before, after);
    return {
      ...known,
      mode: scan.passes.length ? "sync" : "verify",
      server: scan.server,
      version: after,
      drift: scan.drift,
      ...(scan.passes.length ? await passTotals(scan.passes, backupDir) : NOTHING_APPLIED),
      verified_at: await verifiedAt(job, remoteBefore, after, scan.fromScan),
    };
  } catch (e) {
    if (!(e instanceof FanoutError)) throw e;
    return { ...known, error: e };
  }
}

const NOTHING_APPLIED: Applied = {
  files_changed: 0,
  files_deleted: 0,
  bytes_changed: 0,
  bytes_received: 0,
  backup_dir: null,
};

/** Recovers from a killed run, checks dest, and reads the version it holds. */
async function openDest(job: ClientJob, layout: TreeLayout): Promise<DestStart> {
  const forced = await recoverInterrupted(job, () => layout.recover());
  const state = await destState(job);
  const current = await layout.current();
  return { forced, state, current, before: current ? readMarker(current) : null };
}

/**
 * @throws {SafetyError} when dest must not be synced (lib/client/safety.ts).
 */
function destState(job: ClientJob): Promise<DestState> {
  return checkDest(job.dest, {
    adopt: job.adopt,
    stateDir: job.stateDir,
    backupDir: job.backupDir,
    recordFile: `${job.stateDir}/${RECORD_FILE}`,
  });
}

/**
 * Whether the marker alone may decide the run: dest is clean and marked, the
 * last run succeeded, and its tree walk is younger than `client.verify_every`.
 */
function fastPathAllowed(job: ClientJob, prev: PreviousRun, start: DestStart): boolean {
  return job.verifyEvery > 0 && !start.forced && start.state === "marked" &&
    start.before !== null && prev.status?.exit_code === 0 && prev.status.verified_at !== null &&
    Date.now() - Date.parse(prev.status.verified_at) < job.verifyEvery;
}

/**
 * The source's version as the run starts. With `held` (dest's version, when
 * the fast path may stop at it), the health endpoint is asked first: it may
 * only confirm `held`; any other answer and rsync reads the version.
 */
async function versionBefore(
  job: ClientJob,
  held: VersionMarker | null,
): Promise<VersionMarker | null> {
  if (held && await announcesHeld(job, held)) return held;
  return await retrying(job, "fetch the version marker", () => fetchMarker(job));
}

/**
 * True while the rollback pin holds syncs off (the source is not past the
 * rolled-back version); else the pin is removed and the run goes on.
 */
async function heldByPin(
  job: ClientJob,
  pin: Pin,
  remote: VersionMarker | null,
): Promise<boolean> {
  if (remote && remote.seq <= pin.seq) {
    job.log.debug("pinned by rollback", {
      pinned_below: pin.seq,
      source: describeVersion(remote),
    });
    return true;
  }
  job.log.info("a newer version than the rolled-back one is out; resuming", {
    rolled_back: pin.seq,
    source: describeVersion(remote),
  });
  await clearPin(job.stateDir);
  return false;
}

/**
 * Brings dest up to the source by its version log (lib/client/catchup.ts);
 * null when the log cannot vouch for the change. Not a verification:
 * verified_at stays that of the last tree walk.
 */
async function caughtUp(
  job: ClientJob,
  layout: TreeLayout,
  start: DestStart,
  before: VersionMarker,
  backupDir: string | null,
): Promise<Partial<Sync> | null> {
  const done = await retrying(
    job,
    "sync",
    () => catchUp(job, before, layout, { state: start.state, backupDir }),
  );
  if (!done) return null;
  const ours = [` ${VERSION_MARKER}`, ` ${VERSION_LOG}`];
  return {
    mode: "sync",
    version: done.target,
    drift: done.list.paths.length + done.list.deleted.length,
    files_changed:
      done.r.items.filter((l) => !l.startsWith("*") && !ours.some((n) => l.endsWith(n))).length,
    files_deleted: done.list.deleted.length,
    bytes_changed: done.r.stats?.transferredSize ?? 0,
    bytes_received: done.r.stats?.bytesReceived ?? 0,
    backup_dir: await keptBackup(backupDir),
  };
}

/**
 * True when the state dir says dest's tree holds, as signed, the version its
 * marker names: only then may the marker alone decide a signed run.
 */
async function verifiedHere(job: ClientJob, start: DestStart): Promise<boolean> {
  const v = (await import("./signed_state.ts")).verifiedVersion(job, start.current);
  return v !== null && v.seq === start.before?.seq && v.commit === start.before.commit;
}

/**
 * A run of a signed fleet (lib/client/signed.ts): the source's release is
 * checked, then dest is compared with its manifest and brought to it, or
 * refused whole. Its comparison is a verification. `unread` when the run
 * has not read the source's version: then, when the health endpoint
 * announces dest's version, the release kept from the run that fetched it
 * is checked instead of fetched, and a dest that is that release costs the
 * server no rsync connection.
 */
async function signedSync(
  job: ClientJob,
  layout: TreeLayout,
  start: DestStart,
  backupDir: string | null,
  unread: boolean,
): Promise<Partial<Sync>> {
  const { syncRelease } = await import("./signed.ts");
  const ctx = { state: start.state, backupDir, forced: start.forced };
  const held = start.before;
  // The health endpoint's answer may only let the run check the release it
  // keeps instead of fetching it; once the run has read the version through
  // rsync, the connection it would save is spent.
  const kept = unread && job.notify && held && start.state === "marked" && !start.forced
    ? { version: held, serverHolds: () => announcesHeld(job, held) }
    : null;
  const done = await syncRelease(job, layout, ctx, start.current, kept);
  const changed = done.changed + done.deleted > 0 || done.control;
  if (changed) await rememberDest(`${job.stateDir}/${RECORD_FILE}`, job.dest);
  warnIfBackwards(job, start.before, done.release.marker);
  return {
    mode: changed ? "sync" : "verify",
    version: done.release.marker,
    drift: done.changed + done.deleted,
    files_changed: done.changed,
    files_deleted: done.deleted,
    bytes_changed: done.r?.stats?.transferredSize ?? 0,
    bytes_received: done.r?.stats?.bytesReceived ?? 0,
    backup_dir: await keptBackup(backupDir),
    verified_at: new Date().toISOString(),
  };
}

/** One comparison and what its transfer did. */
interface Pass {
  drift: Drift;
  r: RsyncResult;
}

/** What the comparisons found and did; `error` set when one failed. */
interface Passes {
  /** The passes that changed dest. */
  passes: Pass[];
  /** The directory holding dest's tree after them. */
  tree: string | null;
  /** Whether dest's marker is the one its tree's listing saw (lib/version/marker_stamp.ts). */
  fromScan: boolean;
  /** The server the last comparison reached; null before any did. */
  server: string | null;
  /** Entries that differed, summed over the passes. */
  drift: number;
  error: FanoutError | null;
}

/**
 * Compares dest with the source and applies the drift, again while the
 * marker that arrived is newer than the tree listing saw (at most
 * {@linkcode SCAN_PASSES} times).
 */
async function comparePasses(
  job: ClientJob,
  layout: TreeLayout,
  start: DestStart,
  backupDir: string | null,
): Promise<Passes> {
  const out: Passes = {
    passes: [],
    tree: start.current,
    fromScan: true,
    server: null,
    drift: 0,
    error: null,
  };
  try {
    for (let pass = 1, st = start.state, prior = 0;; pass++) {
      const done = await retrying(job, "sync", async () => {
        // An attempt cut mid-transfer left its staging dirs; the source may have
        // changed since, so what it staged may never be sent (nor cleaned) again.
        await recoverInterrupted(job, () => layout.recover());
        const drift = await compare(job, out.tree ?? job.dest, { adopt: st === "adopt" });
        out.server = drift.server;
        out.drift = prior + driftCount(drift);
        refuseUnsafe(job, drift, st, start.before);
        if (driftCount(drift) === 0 && st === "marked") return null;
        if (st === "adopt") {
          const dropped = await adoptDest(job.dest);
          job.log.info("adopted dest", { dest: job.dest, dropped_git: dropped });
        }
        const r = await layout.apply(drift, { state: st, backupDir });
        await rememberDest(`${job.stateDir}/${RECORD_FILE}`, job.dest);
        return { drift, r };
      });
      if (done) out.passes.push(done);
      prior = out.drift;
      out.tree = await layout.current();
      out.fromScan = markerFromScan(out.tree ?? job.dest);
      // A version that lands on the server between rsync's listing of the
      // tree and its sending of the marker puts the new marker over the
      // listed (older) tree. One more comparison brings what the listing
      // missed. (So does one after a comparison that found nothing: behind
      // a balancer it may have reached a server still at the listed version.)
      if (out.fromScan || pass === SCAN_PASSES) break;
      job.log.debug("a version landed while the tree was being read; comparing again", {
        version: describeVersion(readMarker(out.tree ?? job.dest)),
        pass: pass + 1,
      });
      st = await destState(job);
    }
  } catch (e) {
    if (!(e instanceof FanoutError)) throw e;
    out.error = e;
  }
  return out;
}

function warnIfBackwards(
  job: ClientJob,
  before: VersionMarker | null,
  after: VersionMarker | null,
): void {
  if (before && after && after.seq < before.seq) {
    job.log.warn("version went backwards", {
      from: describeVersion(before),
      to: describeVersion(after),
      source: job.source,
    });
  }
}

/**
 * What the passes changed. The counts come from the comparisons: an
 * `--atomic` transfer into a fresh tree itemizes every directory as new, so
 * its own lines do not say what changed.
 */
async function passTotals(passes: Pass[], backupDir: string | null): Promise<Applied> {
  const sum = (f: (p: Pass) => number) => passes.reduce((n, p) => n + f(p), 0);
  return {
    files_changed: sum((p) => p.drift.changed.length + p.drift.missing.length),
    files_deleted: sum((p) => p.drift.extra.length),
    bytes_changed: sum((p) => p.r.stats?.transferredSize ?? 0),
    bytes_received: sum((p) => p.r.stats?.bytesReceived ?? 0),
    backup_dir: await keptBackup(backupDir),
  };
}

/** `backupDir` when the transfer kept something there, else null. */
async function keptBackup(backupDir: string | null): Promise<string | null> {
  return backupDir && await exists(backupDir) ? backupDir : null;
}

/**
 * When the comparison counts as a verification: now, when the source held
 * still during it, else null. The marker is written last on every server, so
 * an unchanged marker before and after means no push landed in between.
 * Behind a balancer the three reads may reach three servers, so the marker
 * must also be the one the tree's listing saw. An unsure run voids the last
 * verification too, or the next run could trust a marker that arrived ahead
 * of its tree.
 */
async function verifiedAt(
  job: ClientJob,
  remoteBefore: VersionMarker | null,
  after: VersionMarker | null,
  fromScan: boolean,
): Promise<string | null> {
  let consistent = fromScan;
  if (job.verifyEvery > 0) {
    const remoteAfter = await fetchMarker(job).catch(() => null);
    consistent &&= sameVersion(remoteBefore, remoteAfter) && sameVersion(remoteAfter, after);
  }
  if (!consistent) job.log.debug("source changed during the run; the next run verifies again");
  return consistent ? new Date().toISOString() : null;
}

function refuseUnsafe(
  job: ClientJob,
  drift: Drift,
  state: DestState,
  before: VersionMarker | null,
): void {
  const populated = state === "marked" || state === "adopt";
  if (drift.sourceEntries <= 1 && populated && drift.extra.length > 0) {
    throw new SafetyError(
      `refusing to sync ${job.dest}: the source ${job.source} is empty (a server that lost ` +
        `or has not received its tree?); nothing changed`,
    );
  }
  if (before && drift.extra.some((i) => i.path === VERSION_MARKER)) {
    throw new SafetyError(
      `refusing to sync ${job.dest}: the source ${job.source} has no ${VERSION_MARKER} while ` +
        `dest holds ${describeVersion(before)} (a server mid-push or one that lost its tree?); ` +
        `nothing changed`,
    );
  }
  const odd = [...drift.changed, ...drift.missing].find((i) =>
    i.path === VERSION_MARKER && i.kind !== "file"
  );
  if (before && odd) {
    throw new SafetyError(
      `refusing to sync ${job.dest}: the source ${job.source} has a ${VERSION_MARKER} that is ` +
        `not a regular file (a ${odd.kind}) while dest holds ${describeVersion(before)}; ` +
        `nothing changed`,
    );
  }
  if (drift.extra.length > job.maxDelete) {
    throw tooManyDeletions(job.dest, drift.extra.length, job.maxDelete);
  }
}

/**
 * Fetches only the source's `.fanout-version` (one small request); null when
 * the source has none.
 *
 * @throws {TransferError} when the source cannot be reached.
 */
export async function fetchMarker(job: ClientJob): Promise<VersionMarker | null> {
  const listed = await listedMarker(job);
  if (listed) {
    job.log.debug("version read from the module listing", { version: describeVersion(listed) });
    return listed;
  }
  const into = `${job.stateDir}/source-version`;
  await Deno.remove(into).catch(() => {});
  const r = await rsyncRun(job, {
    source: job.source + VERSION_MARKER,
    dest: into,
    timeout: Math.min(job.timeout, 30_000),
    connectTimeout: job.connectTimeout,
    // A server's marker larger than any marker is not fetched (nor read).
    extra: [`--max-size=${MARKER_MAX_BYTES}`, ...safeAttrs(job)],
  });
  if (r.code === 23 && /No such file|change_dir|link_stat/.test(r.stderr)) return null;
  failUnlessOk(job, r);
  const v = parseMarker(readSmallFile(into, MARKER_MAX_BYTES) ?? "");
  job.log.debug("version read from the marker file", { version: describeVersion(v) });
  return v;
}

/**
 * The version the source's read module announces in its comment (fanout's
 * servers put it there): one module listing, a few milliseconds and no rsync
 * process on either side. Null when it cannot tell (an older or hand-made
 * server, a source below the module's root): then the marker file is fetched.
 */
async function listedMarker(job: ClientJob): Promise<VersionMarker | null> {
  const url = parseRsyncUrl(job.source);
  if (!url || (url.path !== "" && url.path !== "/")) return null;
  const at = { host: url.host, port: url.port };
  return await listedVersion(at, url.module, Math.min(job.connectTimeout, 5_000)) ?? null;
}

/** A rollback pin: syncs stay off until the source has a version newer than `seq`. */
export interface Pin {
  /** The version rolled back from. */
  seq: number;
  /** When the rollback happened (ISO). */
  at: string;
}

/** Reads the rollback pin of the host with state dir `stateDir`, or null. */
export function readPin(stateDir: string): Pin | null {
  try {
    const p = JSON.parse(Deno.readTextFileSync(`${stateDir}/${PIN_FILE}`));
    return Number.isInteger(p.seq) ? p : null;
  } catch {
    return null;
  }
}

/** Pins the host at a rollback from version `seq`. */
export async function writePin(stateDir: string, seq: number): Promise<void> {
  const pin: Pin = { seq, at: new Date().toISOString() };
  await Deno.writeTextFile(`${stateDir}/${PIN_FILE}`, JSON.stringify(pin) + "\n");
}

/** Removes the rollback pin. */
export async function clearPin(stateDir: string): Promise<void> {
  await Deno.remove(`${stateDir}/${PIN_FILE}`).catch(() => {});
}
