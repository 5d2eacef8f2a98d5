/**
 * One client run: make a local directory identical to the source tree.
 *
 * The order keeps every refusal free of side effects and the common case
 * cheap:
 *
 * 1. recover from a run that was killed (stop its orphaned rsync, remove the
 *    `.~tmp~` staging dirs `--delay-updates` left behind);
 * 2. refuse a dangerous destination (lib/client_safety.ts);
 * 3. fast path (when `client.verify_every` allows it): fetch only the source's
 *    `.fanout-version` (one ~6 ms request) and stop when it matches dest's;
 * 4. compare: a dry run lists the drift. Nothing to change ends the run here,
 *    so a no-op costs one tree walk, not two. An empty source, a source that
 *    lost its version marker, or more deletions than `client.max_delete`
 *    are refused here, before dest is touched;
 * 5. apply: `rsync -a --delete-delay --delay-updates` (or a new tree swapped
 *    in whole with `--atomic`, lib/client_atomic.ts).
 *
 * Connection failures (refused, reset, timeouts, a full server) are retried
 * with backoff, each attempt on a new connection so a proxy can pick another
 * server; anything else fails at once.
 *
 * @module
 */

import { DEST_MARKER, VERSION_MARKER } from "./defaults.ts";
import { FanoutError, SafetyError, TransferError } from "./errors.ts";
import type { Logger } from "./log.ts";
import {
  describeRsyncFailure,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  type RsyncStats,
  runRsync,
} from "./rsync.ts";
import { sleep } from "./splay.ts";
import { describeVersion, parseMarker, readMarker, type VersionMarker } from "./version.ts";
import {
  adoptDest,
  checkDest,
  type DestState,
  rememberDest,
  writeDestMarker,
} from "./client_safety.ts";
import type { ClientRunResult } from "./client_status.ts";

/** rsync's staging dir name for `--delay-updates`. */
export const DELAY_DIR = ".~tmp~";

/** Everything one run needs; built by roles/client.ts from the fleet file. */
export interface ClientJob {
  /** This host's name (splay, status). */
  host: string;
  /** rsync URL of the read module, ending in `/`. */
  source: string;
  /** The directory kept identical. */
  dest: string;
  /** `<state_dir>/<name>`: lock, status, recovery files. */
  stateDir: string;
  /** The rsync binary. */
  rsync: string;
  /** I/O timeout, ms. */
  timeout: number;
  /** Connect timeout, ms. */
  connectTimeout: number;
  /** Retries after connection failures. */
  retries: number;
  /** Refuse a sync that would delete more entries than this. */
  maxDelete: number;
  /** Skip the tree walk while the version is unchanged and the last full
   * verification is younger than this (ms); 0: walk every run. */
  verifyEvery: number;
  /** Keep overwritten and deleted files under `<backupDir>/<time>/`. */
  backupDir: string | null;
  /** Swap whole trees through a symlink (lib/client_atomic.ts). */
  atomic: boolean;
  /** Trees kept with `atomic`. */
  keep: number;
  /** Take over a non-empty unmarked dest once. */
  adopt: boolean;
  /** Show progress and a summary line. */
  verbose: boolean;
  log: Logger;
  /** Aborting stops the transfer. */
  signal?: AbortSignal;
  /** Backoff before retry `n` (1-based), ms; default 1 s doubling, at most 30 s. */
  backoff?: (n: number) => number;
}

/** One difference between dest and the source. */
export interface DriftItem {
  /** Path relative to the tree root; directories end in `/`. */
  path: string;
  /** `file`, `dir`, `link` or `other`. */
  kind: "file" | "dir" | "link" | "other";
  /** For changed items: what differs (`size`, `time`, `content`, `perms`…). */
  what?: string[];
}

