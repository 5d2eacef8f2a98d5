/**
 * The push engine: keeps every downstream replica identical to this host's
 * tree. Each replica has its own pending change set and its own state
 * machine, so a slow or dead replica never holds the others back:
 *
 * ```
 *   idle ──work pending──▶ pushing ──ok, nothing pending──▶ idle
 *                            │  ▲ └──ok, more pending──────┘ (next push at once)
 *          transfer failed   │  │ retry timer (full push)
 *                            ▼  │
 *                          backoff
 *   pushing ──would delete more than max_delete──▶ refused ──new change, reconcile──▶ pushing
 * ```
 *
 * Deletions seen by the watcher pass the mass-delete guard first
 * (lib/push/delete_guard.ts): held a moment, counted over a window, blocked when
 * they look like an accident. While it holds or blocks, runs delete nothing
 * outside their own paths; new and changed files still go at once.
 *
 * An idle engine pushes at once; changes that arrive during a push are
 * batched into the next one. Small change sets push only the changed paths
 * (see filter.ts); large or unknown ones the whole tree. A version marker
 * goes last, from a snapshot taken when the push began, and only behind a
 * run that covers its whole version: the whole tree, or the paths the
 * version log says changed since the version the replica acknowledged and
 * still shows. So a replica's marker never claims more than it was sent.
 *
 * @module
 */

