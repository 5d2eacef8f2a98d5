/**
 * `fanout --role client`: mirror the tree into `client.dest`. One-shot by
 * default (cron: lock, splay, one run, silent on success); `--check` lists
 * drift; `--watch` keeps running and syncs each new version within seconds;
 * `--rollback` puts the previous `--atomic` tree back.
 *
 * @module
 */

import { type CommonOptions, type Fleet, fleetFor } from "../lib/config/mod.ts";
import {
  EnvironmentError,
  ExitCode,
  FanoutError,
  formatHostPort,
  hostname,
  type HostPort,
  LockedError,
  log,
  type Logger,
  Nudge,
  sleep,
  splayDelay,
  stripControl,
  sweepTemps,
  UsageError,
} from "../lib/core/mod.ts";
import { acquireLock, type FileLock, shutdownSignal } from "../lib/sys/mod.ts";
import {
  type ClientJob,
  type ClientRunResult,
  fetchMarker,
  inPlace,
  loadAtomic,
  loadCheck,
  readStatus,
  runClient,
  type TreeLayout,
  writeStatus,
} from "../lib/client/mod.ts";
import { describeVersion, readMarker, sameVersion } from "../lib/version/mod.ts";
import { sendReport } from "../lib/report/mod.ts";
import type { PublicKey } from "../lib/release/mod.ts";

/** Runs the client role; returns the exit code. */
export async function run(opts: CommonOptions): Promise<number> {
  refuseFlagMix(opts);
  const fleet = await fleetFor(opts, "client");
  const host = opts.name ?? hostname();
  const lg = log().child({ role: "client", name: host });
  const job = makeJob(fleet, host, opts, lg, await publicKeys(fleet));
  const { splay, watchInterval, notify } = fleet.client;
  makeStateDir(job.stateDir);
  const layout = await layoutFor(job);
  const { signal, dispose } = shutdownSignal();
  job.signal = signal;
  try {
    if (opts.check) return await check(job, layout, opts.json);
    if (opts.rollback) return await rollbackCommand(job);
    const noSplay = opts.noSplay;
    const report = (r: ClientRunResult) => reportRun(fleet, job, r);
    if (opts.watch) {
      const plan = { splay: noSplay ? 0 : watchInterval, interval: watchInterval, notify };
      return await watch(job, layout, plan, report);
    }
    return await cronRun(job, layout, noSplay ? 0 : splay, report);
  } finally {
    dispose();
  }
}

/**
 * Says once a run that the fleet's versions are not signed. A cron run stays
 * silent on success (its output is mail): there it is a debug line unless
 * `--verbose`.
 */
function warnIfUnsigned(job: ClientJob, loud: boolean): void {
  if (job.publicKeys?.length) return;
  job.log[loud ? "warn" : "debug"](
    "versions are not signed: release.public_keys is empty, so this client takes the tree " +
      "as its server sends it (fanout keygen makes a key to sign them with)",
  );
}

function refuseFlagMix(f: CommonOptions): void {
  const modes = (["check", "watch", "rollback"] as const).filter((m) => f[m]);
  if (modes.length > 1) {
    throw new UsageError(`--${modes[0]} and --${modes[1]} cannot be combined`);
  }
  if (f.json && !f.check) throw new UsageError("--json goes with --check");
  if (f.adopt && (f.check || f.rollback)) {
    throw new UsageError(`--adopt does not go with --${f.check ? "check" : "rollback"}`);
  }
}

/**
 * The fleet's release keys, parsed. The release code loads only for a signed
 * fleet: an unsigned cron run does not pay for it.
 */
async function publicKeys(fleet: Fleet): Promise<PublicKey[]> {
  const keys = fleet.release.publicKeys;
  if (keys.length === 0) return [];
  const { parsePublicKey } = await import("../lib/release/mod.ts");
  return keys.map(parsePublicKey);
}

function makeJob(
  fleet: Fleet,
  host: string,
  f: CommonOptions,
  lg: Logger,
  keys: PublicKey[],
): ClientJob {
  const c = fleet.client;
  if (c.atomic && c.backupDir) {
    throw new UsageError(
      "client.atomic and client.backup_dir do not go together: --atomic keeps whole earlier " +
        "trees (client.keep) instead of backups",
    );
  }
  const source = c.source!.endsWith("/") ? c.source! : `${c.source}/`;
  return {
    host,
    source,
    dest: c.dest!,
    stateDir: `${fleet.stateDir}/${host}`,
    rsync: fleet.rsync.path,
    timeout: c.timeout,
    connectTimeout: c.connectTimeout,
    retries: c.retries,
    maxDelete: c.maxDelete,
    verifyEvery: c.verifyEvery,
    backupDir: c.backupDir,
    atomic: c.atomic,
    keep: c.keep,
    adopt: f.adopt,
    keepOwners: c.keepOwners,
    notify: c.notify,
    publicKeys: keys,
    verbose: f.verbose,
    log: lg,
  };
}