/** What a comparison found. */
export interface Drift {
  /** In both, but different. */
  changed: DriftItem[];
  /** In the source only. */
  missing: DriftItem[];
  /** In dest only (a sync deletes them). */
  extra: DriftItem[];
  /** Entries in the source's file list (the root included). */
  sourceEntries: number;
  /** The server that answered. */
  server: string;
}

/** The number of differences in `d`. */
export function driftCount(d: Drift): number {
  return d.changed.length + d.missing.length + d.extra.length;
}

// ---------------------------------------------------------------------------
// the whole run

/** What the previous run left, for the fast path. */
export interface PreviousRun {
  /** The last status written, or null. */
  status: ClientRunResult | null;
}

/** How the tree is laid out on disk: in place, or atomic generations. */
export interface TreeLayout {
  /** The directory to compare against and read the version from; null when none yet. */
  current(): Promise<string | null>;
  /** Applies `drift` (already checked) so dest matches the source. */
  apply(drift: Drift, ctx: ApplyContext): Promise<RsyncResult>;
  /** Removes what a killed run left behind. */
  recover(): Promise<void>;
}

/** What {@linkcode TreeLayout.apply} gets. */
export interface ApplyContext {
  state: DestState;
  /** The backup dir for this run (`<backup_dir>/<time>`), or null. */
  backupDir: string | null;
}

/**
 * Runs one sync of `job` and returns its result (never throws for failures
 * the user can act on: they are in `exit_code` and `error`).
 *
 * @throws only for internal errors (bugs).
 *
 * @example
 * ```ts
 * const result = await runClient(job, await previousRun(job.stateDir));
 * await writeStatus(job.stateDir, result);
 * ```
 */
export async function runClient(
  job: ClientJob,
  prev: PreviousRun,
  layout: TreeLayout = inPlace(job),
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
  const forced = await recover(job, layout);
  const state = await checkDest(job.dest, {
    adopt: job.adopt,
    stateDir: job.stateDir,
    backupDir: job.backupDir,
    recordFile: `${job.stateDir}/${RECORD_FILE}`,
  });
  const current = await layout.current();
  const before = current ? await readMarker(current) : null;
  result.previous_version = before;
  result.version = before;

  const pin = await readPin(job.stateDir);
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
  const applied = await retrying(job, "sync", async () => {
    const drift = await compare(job, current ?? job.dest, { adopt: state === "adopt" });
    result.server = drift.server;
    result.drift = driftCount(drift);
    refuseUnsafe(job, drift, state, before);
    if (driftCount(drift) === 0 && state === "marked") return null;
    if (state === "adopt") {
      const dropped = await adoptDest(job.dest);
      job.log.info("adopted dest", { dest: job.dest, dropped_git: dropped });
    }
    const r = await layout.apply(drift, { state, backupDir });
    await rememberDest(`${job.stateDir}/${RECORD_FILE}`, job.dest);
    return { drift, r };
  });

  const after = await readMarker((await layout.current()) ?? job.dest);
  result.version = after;
  if (before && after && after.seq < before.seq) {
    job.log.warn("version went backwards", {
      from: describeVersion(before),
      to: describeVersion(after),
      source: job.source,
    });
  }
  if (applied) {
    const s = applied.r.stats;
    result.mode = "sync";
    // From the comparison: an --atomic transfer into a fresh tree itemizes
    // every directory as new, so its own lines do not say what changed.
    result.files_changed = applied.drift.changed.length + applied.drift.missing.length;
    result.files_deleted = applied.drift.extra.length;
    result.bytes_changed = s?.transferredSize ?? 0;
    result.bytes_received = s?.bytesReceived ?? 0;
    if (backupDir && await exists(backupDir)) result.backup_dir = backupDir;
  } else {
    result.mode = "verify";
  }
  // A comparison is a verification only when the source held still during
  // it: the marker is written last on every server, so an unchanged marker
  // before and after means no push landed in between.
  let consistent = true;
  if (job.verifyEvery > 0) {
    const remoteAfter = await fetchMarker(job).catch(() => null);
    consistent = sameVersion(remoteBefore, remoteAfter) && sameVersion(remoteAfter, after);
  }
  if (consistent) result.verified_at = new Date().toISOString();
  else job.log.debug("source changed during the run; the next run verifies again");
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
  if (drift.extra.length > job.maxDelete) {
    throw new SafetyError(
      `refusing to sync ${job.dest}: it would delete ${drift.extra.length} entries, more than ` +
        `client.max_delete (${job.maxDelete}); nothing changed (is the source's tree complete? ` +
        `raise --max-delete to allow it)`,
    );
  }
}