import {
  type Change,
  changesBetween,
  ChangeSet,
  LOG_READ_MAX_BYTES,
  parseLog,
  parseMarker,
  stampMarker,
  type VersionMarker,
  type Work,
} from "../version/mod.ts";
import type { PushConfig } from "../config/mod.ts";
import {
  existsNow,
  formatDuration,
  type Logger,
  readSmallFile,
  readTextOrNull,
  receivingSince,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  Semaphore,
  SERVER_TEMP_DIR,
  VERSION_FILES,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import type { Registry } from "../health/mod.ts";
import {
  ENVELOPE_MAX_BYTES,
  MANIFEST_LIMITS,
  manifestDigest,
  markerMismatch,
  readEnvelope,
} from "../release/mod.ts";
import { filterRules, unfilterable } from "./filter.ts";
import {
  describeRsyncFailure,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  runRsync,
  writeFileList,
} from "../rsync/mod.ts";
import { DeleteGuard, type GuardState, massDeleteReason } from "./delete_guard.ts";

/** A replica to push to. */
export interface PushTarget {
  name: string;
  /** `rsync://user@host:port/write-module/` */
  url: string;
}

/** Options of {@linkcode PushEngine}. */
export interface PushEngineOptions {
  /** Absolute path of the tree pushed from. */
  source: string;
  targets: PushTarget[];
  push: PushConfig;
  rsync: { path: string; timeout: number; connectTimeout: number };
  /** This host's address: pushes leave from it (`--address`). */
  address: string;
  passwordFile: string;
  /** Scratch space for filter files and marker snapshots. */
  workDir: string;
  log: Logger;
  registry: Registry;
  /** Let pushes delete past max_delete until every replica has synced once. */
  allowMassDelete?: boolean;
  /**
   * The longest pushes wait for a landing transfer's marker (ms; default
   * {@linkcode LANDING_MAX_MS}).
   */
  landingMaxMs?: number;
  /** The wall clock (ms since the epoch) the temp dir's times are read against; default `Date.now` (tests step it). */
  clock?: () => number;
}

/** The mass-delete guard, as `/status` shows it (`push_guard`). */
export interface GuardStatus {
  /** pushing, holding (deletions wait for quiet) or blocked (a mass deletion is suspected). */
  state: GuardState;
  /** Deletions held now. */
  held: number;
  /** Net deletions within push.delete_window, the held ones included. */
  net_deletions: number;
  /** Net entries lost since the last publish (or start), the held ones included. */
  lost_since_publish: number;
  /** Entries of the tree at its last whole push, or null before one. */
  tree_entries: number | null;
  /** True while a publish or --allow-mass-delete lifts the limits. */
  lifted: boolean;
  /** Why deletions are blocked, or null. */
  reason: string | null;
}

/** A replica's state, as `/status` shows it. */
export type ReplicaState = "idle" | "pushing" | "backoff" | "refused";

/** What `/status` reports per replica. */
export interface ReplicaStatus {
  name: string;
  /** ok, pushing, failing or refused. */
  state: "ok" | "pushing" | "failing" | "refused";
  /** The version marker the replica acknowledged (last pushed), or null. */
  version: VersionMarker | null;
  /** Seconds its oldest unpushed change has waited (0 when in sync). */
  lag_s: number;
  pending_paths: number;
  pending_full: string | null;
  failures: number;
  last_success: string | null;
  last_error: string | null;
  next_retry: string | null;
  last_push:
    | { kind: PushPlan["kind"]; ms: number; files: number; deleted: number; bytes: number }
    | null;
}

/**
 * How one run picks its paths: the whole tree; filter rules (deletions,
 * new directories); or a plain list of paths that all exist.
 */
type Scope = "full" | "filter" | "list";

const HISTOGRAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

class Replica {
  state: ReplicaState = "idle";
  pending: ChangeSet;
  failures = 0;
  lastSuccess: number | null = null;
  lastError: string | null = null;
  nextRetry: number | null = null;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  ack: VersionMarker | null = null;
  ackText: string | null = null;
  lastPush: ReplicaStatus["last_push"] = null;
  /** Entries that recent scoped runs created: a move's new half, offsetting its held old half. */
  recentCreated: { at: number; n: number }[] = [];
  synced = false;
  inFlight: Promise<void> | null = null;
  inFlightSince: number | null = null;
  constructor(readonly target: PushTarget, maxPaths: number) {
    this.pending = new ChangeSet(maxPaths);
  }
}

/**
 * A replica's state as `/status` names it. A retry of a failed push is
 * still "failing" until one succeeds: a replica that is down retries every
 * few seconds, and showing "pushing" for each attempt would make it look
 * healthy for a moment each time (in the fleet view and the metrics too).
 */
function shownState(r: Replica): ReplicaStatus["state"] {
  if (r.state === "refused") return "refused";
  // Failing until a push succeeds: in backoff, retrying, or a retry whose
  // kick waits (a transfer landing in the source holds pushes back).
  if (r.failures > 0) return "failing";
  return r.state === "idle" ? "ok" : "pushing";
}

/**
 * Pushes a tree to its replicas.
 *
 * @example
 * ```ts
 * const engine = new PushEngine({ source, targets, push: fleet.push, rsync: fleet.rsync,
 *   address: self.address, passwordFile: fleet.auth.passwordFile, workDir, log, registry });
 * engine.start();                  // full push to every replica
 * engine.notify([{ path: "a.txt", deep: false }]);
 * await engine.stop();
 * ```
 */
export class PushEngine {
  #o: PushEngineOptions;
  #replicas: Replica[];
  #sem: Semaphore;
  #abort = new AbortController();
  #stopped = false;
  #problem: string | null = null;
  #guardTimer: ReturnType<typeof setInterval> | undefined;
  #reconcileTimer: ReturnType<typeof setInterval> | undefined;
  #debounce: { timer: ReturnType<typeof setTimeout>; first: number } | null = null;
  /** Pushes wait while a transfer lands in the source: since `first` (monotonic ms), looked at again by `timer`. */
  #landing: { first: number; timer?: ReturnType<typeof setTimeout> } | null = null;
  #allowMassDelete: boolean;
  /** A publish's lift ends here (ms), even if a replica never gets its whole push. */
  #liftEnds: number | null = null;
  #guard: DeleteGuard;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  #restoreTimer: ReturnType<typeof setInterval> | undefined;
  /** A whole push ran without deleting while the guard held: one is owed once it lets go. */
  #deletesOwed = false;
  /** The version marker last seen in the source (undefined before the first look). */
  #marker: string | null | undefined = undefined;
  /** Whether this source ever had a version marker or pushed content (a file in workDir). */
  #seenVersion: boolean | null = null;
  #m;

  constructor(opts: PushEngineOptions) {
    this.#o = opts;
    this.#replicas = opts.targets.map((t) => new Replica(t, opts.push.maxPaths));
    this.#sem = new Semaphore(opts.push.concurrency);
    this.#allowMassDelete = opts.allowMassDelete ?? false;
    this.#guard = new DeleteGuard({
      maxDelete: opts.push.maxDelete,
      maxDeletePercent: opts.push.maxDeletePercent,
      hold: opts.push.deleteHold,
      window: opts.push.deleteWindow,
    });
    this.#guard.allowed = this.#allowMassDelete;
    const r = opts.registry;
    this.#m = {
      pushes: r.counter(
        "fanout_pushes_total",
        "Pushes to replicas, by kind (scoped, full) and result.",
      ),
      failures: r.counter("fanout_push_failures_total", "Failed pushes, by replica."),
      refused: r.counter(
        "fanout_push_refused_total",
        "Pushes refused by the max_delete guard, by replica.",
      ),
      bytes: r.counter("fanout_push_bytes_total", "Bytes sent to replicas, by replica."),
      files: r.counter("fanout_push_files_total", "Files transferred to replicas, by replica."),
      duration: r.histogram(
        "fanout_push_duration_seconds",
        "Push duration (tree and marker), by kind.",
        HISTOGRAM_BUCKETS,
      ),
    };
    r.gauge(
      "fanout_replica_lag_seconds",
      "Age of the oldest change not yet on the replica.",
      () => this.status().map((s) => [{ replica: s.name }, s.lag_s]),
    );
    r.gauge(
      "fanout_replica_version_seq",
      "seq of the version marker the replica acknowledged.",
      () => this.status().map((s) => [{ replica: s.name }, s.version?.seq ?? -1]),
    );
    r.gauge(
      "fanout_replica_failing",
      "1 while pushes to the replica fail or are refused.",
      () =>
        this.status().map((
          s,
        ) => [{ replica: s.name }, s.state === "failing" || s.state === "refused" ? 1 : 0]),
    );
  }

  /** Starts with a full push to every replica and schedules the reconcile. */
  start(): void {
    for (const r of this.#replicas) r.pending.markFull("start");
    this.#reconcileTimer = setInterval(() => this.requestFull("reconcile"), this.#o.push.reconcile);
    this.#kickAll();
  }

  /**
   * Changes seen by the watcher: queued for every replica, but deletions
   * pass the mass-delete guard first.
   */
  notify(changes: Change[]): void {
    if (this.#stopped || changes.length === 0) return;
    const now = Date.now();
    const deletions = changes.filter((c) => c.gone);
    const rest = deletions.length ? changes.filter((c) => !c.gone) : changes;
    this.#guard.created(rest.filter((c) => c.created).length, now);
    if (deletions.length) {
      this.#lifted(); // a publish's lift may have run out
      this.#guard.hold(deletions, now);
      this.#stepGuard();
    }
    if (rest.length === 0) return;
    for (const r of this.#replicas) r.pending.add(rest);
    this.#kickSoon();
  }

  /** The mass-delete guard's state, for `/status`. */
  guardStatus(): GuardStatus {
    return {
      state: this.#guard.state,
      held: this.#guard.held,
      net_deletions: this.#guard.net(Date.now()),
      lost_since_publish: this.#guard.lost,
      tree_entries: this.#guard.entries,
      lifted: this.#lifted(),
      reason: this.#guard.reason,
    };
  }

  /** Releases held deletions when due, or waits, or reports a block (once). */
  #stepGuard(): void {
    clearTimeout(this.#holdTimer);
    if (this.#stopped) return;
    const step = this.#guard.step(Date.now());
    if (step.kind === "wait") {
      this.#holdTimer = setTimeout(() => this.#stepGuard(), step.ms);
    } else if (step.kind === "release") {
      for (const r of this.#replicas) r.pending.add(step.changes);
      if (this.#deletesOwed) this.requestFull("deletions held during a whole push");
      this.#deletesOwed = false;
      this.#kickSoon();
    } else if (step.kind === "blocked" && this.#restoreTimer === undefined) {
      this.#o.log.error("mass deletion suspected: deletions held, not pushed", {
        reason: step.reason,
        held: this.#guard.held,
      });
      // Files put back lift the block by themselves; a publish or the flag lifts it too.
      this.#restoreTimer = setInterval(() => {
        const exists = (p: string) => existsNow(`${this.#o.source}/${p}`);
        if (!this.#guard.restored(exists, Date.now())) return;
        this.#endBlock("the files are back");
      }, 1000);
    }
  }

  #endBlock(why: string): void {
    clearInterval(this.#restoreTimer);
    this.#restoreTimer = undefined;
    this.#o.log.info("mass-delete guard lifted", { why });
    this.#stepGuard();
  }

  /**
   * Notes the marker read at the start of a push. A new one while running is
   * a publish: a deliberate change of the tree, which lifts the guard (held
   * deletions go, pushes may delete past the limits until every replica has
   * the new version).
   */
  #sawMarker(text: string | null): void {
    const before = this.#marker;
    this.#marker = text;
    if (text !== null) void this.#noteVersion();
    if (before === undefined || text === null || text === before) return;
    const held = this.#guard.lift();
    const blocked = this.#restoreTimer !== undefined ||
      this.#replicas.some((r) => r.state === "refused");
    this.#allowMassDelete = true;
    this.#guard.allowed = true;
    this.#liftEnds = Date.now() + this.#o.push.deleteWindow;
    for (const r of this.#replicas) {
      r.synced = false;
      if (held.length) r.pending.add(held);
    }
    if (blocked) this.#endBlock("publish");
    this.#deletesOwed = false;
    clearTimeout(this.#holdTimer);
  }

  /**
   * True while the limits are lifted: by the flag, until every replica has
   * had a whole push; by a publish, until every replica has had a whole push
   * or a version push of the new marker, for one delete_window at most
   * (a replica down for a day must not keep the guard off for a day).
   */
  #lifted(): boolean {
    if (this.#allowMassDelete && this.#liftEnds !== null && Date.now() > this.#liftEnds) {
      this.#endLift();
    }
    return this.#allowMassDelete;
  }

  /** The limits apply again. */
  #endLift(): void {
    this.#allowMassDelete = false;
    this.#guard.allowed = false;
    this.#liftEnds = null;
  }

  /** Remembers (in workDir) that this source has had a version, or content pushed. */
  async #noteVersion(): Promise<void> {
    if (this.#seenVersion) return;
    this.#seenVersion = true;
    await Deno.writeTextFile(`${this.#o.workDir}/seen-version`, "").catch(() => {});
  }

  #everVersioned(): boolean {
    this.#seenVersion ??= existsNow(`${this.#o.workDir}/seen-version`);
    return this.#seenVersion;
  }

  /** Asks for a full push to every replica (overflow, storm, reconcile, fallback). */
  requestFull(reason: string): void {
    if (this.#stopped) return;
    for (const r of this.#replicas) r.pending.markFull(reason);
    this.#kickSoon();
  }

  /** Why nothing is being pushed (empty or vanished source, a mass deletion), or null. */
  problem(): string | null {
    if (this.#problem) return this.#problem;
    const blocked = this.#guard.reason;
    if (blocked) {
      return `mass deletion suspected, deletions held (${blocked}); new and changed files ` +
        "still go; put the files back, publish, or restart with --allow-mass-delete";
    }
    const refused = this.#replicas.find((r) => r.state === "refused");
    return refused ? `push to ${refused.target.name} refused: ${refused.lastError}` : null;
  }

  /** Per-replica status for `/status`. */
  status(): ReplicaStatus[] {
    const now = Date.now();
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return this.#replicas.map((r) => {
      const since = r.pending.since ?? (r.state === "pushing" ? r.inFlightSince : null);
      return {
        name: r.target.name,
        state: shownState(r),
        version: r.ack,
        lag_s: since === null || since === undefined ? 0 : Math.round((now - since) / 100) / 10,
        pending_paths: r.pending.size,
        pending_full: r.pending.fullReason,
        failures: r.failures,
        last_success: iso(r.lastSuccess),
        last_error: r.lastError,
        next_retry: iso(r.nextRetry),
        last_push: r.lastPush,
      };
    });
  }

  /** Stops pushing: kills transfers in flight and waits for them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#reconcileTimer);
    clearInterval(this.#guardTimer);
    clearInterval(this.#restoreTimer);
    clearTimeout(this.#holdTimer);
    clearTimeout(this.#landing?.timer);
    if (this.#debounce) clearTimeout(this.#debounce.timer);
    for (const r of this.#replicas) clearTimeout(r.retryTimer);
    this.#abort.abort();
    await Promise.all(this.#replicas.map((r) => r.inFlight));
  }

  /** Kicks now, or after the debounce when one is configured. */
  #kickSoon(): void {
    const { debounce, maxDelay } = this.#o.push;
    if (debounce <= 0) return this.#kickAll();
    const now = Date.now();
    const first = this.#debounce?.first ?? now;
    if (this.#debounce) clearTimeout(this.#debounce.timer);
    const wait = Math.max(0, Math.min(debounce, first + maxDelay - now));
    this.#debounce = {
      first,
      timer: setTimeout(() => {
        this.#debounce = null;
        this.#kickAll();
      }, wait),
    };
  }

  #kickAll(): void {
    for (const r of this.#replicas) this.#kick(r);
  }

  /**
   * Whether pushes wait, because a transfer is landing in the source (a
   * publish, an upstream's push: each path goes through the temp dir) and
   * its marker is not there yet. The version push that follows the marker
   * sends the version's paths once; pushing each path's events first would
   * put one or two pushes ahead of it. The wait ends once the temp dir has
   * been quiet for {@linkcode LANDING_QUIET_MS}, the marker is new to a
   * replica, or {@linkcode LANDING_MAX_MS} after it began; while it lasts,
   * the engine looks again every {@linkcode LANDING_RECHECK_MS}.
   */
  #heldForLanding(): boolean {
    if (this.#stopped) return false;
    const wall = (this.#o.clock ?? Date.now)();
    if (!receivingSince(this.#o.source, wall - LANDING_QUIET_MS)) {
      clearTimeout(this.#landing?.timer);
      this.#landing = null;
      return false;
    }
    // The wait is timed on the monotonic clock: a wall clock stepped back
    // would stretch it by the step. Only file times need the wall clock.
    const now = performance.now();
    const first = this.#landing?.first ?? now;
    if (now - first >= (this.#o.landingMaxMs ?? LANDING_MAX_MS) || this.#versionDue()) {
      // The landing goes on (the marker's own transfer, or one that never
      // ends): no second wait until the temp dir is quiet.
      clearTimeout(this.#landing?.timer);
      this.#landing = { first };
      return false;
    }
    if (this.#landing?.timer === undefined) {
      this.#landing = {
        first,
        timer: setTimeout(() => {
          this.#landing = { first };
          this.#kickAll();
        }, LANDING_RECHECK_MS),
      };
    }
    return true;
  }

  /**
   * Whether the source's marker is one a replica that takes pushes has not
   * acknowledged. A replica failing or refused is left out: it acknowledges
   * no marker, and would end every wait for every other replica.
   */
  #versionDue(): boolean {
    const text = readSmallFile(`${this.#o.source}/${VERSION_MARKER}`, MARKER_READ_MAX_BYTES);
    return text !== null &&
      this.#replicas.some((r) => r.failures === 0 && r.state !== "refused" && r.ackText !== text);
  }

  #kick(r: Replica): void {
    if (this.#stopped || this.#problem) return;
    if (r.state === "pushing" || r.state === "backoff") return;
    if (r.pending.empty || this.#heldForLanding()) return;
    r.state = "pushing";
    r.inFlightSince = r.pending.since ?? Date.now();
    r.inFlight = this.#drain(r);
  }

  /** Pushes until the replica's pending set is empty, or a push fails. */
  async #drain(r: Replica): Promise<void> {
    const release = await this.#sem.acquire();
    try {
      while (!this.#stopped && !this.#heldForLanding()) {
        const work = r.pending.take();
        if (!work) break;
        r.inFlightSince = work.since;
        const problem = await sourceProblem(this.#o.source, this.#everVersioned());
        if (problem) {
          this.#block(problem, r, work);
          return;
        }
        const outcome = await this.#pushOnce(r, work);
        if (outcome !== "ok") return;
      }
      if (r.state === "pushing") r.state = "idle";
    } finally {
      release();
      r.inFlightSince = null;
      if (r.state === "pushing") r.state = "idle";
      // Work that arrived while the last push ran, after the loop looked.
      if (r.state === "idle" && !r.pending.empty && !this.#stopped) {
        queueMicrotask(() => this.#kick(r));
      }
    }
  }

  /** One push of `work`; returns how it ended (the state is already set). */
  async #pushOnce(r: Replica, asked: Work): Promise<"ok" | "failed" | "refused"> {
    const t0 = performance.now();
    const markerText = await readTextOrNull(`${this.#o.source}/${VERSION_MARKER}`);
    this.#sawMarker(markerText);
    const versionChanges = this.#versionChanges(r, markerText);
    const work = versionFirst(r, asked, versionChanges);
    const plan = planPush(work, markerText, r.ackText, versionChanges);
    // The version files travel with their version (a version or whole push
    // sends the log, the marker goes after the tree): a push of only their
    // events would cost a connection after every version and send nothing
    // a replica uses.
    if (plan.kind === "scoped" && plan.changes.every((c) => VERSION_OWN.has(c.path))) return "ok";
    // A version push holds only for a replica still at the version it
    // acknowledged: its marker is read while the paths go.
    const held = plan.kind === "version" ? this.#replicaMarker(r).catch(() => null) : null;
    try {
      const how = await scopeOf(this.#o.source, plan);
      const result = await this.#treeRun(r, work, how, plan.changes);
      if (typeof result === "string") return result;
      if (result.code !== 0 && result.code !== 24) {
        return this.#failed(r, work, describeRsyncFailure(result));
      }
      const marker = markerText === null ? null : parseMarker(markerText);
      if (held && await held !== r.ackText) return this.#lostVersion(r, plan, result, t0);
      if (markerText !== null && plan.kind !== "scoped") {
        const m = await this.#pushMarker(r, markerText);
        if (m === "unsettled") {
          // A publish is landing: its marker's event brings the next push.
          this.#o.log.debug("marker held back: the release files are of another version", {
            replica: r.target.name,
          });
        } else if (m.code !== 0) return this.#failed(r, work, describeRsyncFailure(m));
        else {
          r.ack = marker;
          r.ackText = markerText;
        }
      }
      return this.#pushed(r, plan, result, marker, performance.now() - t0);
    } catch (e) {
      if (this.#stopped) return "failed";
      return this.#failed(r, work, (e as Error).message);
    }
  }

  /**
   * A version push to a replica that no longer shows the version it
   * acknowledged (its tree lost or replaced): its paths went, its marker
   * does not; the whole tree follows at once.
   */
  #lostVersion(r: Replica, plan: PushPlan, result: RsyncResult, t0: number): "ok" {
    this.#o.log.info("replica not at the version it acknowledged: pushing the whole tree", {
      replica: r.target.name,
      acknowledged: r.ack?.seq,
    });
    r.ack = null;
    r.ackText = null;
    r.pending.markFull("replica not at its acknowledged version");
    return this.#pushed(r, { ...plan, kind: "scoped" }, result, null, performance.now() - t0);
  }

  /**
   * The paths of the versions between the replica's acknowledged marker and
   * `markerText` by the source's version log; null when there is no new
   * version, the log cannot say, or it names more than push.max_paths with
   * a deletion among them (each path is then a filter rule rsync tries on
   * every entry it meets: past that, the whole tree costs less, as for any
   * change set); without one, they go as a list (a stat each), up to
   * {@linkcode LIST_PATHS_FACTOR} times as many.
   */
  #versionChanges(r: Replica, markerText: string | null): Change[] | null {
    if (markerText === null || r.ackText === null || markerText === r.ackText) return null;
    const log = readSmallFile(`${this.#o.source}/${VERSION_LOG}`, LOG_READ_MAX_BYTES);
    const changes = versionChanges(log, r.ackText, markerText);
    if (changes === null) return null;
    const max = this.#o.push.maxPaths * (changes.some((c) => c.deep) ? 1 : LIST_PATHS_FACTOR);
    return changes.length > max ? null : changes;
  }

  /** The marker the replica's tree holds now, read through its write module; null when none. */
  async #replicaMarker(r: Replica): Promise<string | null> {
    const dir = `${this.#o.workDir}/${r.target.name}.held`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const job = this.#job(r, {
      source: `${r.target.url}${VERSION_MARKER}`,
      dest: `${dir}/`,
      tempDir: undefined,
      sparse: false,
      extra: [`--max-size=${MARKER_READ_MAX_BYTES}`],
    });
    const got = await runRsync(rsyncArgs(job), {
      rsync: this.#o.rsync.path,
      signal: this.#abort.signal,
    });
    return got.code === 0 ? readSmallFile(`${dir}/${VERSION_MARKER}`, MARKER_READ_MAX_BYTES) : null;
  }

  /**
   * The tree run in scope `how`. A list fails with 23 when a path went away
   * since the check (its event follows); the filter rules deal with a missing
   * path, so the push goes on with them.
   */
  async #treeRun(
    r: Replica,
    work: Work,
    how: Scope,
    changes: Change[],
  ): Promise<RsyncResult | "refused" | "failed"> {
    const result = await this.#guardedRun(r, work, how, changes);
    if (how === "list" && typeof result !== "string" && result.code === 23) {
      return await this.#guardedRun(r, work, "filter", changes);
    }
    return result;
  }

  /** Records a push that landed in `ms` (tree, and marker when it went); returns "ok". */
  #pushed(
    r: Replica,
    plan: PushPlan,
    result: RsyncResult,
    marker: VersionMarker | null,
    ms: number,
  ): "ok" {
    const push = lastPushOf(plan.kind, ms, result);
    r.lastPush = push;
    r.lastSuccess = Date.now();
    r.lastError = null;
    // The tree held content: never again a fresh host waiting for a publish.
    void this.#noteVersion();
    if (r.failures > 0) {
      this.#o.log.info("replica back", { replica: r.target.name, after_failures: r.failures });
    }
    r.failures = 0;
    r.nextRetry = null;
    // A version push that landed its marker brings the replica to the new
    // version as a whole push does: a publish's lift ends with the last one.
    const whole = plan.kind === "full" ||
      (plan.kind === "version" && marker !== null && r.ack === marker);
    if (plan.kind === "version" && whole) this.#guard.rebase();
    if (r.synced === false && whole) {
      r.synced = true;
      if (this.#allowMassDelete && this.#replicas.every((x) => x.synced)) this.#endLift();
    }
    this.#m.pushes.inc({ replica: r.target.name, kind: plan.kind, result: "ok" });
    this.#m.duration.observe(ms / 1000, { kind: plan.kind });
    this.#m.bytes.inc({ replica: r.target.name }, push.bytes);
    this.#m.files.inc({ replica: r.target.name }, push.files);
    this.#o.log.info("pushed", {
      replica: r.target.name,
      kind: plan.kind,
      reason: plan.reason,
      files: push.files,
      deleted: push.deleted,
      bytes: push.bytes,
      version: plan.kind !== "scoped" ? marker?.seq : undefined,
      ms: push.ms,
    });
    return "ok";
  }

  /**
   * The tree run, behind the net-deletion guard: unless mass deletes are
   * allowed, a dry run counts what would go and the push is refused past
   * push.max_delete. "refused" or "failed" when it ended there (the state is
   * already set).
   */
  async #guardedRun(
    r: Replica,
    work: Work,
    how: Scope,
    changes: Change[],
  ): Promise<RsyncResult | "refused" | "failed"> {
    const guard = this.#lifted() ? null : this.#o.push.maxDelete;
    // The real run still caps deletions (rsync --max-delete), in case the
    // source lost files between the dry run and now: at what the dry run
    // counted, plus the guard's slack. A list deletes nothing.
    let cap = guard ?? undefined;
    if (guard !== null && how !== "list") {
      // Deletions balanced by new entries are a move, not a loss: a renamed
      // directory deletes N entries and creates N. Only the net is guarded.
      const dry = await this.#rsync(r, how, changes, { dryRun: true, itemize: true });
      if (dry.code !== 0 && dry.code !== 24) {
        return this.#failed(r, work, describeRsyncFailure(dry));
      }
      const deletes = dry.deleted;
      // A moved directory's new name went at once and its old one after the
      // hold: what recent scoped runs created offsets what this one deletes.
      const creates = dry.created + (how === "filter" ? this.#recentlyCreated(r) : 0);
      // A whole run's file count is the tree's; a scoped one counts only its paths.
      const entries = how === "full" && dry.stats
        ? dry.stats.files + deletes - creates
        : this.#guard.entries;
      const why = massDeleteReason(
        deletes - creates,
        guard,
        this.#o.push.maxDeletePercent,
        entries,
      ) ?? this.#slowLoss(how, deletes - creates, dry.stats?.files);
      if (why) return this.#refuse(r, work, deletes, creates, why);
      cap = deletes + guard;
    }
    const result = await this.#rsync(r, how, changes, { maxDelete: cap, itemize: true });
    if (how === "full" && result.code === 0 && result.stats) {
      this.#guard.entries = result.stats.files;
    }
    if (how !== "full" && result.created > 0) {
      r.recentCreated.push({ at: Date.now(), n: result.created });
    }
    return result;
  }

  /**
   * Why a whole run that deletes would take the tree's loss since the last
   * publish past the limits (deletions the watcher never saw add up too), or null.
   */
  #slowLoss(how: Scope, net: number, files: number | undefined): string | null {
    if (how !== "full" || net <= 0 || files === undefined) return null;
    const why = massDeleteReason(
      this.#guard.lossAt(files),
      this.#o.push.maxDelete,
      this.#o.push.maxDeletePercent,
      this.#guard.baseline,
    );
    return why && `${why} since the last publish`;
  }

  /** Entries scoped runs created on `r` within the longest hold (11× push.delete_hold). */
  #recentlyCreated(r: Replica): number {
    const since = Date.now() - 11 * this.#o.push.deleteHold;
    r.recentCreated = r.recentCreated.filter((e) => e.at >= since);
    return r.recentCreated.reduce((sum, e) => sum + e.n, 0);
  }

  /** The tree run (or its dry run) for one replica. */
  #rsync(
    r: Replica,
    how: Scope,
    changes: Change[],
    extra: Partial<RsyncJob>,
  ): Promise<RsyncResult> {
    // While the guard holds deletions, a whole run deletes nothing (one is
    // owed once it lets go); a scoped run deletes only among its own paths.
    const deleting = how === "filter" || (how === "full" && this.#guard.state === "pushing");
    if (how === "full" && !deleting && !extra.dryRun) this.#deletesOwed = true;
    const job = this.#job(r, {
      // rsync refuses --delete without recursion, and a list has nothing to delete.
      delete: deleting,
      // A renamed file's old name goes only once the new one is in place.
      deleteDelay: true,
      delayUpdates: !extra.dryRun,
      // The marker and the release files that vouch for it travel together, last.
      excludes: [
        ...VERSION_FILES.map((f) => `/${f}`),
        ".~tmp~/",
        `/${SERVER_TEMP_DIR}/`,
        ...this.#o.push.exclude,
      ],
      ...extra,
    });
    return (async () => {
      if (how === "list") {
        const file = `${this.#o.workDir}/${r.target.name}.list`;
        const paths = new Set(changes.map((c) => c.path));
        await writeFileList(file, paths);
        job.filesFrom = file;
      } else if (how === "filter") {
        const file = `${this.#o.workDir}/${r.target.name}.filter`;
        // Collapsed rules would take a whole directory, held deletions with it.
        const collapse = this.#guard.state === "pushing";
        await Deno.writeTextFile(file, filterRules(changes, { collapse }).join("\0") + "\0");
        // --from0 must come first: rsync reads the include file when it meets the option.
        job.extra = [...(extra.extra ?? []), "--from0", `--include-from=${file}`, "--exclude=*"];
      }
      return await runRsync(rsyncArgs(job), {
        rsync: this.#o.rsync.path,
        signal: this.#abort.signal,
        keepItems: false,
      });
    })();
  }

  /**
   * Sends the marker snapshot taken when the push began, with the release
   * files (manifest and signed envelope) of that same version, so a replica
   * never holds a marker and an envelope that disagree; where the source has
   * none (an unsigned fleet) the replica's go too. "unsettled" when the
   * source's release files are already of another version: nothing is sent.
   */
  async #pushMarker(r: Replica, text: string): Promise<RsyncResult | "unsettled"> {
    const dir = `${this.#o.workDir}/${r.target.name}.marker`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const release = await snapshotRelease(this.#o.source, dir, parseMarker(text));
    if (release === "unsettled") return "unsettled";
    await Deno.writeTextFile(`${dir}/${VERSION_MARKER}`, text);
    // The publisher's stamp, kept: clients read a scan's version from it.
    stampMarker(`${dir}/${VERSION_MARKER}`);
    const job = this.#job(r, {
      source: `${dir}/`,
      // Only these names are in scope, so --delete removes just a stale
      // envelope or manifest the source no longer has.
      delete: true,
      extra: [
        `--include=/${VERSION_MARKER}`,
        `--include=/${RELEASE_MANIFEST}`,
        `--include=/${RELEASE_ENVELOPE}`,
        "--exclude=*",
      ],
    });
    return await runRsync(rsyncArgs(job), {
      rsync: this.#o.rsync.path,
      signal: this.#abort.signal,
    });
  }

  #job(r: Replica, over: Partial<RsyncJob>): RsyncJob {
    return {
      source: `${this.#o.source}/`,
      dest: r.target.url,
      address: this.#o.address,
      passwordFile: this.#o.passwordFile,
      // The replica receives into its temp dir, which its clients never see.
      tempDir: SERVER_TEMP_DIR,
      sparse: true,
      timeout: this.#o.rsync.timeout,
      connectTimeout: this.#o.rsync.connectTimeout,
      ...over,
    };
  }

  #failed(r: Replica, _work: Work, error: string): "failed" {
    // Stopping aborts the push in flight: no failure, and no retry after the stop.
    if (this.#stopped) return "failed";
    r.failures++;
    r.lastError = error;
    r.state = "backoff";
    // Whatever was half done, the next attempt re-checks the whole tree.
    r.pending.markFull("retry after failure");
    const { retryMin, retryMax } = this.#o.push;
    const base = Math.min(retryMax, retryMin * 2 ** (r.failures - 1));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    r.nextRetry = Date.now() + delay;
    this.#m.failures.inc({ replica: r.target.name });
    this.#m.pushes.inc({ replica: r.target.name, kind: "any", result: "error" });
    this.#o.log.error("push failed", {
      replica: r.target.name,
      error,
      failures: r.failures,
      retry_in: formatDuration(delay),
    });
    r.retryTimer = setTimeout(() => {
      r.state = "idle";
      r.nextRetry = null;
      this.#kick(r);
    }, delay);
    return "failed";
  }

  #refuse(r: Replica, work: Work, deletes: number, creates: number, why: string): "refused" {
    r.state = "refused";
    r.lastError = `would delete ${deletes} entries and create ${creates}: ${why}; ` +
      "nothing was deleted (restore the source, publish, raise push.max_delete, or restart with --allow-mass-delete)";
    // Keep the work: a later change or the reconcile re-checks it.
    if (work.kind === "full") r.pending.markFull(work.reason);
    else r.pending.add(work.changes);
    this.#m.refused.inc({ replica: r.target.name });
    this.#o.log.error("push refused", {
      replica: r.target.name,
      deletes,
      creates,
      max_delete: this.#o.push.maxDelete,
      why,
    });
    return "refused";
  }

  /** The source is empty or gone: hold every push, re-check every second. */
  #block(problem: string, r: Replica, work: Work): void {
    if (work.kind === "full") r.pending.markFull(work.reason);
    else r.pending.add(work.changes);
    r.state = "idle";
    if (this.#problem === null) {
      this.#problem = problem;
      // A fresh primary before its first publish is not in trouble.
      if (problem.includes(WAITING)) this.#o.log.info("not pushing yet", { reason: problem });
      else this.#o.log.error("not pushing", { reason: problem });
      this.#guardTimer = setInterval(async () => {
        if (await sourceProblem(this.#o.source, this.#everVersioned())) return;
        clearInterval(this.#guardTimer);
        this.#problem = null;
        this.#o.log.info("source tree is back; full push", {});
        this.requestFull("source back");
      }, 1000);
    }
  }
}