/**
 * The client's run lock: taken at once or not at all (a cron run that finds
 * it held has nothing to do). Held, it sweeps the temporary files a killed
 * run left in the state dir.
 */
async function lockRun(job: ClientJob): Promise<FileLock> {
  const held = await acquireLock(`${job.stateDir}/client.lock`, { timeout: 0, what: "client run" });
  await sweepTemps(job.stateDir);
  return held;
}

function makeStateDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new EnvironmentError(
      `cannot create the state dir ${dir}: ${(e as Error).message} (pass --state-dir DIR)`,
    );
  }
}

async function layoutFor(job: ClientJob): Promise<TreeLayout> {
  if (!job.atomic) return inPlace(job);
  return (await loadAtomic()).atomicLayout(job);
}

// ---------------------------------------------------------------------------
// one cron run

/** Sends a run's result to the primary's fleet view; never fails the run. */
async function reportRun(fleet: Fleet, job: ClientJob, r: ClientRunResult): Promise<void> {
  await sendReport(fleet, {
    host: r.host,
    version: r.version,
    started_at: r.time,
    duration_ms: r.duration_ms,
    exit_code: r.exit_code,
    drift: r.drift,
    error: r.error,
    source: r.source,
  }, { log: job.log });
}

async function cronRun(
  job: ClientJob,
  layout: TreeLayout,
  splay: number,
  report: (r: ClientRunResult) => Promise<void>,
): Promise<number> {
  let held: FileLock;
  try {
    held = await lockRun(job);
  } catch (e) {
    // Overlap is normal under cron (a slow run, a --watch): quiet unless asked.
    if (e instanceof LockedError && !job.verbose) return ExitCode.Locked;
    throw e;
  }
  try {
    warnIfUnsigned(job, job.verbose);
    const delay = splayDelay(job.host, splay);
    if (delay > 0) {
      job.log.debug("splay", { ms: delay });
      if (!(await sleep(delay, job.signal))) return 130;
    }
    const result = await runClient(job, { status: readStatus(job.stateDir) }, layout);
    writeStatus(job.stateDir, result);
    await report(result);
    if (result.exit_code !== 0) throw new FanoutError(result.error!, exitOf(result));
    if (job.verbose) console.error(stripControl(summary(result)));
    return ExitCode.Ok;
  } finally {
    held.release();
  }
}

function exitOf(r: ClientRunResult): FanoutError["exitCode"] {
  return r.exit_code as FanoutError["exitCode"];
}

/**
 * One line saying what a run did.
 *
 * @example
 * ```ts
 * summary(result); // "synced /apps/dat/plugins to seq 42 (1a2b3c4d main) from 10.0.0.20:873: 3 changed, 1 deleted, 12.0 KiB in 45 ms"
 * ```
 */