// ---------------------------------------------------------------------------
// the in-place layout

/** Files in the state dir. */
const RECORD_FILE = "client-dest.json";
const DIRTY_FILE = "client.dirty";
const RSYNC_PID_FILE = "client-rsync.pid";
const PIN_FILE = "client-pin.json";

/**
 * The default layout: dest is updated in place with `--delay-updates`
 * (changed files land together at the end, deletions after them).
 */
export function inPlace(job: ClientJob): TreeLayout {
  return {
    current: async () => (await exists(job.dest)) ? job.dest : null,
    recover: async () => void await removeDelayDirs(job.dest),
    apply: async (_drift, ctx) => {
      if (ctx.state === "absent") await Deno.mkdir(job.dest, { recursive: true });
      if (ctx.state === "absent" || ctx.state === "empty") {
        await writeDestMarker(job.dest, "created");
      }
      return await transfer(job, {
        ...baseJob(job, job.dest),
        delete: true,
        delayUpdates: true,
        backupDir: ctx.backupDir ?? undefined,
        // Deletions after the new files are in place, so readers see the
        // tree change in one short burst; --max-delete is the backstop for
        // a source that changed since the comparison.
        extra: [...baseJob(job, job.dest).extra!, "--delete-delay"],
        maxDelete: job.maxDelete,
      });
    },
  };
}

/** The rsync job every client transfer starts from. */
export function baseJob(job: ClientJob, dest: string): RsyncJob {
  return {
    source: job.source,
    dest: dest + "/",
    timeout: job.timeout,
    connectTimeout: job.connectTimeout,
    itemize: true,
    // The destination marker is fanout's, never the source's: excluded, so
    // --delete leaves it alone and no server can supply or remove it.
    excludes: [`/${DEST_MARKER}`],
    // Compare mtimes to the nanosecond: two publishes within one second that
    // keep a file's size (the version marker always does) still differ.
    extra: ["--modify-window=-1"],
  };
}

/**
 * Runs a transfer that changes dest, with the dirty flag and rsync's pid
 * recorded, so a run killed in the middle is cleaned up by the next one.
 *
 * @throws {TransferError} when rsync fails; {@linkcode SafetyError} when the
 * `--max-delete` backstop stopped it.
 */
export async function transfer(job: ClientJob, rj: RsyncJob): Promise<RsyncResult> {
  await Deno.writeTextFile(`${job.stateDir}/${DIRTY_FILE}`, `${Date.now()}\n`);
  const pidFile = `${job.stateDir}/${RSYNC_PID_FILE}`;
  const r = await rsyncRun(job, { ...rj, progress: job.verbose }, {
    // The dest argument identifies the process later, should the pid be reused.
    onSpawn: (pid) => Deno.writeTextFileSync(pidFile, `${pid}\n${rj.dest}\n`),
    onStdout: job.verbose ? showProgress : undefined,
  });
  await Deno.remove(pidFile).catch(() => {});
  if (job.verbose) writeErr("\n");
  if (r.code === 25) {
    throw new SafetyError(
      `stopped deleting in ${job.dest} at client.max_delete (${job.maxDelete}): the source ` +
        `changed during the sync; the next run compares again`,
    );
  }
  failUnlessOk(job, r);
  await Deno.remove(`${job.stateDir}/${DIRTY_FILE}`).catch(() => {});
  return r;
}