/** What one push sends, decided when it starts ({@linkcode planPush}). */
export interface PushPlan {
  /**
   * "full": the whole tree, then the marker; "version": the paths a new
   * version changed by the version log, then its marker; "scoped": the
   * paths whose events arrived, no marker.
   */
  kind: "full" | "version" | "scoped";
  /** The paths of a scoped or version push; none for a whole one. */
  changes: Change[];
  /** Why it runs, for the log. */
  reason: string;
}

/** What `/status` shows of a replica's last push. */
type LastPush = NonNullable<ReplicaStatus["last_push"]>;

/**
 * The work to push now: a whole push asked for (a storm, as a publish of
 * many files makes one, or a reconcile) while the version log can say what
 * a new version changed waits behind that version's own push, which it
 * keeps pending: the replica holds the version in its paths' time, and the
 * whole tree follows.
 */
function versionFirst(r: Replica, work: Work, versionChanges: Change[] | null): Work {
  if (work.kind !== "full" || versionChanges === null) return work;
  r.pending.markFull(work.reason);
  return { kind: "paths", changes: [], since: work.since };
}

/**
 * What a push of `work` sends, given the source's marker now
 * (`markerText`), the one the replica acknowledged (`ackText`) and, when
 * the marker is new, the paths the version log says the versions between
 * them changed (`versionChanges`; null when it cannot say). A path the
 * filter rules cannot scope takes the whole tree. A new marker goes out
 * only behind a run that starts after it was read and covers every path of
 * its version: a scoped run sends the paths whose events have arrived, but
 * the marker on disk can be ahead of them (a file's event still in the
 * watcher when the publisher wrote the marker); sending it then would let a
 * replica claim a version it does not fully hold, and clients trust it.
 *
 * @example
 * ```ts
 * planPush({ kind: "full", reason: "start", since: 0 }, null, null);
 * // { kind: "full", changes: [], reason: "start" }
 * ```
 */
