/**
 * One client run: make a local directory identical to the source tree.
 *
 * The order keeps every refusal free of side effects and the common case
 * cheap:
 *
 * 1. recover from a run that was killed (stop its orphaned rsync, remove the
 *    `.~tmp~` staging dirs `--delay-updates` left behind);
 * 2. refuse a dangerous destination (lib/client/safety.ts);
 * 3. fast path (when `client.verify_every` allows it): fetch only the source's
 *    `.fanout-version` (one small request) and stop when it matches dest's;
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
import { probeRsyncd, type RsyncResult } from "../rsync/mod.ts";
import {
  describeVersion,
  MARKER_MAX_BYTES,
  markerFromComment,
  markerFromScan,
  parseMarker,
  readMarker,
  sameVersion,
  type VersionMarker,
} from "../version/mod.ts";
import { adoptDest, checkDest, type DestState, rememberDest } from "./safety.ts";
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
import { dirtyFile, recoverInterrupted } from "./transfer.ts";
import { catchUp } from "./catchup.ts";

/**
 * Comparisons in one run while each transfer's marker turns out newer than
 * its listing of the tree; past it the next run compares again. Two: a
 * version landing mid-transfer is rare and one more pass brings it; versions
 * landing faster than a pass (a stress test publishing every 0.2 s on 50k
 * files) race every pass, and more passes only cost time.
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
  const result: ClientRunResult = {
    host: job.host,
    time: new Date(started).toISOString(),
    duration_ms: 0,
    mode: "failed",
    source: job.source,
    server: null,
    dest: job.dest,
    version: null,
    previous_version: null,
    drift: 0,
    files_changed: 0,
    files_deleted: 0,
    bytes_changed: 0,
    bytes_received: 0,
    backup_dir: null,
    verified_at: prev.status?.verified_at ?? null,
    exit_code: 0,
    error: null,
  };
  try {
    await syncSteps(job, prev, layout, result);
  } catch (e) {
    if (!(e instanceof FanoutError)) throw e;
    // A failed transfer's staging dirs (or half-built tree) hold partial
    // files: on a full disk they would keep it full until the next run.
    // The dirty flag stays up: the next run compares the whole tree.
    if (await exists(dirtyFile(job))) await layout.recover().catch(() => {});
    result.mode = "failed";
    result.exit_code = e.exitCode;
    result.error = e.message;
  }
  result.duration_ms = Date.now() - started;
  return result;
}

async function syncSteps(
  job: ClientJob,
  prev: PreviousRun,
  layout: TreeLayout,
  result: ClientRunResult,
): Promise<void> {
  const forced = await recoverInterrupted(job, () => layout.recover());
  const destState = () =>
    checkDest(job.dest, {
      adopt: job.adopt,
      stateDir: job.stateDir,
      backupDir: job.backupDir,
      recordFile: `${job.stateDir}/${RECORD_FILE}`,
    });
  const state = await destState();
  const current = await layout.current();
  const before = current ? readMarker(current) : null;
  result.previous_version = before;
  result.version = before;

  const pin = readPin(job.stateDir);
  const fastOk = job.verifyEvery > 0 && !forced && state === "marked" && before !== null &&
    prev.status?.exit_code === 0 && prev.status.verified_at !== null &&
    Date.now() - Date.parse(prev.status.verified_at) < job.verifyEvery;
  let remoteBefore: VersionMarker | null = null;
  if (pin || fastOk || job.verifyEvery > 0) {
    remoteBefore = await retrying(job, "fetch the version marker", () => fetchMarker(job));
    result.server = serverOf(job.source);
  }
  if (pin) {
    if (remoteBefore && remoteBefore.seq <= pin.seq) {
      job.log.debug("pinned by rollback", {
        pinned_below: pin.seq,
        source: describeVersion(remoteBefore),
      });
      result.mode = "pinned";
      return;
    }
    job.log.info("a newer version than the rolled-back one is out; resuming", {
      rolled_back: pin.seq,
      source: describeVersion(remoteBefore),
    });
    await clearPin(job.stateDir);
  }
  if (fastOk && remoteBefore && sameVersion(remoteBefore, before)) {
    job.log.debug("version unchanged; tree walk skipped", { version: describeVersion(before) });
    result.mode = "fast";
    return;
  }

  const backupDir = job.backupDir ? `${job.backupDir}/${stamp(new Date())}` : null;
  if (fastOk && remoteBefore && before && remoteBefore.seq > before.seq) {
    const done = await retrying(
      job,
      "sync",
      () => catchUp(job, before, layout, { state, backupDir }),
    );
    if (done) {
      result.mode = "sync";
      result.version = done.target;
      result.drift = done.list.paths.length + done.list.deleted.length;
      const ours = [` ${VERSION_MARKER}`, ` ${VERSION_LOG}`];
      result.files_changed = done.r.items.filter((l) =>
        !l.startsWith("*") && !ours.some((n) => l.endsWith(n))
      ).length;
      result.files_deleted = done.list.deleted.length;
      result.bytes_changed = done.r.stats?.transferredSize ?? 0;
      result.bytes_received = done.r.stats?.bytesReceived ?? 0;
      if (backupDir && await exists(backupDir)) result.backup_dir = backupDir;
      // Not a verification: verified_at stays that of the last tree walk.
      return;
    }
  }
  const passes: { drift: Drift; r: RsyncResult }[] = [];
  let tree = current;
  /** Whether dest's marker is the one its tree's listing saw (lib/version/marker_stamp.ts). */
  let fromScan = true;
  for (let pass = 1, st = state, prior = 0;; pass++) {
    const done = await retrying(job, "sync", async () => {
      // An attempt cut mid-transfer left its staging dirs; the source may have
      // changed since, so what it staged may never be sent (nor cleaned) again.
      await recoverInterrupted(job, () => layout.recover());
      const drift = await compare(job, tree ?? job.dest, { adopt: st === "adopt" });
      result.server = drift.server;
      result.drift = prior + driftCount(drift);
      refuseUnsafe(job, drift, st, before);
      if (driftCount(drift) === 0 && st === "marked") return null;
      if (st === "adopt") {
        const dropped = await adoptDest(job.dest);
        job.log.info("adopted dest", { dest: job.dest, dropped_git: dropped });
      }
      const r = await layout.apply(drift, { state: st, backupDir });
      await rememberDest(`${job.stateDir}/${RECORD_FILE}`, job.dest);
      return { drift, r };
    });
    if (done) passes.push(done);
    prior = result.drift;
    tree = await layout.current();
    fromScan = markerFromScan(tree ?? job.dest);
    // A version that landed on the server between rsync's listing of the
    // tree and its sending of the marker: the new marker over the listed
    // (older) tree. One more comparison brings what the listing missed. (So
    // does one after a comparison that found nothing: behind a balancer it
    // may have reached a server still at the listed version.)
    if (fromScan || pass === SCAN_PASSES) break;
    job.log.debug("a version landed while the tree was being read; comparing again", {
      version: describeVersion(readMarker(tree ?? job.dest)),
      pass: pass + 1,
    });
    st = await destState();
  }

  const after = readMarker(tree ?? job.dest);
  result.version = after;
  if (before && after && after.seq < before.seq) {
    job.log.warn("version went backwards", {
      from: describeVersion(before),
      to: describeVersion(after),
      source: job.source,
    });
  }
  if (passes.length) {
    const sum = (f: (p: typeof passes[number]) => number) => passes.reduce((n, p) => n + f(p), 0);
    result.mode = "sync";
    // From the comparison: an --atomic transfer into a fresh tree itemizes
    // every directory as new, so its own lines do not say what changed.
    result.files_changed = sum((p) => p.drift.changed.length + p.drift.missing.length);
    result.files_deleted = sum((p) => p.drift.extra.length);
    result.bytes_changed = sum((p) => p.r.stats?.transferredSize ?? 0);
    result.bytes_received = sum((p) => p.r.stats?.bytesReceived ?? 0);
    if (backupDir && await exists(backupDir)) result.backup_dir = backupDir;
  } else {
    result.mode = "verify";
  }
  // A comparison is a verification only when the source held still during
  // it: the marker is written last on every server, so an unchanged marker
  // before and after means no push landed in between.
  // Behind a balancer the three reads may reach three servers, so the marker
  // must also be the one the tree's listing saw.
  let consistent = fromScan;
  if (job.verifyEvery > 0) {
    const remoteAfter = await fetchMarker(job).catch(() => null);
    consistent &&= sameVersion(remoteBefore, remoteAfter) && sameVersion(remoteAfter, after);
  }
  // An unsure run also voids the last verification, or the next run could
  // trust a marker that arrived ahead of its tree.
  result.verified_at = consistent ? new Date().toISOString() : null;
  if (!consistent) job.log.debug("source changed during the run; the next run verifies again");
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
    throw new SafetyError(
      `refusing to sync ${job.dest}: it would delete ${drift.extra.length} entries, more than ` +
        `client.max_delete (${job.maxDelete}); nothing changed (is the source's tree complete? ` +
        `raise --max-delete to allow it)`,
    );
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
  if (listed) return listed;
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
  return parseMarker(readSmallFile(into, MARKER_MAX_BYTES) ?? "");
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
  const r = await probeRsyncd(at, Math.min(job.connectTimeout, 5_000), { list: true });
  const comment = r.ok ? r.comments?.[url.module] : undefined;
  return comment ? markerFromComment(comment) : null;
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