export function summary(r: ClientRunResult): string {
  const v = describeVersion(r.version);
  const ms = `${r.duration_ms} ms`;
  switch (r.mode) {
    case "fast":
      return `${r.dest} is at ${v}, as the source: unchanged, tree walk skipped (${ms})`;
    case "verify":
      return `${r.dest} is in sync with ${r.server ?? r.source} at ${v}: tree verified (${ms})`;
    case "pinned":
      return `${r.dest} stays rolled back at ${v} until a newer version is published (${ms})`;
    case "sync":
      return `synced ${r.dest} to ${v} from ${r.server ?? r.source}: ${r.files_changed} changed, ` +
        `${r.files_deleted} deleted, ${formatBytes(r.bytes_changed)} in ${ms}` +
        (r.backup_dir ? `; overwritten files kept in ${r.backup_dir}` : "");
    default:
      return `failed: ${r.error}`;
  }
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(1)} ${units[u]}`;
}

// ---------------------------------------------------------------------------
// --check

async function check(job: ClientJob, layout: TreeLayout, json: boolean): Promise<number> {
  const { checkDrift, formatCheck } = await loadCheck();
  const report = await checkDrift(job, layout);
  // Paths and versions come from the server: no control characters to the terminal.
  console.log(stripControl(json ? JSON.stringify(report, null, 2) : formatCheck(report)));
  return report.in_sync ? ExitCode.Ok : ExitCode.Drift;
}

// ---------------------------------------------------------------------------
// --rollback

async function rollbackCommand(job: ClientJob): Promise<number> {
  const held = await lockRun(job);
  const { rollback } = await loadAtomic();
  let rb;
  try {
    rb = await rollback(job);
  } finally {
    held.release();
  }
  console.log(
    `rolled back ${job.dest} from ${describeVersion(rb.fromVersion)} to ${
      describeVersion(rb.toVersion)
    }` +
      (rb.fromVersion
        ? `; runs leave it there until a version newer than seq ${rb.fromVersion.seq} is published`
        : ""),
  );
  return ExitCode.Ok;
}

// ---------------------------------------------------------------------------
// --watch

/** Without `client.verify_every`, --watch still walks the tree this often. */
const WATCH_VERIFY_DEFAULT = 60_000;

/** How a --watch run learns of versions. */
interface WatchPlan {
  /** The per-host delay before the first look (ms). */
  splay: number;
  /** Polls this often (ms); a version notice comes sooner. */
  interval: number;
  /** The health endpoint to long-poll for version notices, or null. */
  notify: HostPort | null;
}

async function watch(
  job: ClientJob,
  layout: TreeLayout,
  plan: WatchPlan,
  report: (r: ClientRunResult) => Promise<void>,
): Promise<number> {
  const signal = job.signal!;
  const held = await lockRun(job);
  try {
    warnIfUnsigned(job, true);
    return await watchLoop(job, layout, plan, signal, report);
  } finally {
    held.release();
  }
}

async function watchLoop(
  job: ClientJob,
  layout: TreeLayout,
  plan: WatchPlan,
  signal: AbortSignal,
  report: (r: ClientRunResult) => Promise<void>,
): Promise<number> {
  // Hosts started together poll out of step: each keeps its own phase.
  if (!(await sleep(splayDelay(job.host, plan.splay), signal))) return 0;
  job.log.info("watching", {
    source: job.source,
    dest: job.dest,
    every_ms: plan.interval,
    notify: plan.notify ? formatHostPort(plan.notify) : "off",
  });
  const nudge = new Nudge();
  const listening = new AbortController();
  const notices = plan.notify
    ? hearVersions(job, layout, plan.notify, nudge, AbortSignal.any([signal, listening.signal]))
    : null;
  const state: WatchState = { lastFull: 0, failing: false };
  try {
    while (!signal.aborted) {
      await watchPass(job, layout, state, report);
      await nudge.wait(plan.interval, signal);
    }
  } finally {
    listening.abort();
    await notices;
  }
  job.log.info("stopped", { signal: String(signal.reason) });
  return ExitCode.Ok;
}

/**
 * Long-polls `at` for version notices (lib/health's follower) and pokes the
 * watch loop at each; resolves when `signal` aborts. The notice is a hint:
 * the pass it wakes reads and checks the source's version as a poll does.
 */
async function hearVersions(
  job: ClientJob,
  layout: TreeLayout,
  at: HostPort,
  nudge: Nudge,
  signal: AbortSignal,
): Promise<void> {
  const { followVersions } = await import("../lib/health/mod.ts");
  const held = await layout.current();
  await followVersions({
    at,
    after: (held ? readMarker(held) : null)?.seq ?? -1,
    signal,
    log: job.log,
    onVersion: (v) => {
      job.log.debug("version announced", { version: describeVersion(v) });
      nudge.poke();
    },
  });
}

/** What the watch loop carries from one pass to the next. */
interface WatchState {
  /** When the tree was last walked (ms since epoch). */
  lastFull: number;
  /** The last pass failed: the next one walks the tree. */
  failing: boolean;
}

/** One look at the source, and a sync when its version differs or a walk is due. */
async function watchPass(
  job: ClientJob,
  layout: TreeLayout,
  state: WatchState,
  report: (r: ClientRunResult) => Promise<void>,
): Promise<void> {
  const signal = job.signal!;
  const verifyPeriod = job.verifyEvery || WATCH_VERIFY_DEFAULT;
  const walk = Date.now() - state.lastFull >= verifyPeriod || state.failing;
  const due = walk || await versionDiffers(job, layout);
  if (!due || signal.aborted) return;
  const status = readStatus(job.stateDir);
  // The loop decides when to walk the tree: those passes run without the fast path.
  // A new version between walks catches up by the version log when it can.
  const pass = { ...job, verifyEvery: walk ? 0 : verifyPeriod };
  const result = await runClient(pass, { status }, layout);
  writeStatus(job.stateDir, result);
  await report(result);
  state.failing = result.exit_code !== 0;
  if (state.failing) {
    if (!signal.aborted) job.log.error("sync failed", { error: result.error });
    return;
  }
  if (walk || result.verified_at !== status?.verified_at) state.lastFull = Date.now();
  if (result.mode === "sync") {
    job.log.info("synced", {
      version: describeVersion(result.version),
      changed: result.files_changed,
      deleted: result.files_deleted,
      bytes: result.bytes_changed,
      ms: result.duration_ms,
    });
  }
}

/** True when the source's version is not the one held; false when it cannot be read. */
async function versionDiffers(job: ClientJob, layout: TreeLayout): Promise<boolean> {
  try {
    const remote = await fetchMarker(job);
    const current = await layout.current();
    return !sameVersion(remote, current ? readMarker(current) : null);
  } catch (e) {
    if (!(e instanceof FanoutError)) throw e;
    if (!job.signal!.aborted) {
      job.log.warn("cannot read the source's version", { error: e.message });
    }
    return false;
  }
}