export function planPush(
  work: Work,
  markerText: string | null,
  ackText: string | null,
  versionChanges: Change[] | null = null,
): PushPlan {
  if (work.kind === "full") return { kind: "full", changes: [], reason: work.reason };
  const reason = `${work.changes.length} paths`;
  if (work.changes.some((c) => unfilterable(c.path))) return { kind: "full", changes: [], reason };
  if (markerText !== null && markerText !== ackText) {
    if (versionChanges === null || versionChanges.some((c) => unfilterable(c.path))) {
      return { kind: "full", changes: [], reason: "new version" };
    }
    // One change per path; deep when either says so (a directory whose event
    // arrived where the log names a file of that name).
    const merged = new Map<string, Change>();
    for (const c of [...work.changes, ...versionChanges]) {
      const had = merged.get(c.path);
      merged.set(c.path, had ? { ...had, ...c, deep: had.deep || c.deep } : c);
    }
    const changes = [...merged.values()];
    return { kind: "version", changes, reason: `new version, ${versionChanges.length} paths` };
  }
  return { kind: "scoped", changes: work.changes, reason };
}

/**
 * The paths that take a tree from version `ack` to `marker` by the version
 * log (`logText`, the source's): every changed and deleted path, the log
 * itself; deletions deep. Null when the log has no unbroken
 * chain between them path by path, or either marker is unreadable.
 *
 * @example
 * ```ts
 * versionChanges(logText, ackText, markerText); // [{ path: "a.txt", deep: false }, …] or null
 * ```
 */