/**
 * Recovers from a killed run; returns true when one was found (the next sync
 * must then walk the whole tree).
 */
async function recover(job: ClientJob, layout: TreeLayout): Promise<boolean> {
  await Deno.mkdir(job.stateDir, { recursive: true });
  const pidFile = `${job.stateDir}/${RSYNC_PID_FILE}`;
  let found = false;
  const [pidText, destArg] = (await Deno.readTextFile(pidFile).catch(() => "")).split("\n");
  const pid = Number(pidText);
  if (pid > 1 && destArg && await isRsyncInto(pid, destArg)) {
    // Its fanout was killed (SIGKILL, OOM) but the transfer runs on: two
    // rsyncs into one dest must never overlap.
    job.log.warn("stopping an rsync left running by a killed run", { pid });
    await stopGroup(pid, destArg);
    found = true;
  }
  await Deno.remove(pidFile).catch(() => {});
  if (await exists(`${job.stateDir}/${DIRTY_FILE}`)) {
    job.log.debug("cleaning up after an interrupted run", { dest: job.dest });
    await layout.recover();
    await Deno.remove(`${job.stateDir}/${DIRTY_FILE}`).catch(() => {});
    found = true;
  }
  return found;
}

async function isRsyncInto(pid: number, destArg: string): Promise<boolean> {
  try {
    const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    return /(^|\/)rsync$/.test(argv[0]) && argv.includes(destArg);
  } catch {
    return false;
  }
}

async function stopGroup(pid: number, destArg: string): Promise<void> {
  const isRsync = (p: number) => isRsyncInto(p, destArg);
  const kill = (sig: Deno.Signal) => {
    try {
      Deno.kill(-pid, sig);
    } catch { /* gone */ }
  };
  kill("SIGTERM");
  kill("SIGCONT"); // a stopped process acts on SIGTERM only once continued
  for (let i = 0; i < 40 && await isRsync(pid); i++) await sleep(50);
  kill("SIGKILL");
  for (let i = 0; i < 40 && await isRsync(pid); i++) await sleep(50);
}

/**
 * Removes every `.~tmp~` staging dir under `dir` (what a killed
 * `--delay-updates` transfer leaves: partial files no reader should see).
 */
export async function removeDelayDirs(dir: string): Promise<number> {
  let removed = 0;
  const walk = async (d: string): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory) continue;
      const p = `${d}/${e.name}`;
      if (e.name === DELAY_DIR) {
        await Deno.remove(p, { recursive: true }).catch(() => {});
        removed++;
      } else {
        await walk(p);
      }
    }
  };
  await walk(dir);
  return removed;
}

// ---------------------------------------------------------------------------
// compare

/**
 * Lists how `target` differs from the source (a dry run: nothing changes).
 * `adopt` keeps a `.git` out of the comparison (adoption drops it anyway).
 *
 * @throws {TransferError} when the source cannot be read.
 *
 * @example
 * ```ts
 * const drift = await compare(job, "/apps/dat/plugins");
 * if (driftCount(drift) === 0) console.log("in sync");
 * ```
 */
export async function compare(
  job: ClientJob,
  target: string,
  opts: { adopt?: boolean } = {},
): Promise<Drift> {
  const rj = baseJob(job, target);
  const r = await rsyncRun(job, {
    ...rj,
    delete: true,
    dryRun: true,
    excludes: [...rj.excludes!, ...(opts.adopt ? ["/.git"] : [])],
  });
  failUnlessOk(job, r);
  return { ...classify(r.items), sourceEntries: r.stats?.files ?? 0, server: serverOf(job.source) };
}

/**
 * Sorts itemized rsync lines into changed, missing and extra entries,
 * leaving out fanout's own files.
 *
 * @example
 * ```ts
 * classify([">f.st...... a.txt", "*deleting   b.txt"]);
 * // { changed: [{ path: "a.txt", kind: "file", what: ["size", "time"] }], missing: [], extra: [{ path: "b.txt", … }] }
 * ```
 */