export function versionChanges(
  logText: string | null,
  ackText: string | null,
  markerText: string,
): Change[] | null {
  const from = ackText === null ? null : parseMarker(ackText);
  const to = parseMarker(markerText);
  if (logText === null || from === null || to === null) return null;
  const list = changesBetween(parseLog(logText), from, to);
  if (list === null || [...list.paths, ...list.deleted].some((p) => !cleanPath(p))) return null;
  // A directory the log names is its own entry (mode, mtime): every path
  // changed below it is named too, so none is walked whole. Deletions are.
  return [
    ...list.paths.map((path) => ({ path, deep: false })),
    ...list.deleted.map((path) => ({ path, deep: true })),
    { path: VERSION_LOG, deep: false },
  ];
}

/**
 * How a plan picks its paths. With nothing to delete and nothing deep, rsync
 * is given the list itself, which costs a stat per path; filter rules cost
 * every rule on every entry met, far more for a burst in a large tree. A
 * list only of paths whose parents are all directories: given `a/b` where
 * `a` is now a symbolic link (a log or an event older than the tree),
 * rsync follows it and sends what it points to, from outside the tree;
 * filter rules never follow one.
 */
async function scopeOf(source: string, plan: PushPlan): Promise<Scope> {
  if (plan.kind === "full") return "full";
  if (plan.changes.some((c) => c.deep)) return "filter";
  return await listable(source, plan.changes) ? "list" : "filter";
}

/** The record of a push that took `ms` and ended with `result`. */
function lastPushOf(kind: PushPlan["kind"], ms: number, result: RsyncResult): LastPush {
  const stats = result.stats;
  return {
    kind,
    ms: Math.round(ms * 10) / 10,
    files: stats?.transferred ?? 0,
    // --stats counts no deletions made by a daemon: count rsync's own lines.
    deleted: stats ? result.deleted : 0,
    bytes: stats?.bytesSent ?? 0,
  };
}

/** fanout's own files of a version: the marker, the files that vouch for it, the log. */
const VERSION_OWN: ReadonlySet<string> = new Set([...VERSION_FILES, VERSION_LOG]);

/** What an empty tree that never had a version is waiting for. */
const WAITING = "waiting for the first publish";

/** fanout's own files at a tree's root: never content (a tree of only these is empty). */
const OWN_FILES = new Set([
  VERSION_MARKER,
  VERSION_LOG,
  RELEASE_MANIFEST,
  RELEASE_ENVELOPE,
  ".~tmp~",
  SERVER_TEMP_DIR,
]);

/**
 * Why the tree at `root` must not be pushed, or null: missing, not a
 * directory, or empty (an unmounted disk looks like an empty mount point).
 * fanout's own files never count as content. An empty tree that never had a
 * version (`versioned` false) is a fresh host waiting for its first publish.
 *
 * @example
 * ```ts
 * await sourceProblem("/srv/plugins", true); // null, or "source tree /srv/plugins is empty …"
 * ```
 */