export function classify(items: string[]): Omit<Drift, "sourceEntries" | "server"> {
  const out: Omit<Drift, "sourceEntries" | "server"> = { changed: [], missing: [], extra: [] };
  for (const line of items) {
    if (line.startsWith("*deleting")) {
      const path = line.slice(9).trimStart();
      if (ours(path)) continue;
      out.extra.push({ path, kind: path.endsWith("/") ? "dir" : "other" });
      continue;
    }
    const flags = line.slice(0, 11);
    let path = line.slice(12);
    const kind = ({ f: "file", d: "dir", L: "link" } as const)[flags[1]] ?? "other";
    if (kind === "link") path = path.replace(/ -> .*$/, "");
    if (ours(path)) continue;
    // The root's own mtime moves whenever fanout writes its marker: not drift.
    if (path === "./" && flags[0] === "." && flags.slice(2).replace(/[tT.]/g, "") === "") continue;
    if (flags.slice(2).startsWith("+++")) {
      out.missing.push({ path, kind });
    } else {
      out.changed.push({ path, kind, what: attrs(flags) });
    }
  }
  return out;
}

const ATTRS: [number, string, string][] = [
  [2, "c", "content"],
  [3, "s", "size"],
  [4, "t", "time"],
  [4, "T", "time"],
  [5, "p", "perms"],
  [6, "o", "owner"],
  [7, "g", "group"],
];

function attrs(flags: string): string[] {
  const what = ATTRS.filter(([i, ch]) => flags[i] === ch).map(([, , w]) => w);
  if (flags[0] === ">" && !what.includes("content") && !what.includes("size")) {
    what.unshift("content");
  }
  return what.length ? what : ["attributes"];
}

function ours(path: string): boolean {
  return path === DEST_MARKER || path.split("/").includes(DELAY_DIR);
}

// ---------------------------------------------------------------------------
// the version marker, the rollback pin

/**
 * Fetches only the source's `.fanout-version` (one small request); null when
 * the source has none.
 *
 * @throws {TransferError} when the source cannot be reached.
 */
export async function fetchMarker(job: ClientJob): Promise<VersionMarker | null> {
  const into = `${job.stateDir}/source-version`;
  await Deno.remove(into).catch(() => {});
  const r = await rsyncRun(job, {
    source: job.source + VERSION_MARKER,
    dest: into,
    timeout: Math.min(job.timeout, 30_000),
    connectTimeout: job.connectTimeout,
  });
  if (r.code === 23 && /No such file|change_dir|link_stat/.test(r.stderr)) return null;
  failUnlessOk(job, r);
  return parseMarker(await Deno.readTextFile(into).catch(() => ""));
}

/** True when both markers name the same publish (or both are absent). */
export function sameVersion(a: VersionMarker | null, b: VersionMarker | null): boolean {
  if (!a || !b) return a === b;
  return a.seq === b.seq && a.commit === b.commit && a.published_at === b.published_at;
}

/** A rollback pin: syncs stay off until the source has a version newer than `seq`. */
export interface Pin {
  /** The version rolled back from. */
  seq: number;
  /** When the rollback happened (ISO). */
  at: string;
}