export async function sourceProblem(root: string, versioned = true): Promise<string | null> {
  try {
    const st = await Deno.stat(root);
    if (!st.isDirectory) return `source tree ${root} is not a directory`;
  } catch {
    return `source tree ${root} is missing (unmounted disk?); not pushing, replicas keep their files`;
  }
  for await (const e of Deno.readDir(root)) {
    if (!OWN_FILES.has(e.name)) return null;
    if (e.name === VERSION_MARKER) versioned = true;
  }
  if (!versioned) return `source tree ${root} is empty: ${WAITING}`;
  return `source tree ${root} is empty (unmounted disk?); not pushing, replicas keep their files`;
}

/** True when every path of `changes` exists under `root` and each of its parents is a directory. */
async function listable(root: string, changes: Change[]): Promise<boolean> {
  const parents = new Set<string>();
  for (const c of changes) {
    if (!await lstatOrNull(`${root}/${c.path}`)) return false;
    for (let i = c.path.indexOf("/"); i > 0; i = c.path.indexOf("/", i + 1)) {
      parents.add(c.path.slice(0, i));
    }
  }
  for (const p of parents) {
    if (!(await lstatOrNull(`${root}/${p}`))?.isDirectory) return false;
  }
  return true;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch {
    return null;
  }
}

/**
 * True for a relative path below the tree's root: no empty, `.` or `..`
 * part, no leading `/`, no control character. A list or a filter rule made
 * of anything else could name a file outside the tree.
 */
function cleanPath(p: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[\x00-\x1f\x7f]/.test(p) &&
    p.split("/").every((x) => x !== "" && x !== "." && x !== "..");
}

/**
 * How many times push.max_paths a version push may name when it can go as a
 * list: a stat per path, no rule tried on every entry of the tree.
 */
const LIST_PATHS_FACTOR = 10;

/** The most of a replica's marker read back: a marker is a few hundred bytes. */
const MARKER_READ_MAX_BYTES = 4096;

/**
 * How long the source's temp dir stays quiet before a landing transfer is
 * taken to be over (ms): past the gap between a publish's paths and its
 * marker, which are two transfers.
 */
const LANDING_QUIET_MS = 500;

/** The longest pushes wait for a landing transfer's marker by default (ms). */
const LANDING_MAX_MS = 5_000;

/** How often a wait for a landing transfer looks at the temp dir again (ms). */
const LANDING_RECHECK_MS = 100;

/**
 * Copies the source's manifest and envelope into `dir` when both belong to
 * `marker`'s version (the envelope, read but not verified: a server relays
 * it, its clients verify it; and the copied manifest's SHA-256);
 * "unsettled" when they are of another version (a publish landing), "none"
 * when the source has neither (an unsigned fleet).
 */
async function snapshotRelease(
  source: string,
  dir: string,
  marker: VersionMarker | null,
): Promise<"copied" | "none" | "unsettled"> {
  const envelope = readSmallFile(`${source}/${RELEASE_ENVELOPE}`, ENVELOPE_MAX_BYTES);
  const manifest = await Deno.lstat(`${source}/${RELEASE_MANIFEST}`).catch(() => null);
  if (envelope === null && manifest === null) return "none";
  // Only regular files are copied: a link here is not the publisher's.
  if (envelope === null || !manifest?.isFile || manifest.size > MANIFEST_LIMITS.maxBytes) {
    return "unsettled";
  }
  await Deno.copyFile(`${source}/${RELEASE_MANIFEST}`, `${dir}/${RELEASE_MANIFEST}`);
  const release = readEnvelope(new TextEncoder().encode(envelope));
  const copied = await Deno.readFile(`${dir}/${RELEASE_MANIFEST}`);
  if (
    marker === null || release === null || markerMismatch(release, marker) !== null ||
    release.manifest_sha256 !== await manifestDigest(copied)
  ) {
    return "unsettled";
  }
  await Deno.writeTextFile(`${dir}/${RELEASE_ENVELOPE}`, envelope);
  return "copied";
}