/** Reads the rollback pin of the host with state dir `stateDir`, or null. */
export async function readPin(stateDir: string): Promise<Pin | null> {
  try {
    const p = JSON.parse(await Deno.readTextFile(`${stateDir}/${PIN_FILE}`));
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

// ---------------------------------------------------------------------------
// rsync, retries

async function rsyncRun(
  job: ClientJob,
  rj: RsyncJob,
  extra: { onSpawn?: (pid: number) => void; onStdout?: (line: string) => void } = {},
): Promise<RsyncResult> {
  if (job.signal?.aborted) throw interrupted(job);
  const r = await runRsync(rsyncArgs(rj), { rsync: job.rsync, signal: job.signal, ...extra });
  if (job.signal?.aborted) throw interrupted(job);
  return r;
}

function interrupted(job: ClientJob): TransferError {
  return new TransferError(
    `interrupted (${String(job.signal?.reason ?? "aborted")}); the next run completes the sync`,
    20,
  );
}

/** A failed rsync run; keeps rsync's stderr to tell connection failures apart. */
class RsyncFailure extends TransferError {
  readonly stderr: string;
  readonly detail: string;
  constructor(source: string, r: Pick<RsyncResult, "code" | "stderr">) {
    const detail = describeRsyncFailure(r);
    super(`${source}: ${detail}`, r.code);
    this.stderr = r.stderr;
    this.detail = detail;
  }
}

function failUnlessOk(job: ClientJob, r: Pick<RsyncResult, "code" | "stderr">): void {
  if (r.code !== 0) throw new RsyncFailure(job.source, r);
}

/**
 * True for failures a new connection may fix: refused or reset connections,
 * timeouts, a server at its connection limit or one that hung up.
 *
 * @example
 * ```ts
 * isConnectionFailure(10, "failed to connect to 10.0.0.3: Connection refused"); // true
 * isConnectionFailure(5, "@ERROR: Unknown module 'plugns'"); // false
 * ```
 */
export function isConnectionFailure(code: number | null, stderr: string): boolean {
  if (code === 10 || code === 12 || code === 30 || code === 35) return true;
  return code === 5 &&
    /max connections|try again later|did not see server greeting|connection unexpectedly closed|Connection reset/i
      .test(stderr);
}

/** The default backoff: 1 s, 2 s, 4 s… at most 30 s, with ±20% jitter. */
export function defaultBackoff(n: number): number {
  const base = Math.min(1000 * 2 ** (n - 1), 30_000);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Runs `fn`, retrying connection failures (see {@linkcode isConnectionFailure})
 * up to `job.retries` times with backoff; `what` names the step in the error.
 *
 * @throws {TransferError} when the last attempt fails too, or at once for
 * any other failure.
 */
export async function retrying<T>(job: ClientJob, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (
        !(e instanceof RsyncFailure) || job.signal?.aborted ||
        !isConnectionFailure(e.rsyncCode, e.stderr)
      ) throw e;
      if (attempt >= job.retries) {
        throw new TransferError(
          `cannot ${what} from ${job.source} (${attempt + 1} attempt${
            attempt ? "s" : ""
          }): ${e.detail}; dest unchanged`,
          e.rsyncCode,
        );
      }
      const wait = (job.backoff ?? defaultBackoff)(attempt + 1);
      job.log.debug("connection failed; retrying", { error: e.message, in_ms: wait });
      if (!(await sleep(wait, job.signal))) throw interrupted(job);
    }
  }
}

/** `host:port` of an rsync URL. */
export function serverOf(url: string): string {
  const m = /^rsync:\/\/(?:[^@/]*@)?([^/]+)/.exec(url);
  if (!m) return url;
  return /:\d+$/.test(m[1]) ? m[1] : `${m[1]}:873`;
}

// ---------------------------------------------------------------------------
// small things

/** `2026-11-25T21-42-55.004Z`: a sortable time usable in a path. */
export function stamp(d: Date): string {
  return d.toISOString().replaceAll(":", "-");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

const enc = new TextEncoder();

function writeErr(s: string): void {
  try {
    Deno.stderr.writeSync(enc.encode(s));
  } catch { /* stderr gone */ }
}

const PROGRESS = /[\d,]+\s+\d+%\s+\S+\s+\S+(?:\s+\(xfr#\d+, \w+-chk=\d+\/\d+\))?/;

function showProgress(line: string): void {
  const m = PROGRESS.exec(line);
  if (m) writeErr(`\r${m[0]}   `);
}

/** Re-exported for the role: the stats of a transfer. */
export type { RsyncStats };
