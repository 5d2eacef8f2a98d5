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
 * (deletions.ts, delete_guard.ts): held a moment, counted over a window,
 * blocked when they look like an accident. While it holds or blocks, runs
 * delete nothing outside their own paths; new and changed files still go at
 * once.
 *
 * An idle engine pushes at once; changes that arrive during a push are
 * batched into the next one. Small change sets push only the changed paths
 * (plan.ts, filter.ts); large or unknown ones the whole tree. A version marker
 * goes last, from a snapshot taken when the push began, and only behind a
 * run that covers its whole version: the whole tree, or the paths the
 * version log says changed since the version the replica acknowledged and
 * still shows. So a replica's marker never claims more than it was sent.
 *
 * This file wires the engine's parts: when each replica pushes and how its
 * outcome is recorded. What a push sends is plan.ts, the rsync runs are
 * transfer.ts, what it may delete is deletions.ts, the wait for a landing
 * transfer is landing.ts, the source's checks are source.ts.
 *
 * @module
 */

import {
  type Change,
  LOG_READ_MAX_BYTES,
  parseMarker,
  type VersionMarker,
  type Work,
} from "../version/mod.ts";
import type { PushConfig } from "../config/mod.ts";
import {
  existsNow,
  formatDuration,
  type Logger,
  readSmallFile,
  Semaphore,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import type { Registry } from "../health/mod.ts";
import { describeRsyncFailure, type RsyncJob, type RsyncResult } from "../rsync/mod.ts";
import { Deletions, type GuardStatus } from "./deletions.ts";
import { LandingWait } from "./landing.ts";
import { pushMetrics } from "./metrics.ts";
import {
  LIST_PATHS_FACTOR,
  planPush,
  type PushPlan,
  type Scope,
  scopeOf,
  VERSION_OWN,
  versionChanges,
  versionFirst,
} from "./plan.ts";
import { lastPushOf, type PushTarget, Replica, type ReplicaStatus, shownState } from "./replica.ts";
import { MARKER_READ_MAX_BYTES, sourceProblem, WAITING } from "./source.ts";
import { Transfers } from "./transfer.ts";

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
   * 5 s: see {@linkcode LandingWait}).
   */
  landingMaxMs?: number;
  /** The wall clock (ms since the epoch) the temp dir's times are read against; default `Date.now` (tests step it). */
  clock?: () => number;
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
  /** Pushes wait while a transfer lands in the source. */
  #landing: LandingWait;
  #transfers: Transfers;
  /** What pushes may delete: the mass-delete guard and its lift. */
  #deletions: Deletions;
  /** The version marker last seen in the source (undefined before the first look). */
  #marker: string | null | undefined = undefined;
  /** Whether this source ever had a version marker or pushed content (a file in workDir). */
  #seenVersion: boolean | null = null;
  #m;

  constructor(opts: PushEngineOptions) {
    this.#o = opts;
    this.#replicas = opts.targets.map((t) => new Replica(t, opts.push.maxPaths));
    this.#sem = new Semaphore(opts.push.concurrency);
    this.#deletions = new Deletions({
      push: opts.push,
      allowMassDelete: opts.allowMassDelete ?? false,
      source: opts.source,
      log: opts.log,
      release: (changes, owed) => {
        for (const r of this.#replicas) r.pending.add(changes);
        if (owed) this.requestFull("deletions held during a whole push");
        this.#kickSoon();
      },
    });
    this.#landing = new LandingWait({
      source: opts.source,
      clock: opts.clock,
      maxMs: opts.landingMaxMs,
      kick: () => this.#kickAll(),
    });
    this.#transfers = new Transfers({
      source: opts.source,
      workDir: opts.workDir,
      address: opts.address,
      passwordFile: opts.passwordFile,
      rsync: opts.rsync,
      exclude: opts.push.exclude,
      signal: this.#abort.signal,
    });
    this.#m = pushMetrics(opts.registry, () => this.status());
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
    this.#deletions.see(rest.filter((c) => c.created).length, deletions, now);
    if (rest.length === 0) return;
    for (const r of this.#replicas) r.pending.add(rest);
    this.#kickSoon();
  }

  /** The mass-delete guard's state, for `/status`. */
  guardStatus(): GuardStatus {
    return this.#deletions.status();
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
    const refused = this.#replicas.some((r) => r.state === "refused");
    this.#deletions.publish(refused, (held) => {
      for (const r of this.#replicas) {
        r.synced = false;
        if (held.length) r.pending.add(held);
      }
    });
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
    const blocked = this.#deletions.reason;
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
    this.#deletions.stop();
    this.#landing.stop();
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
   * Whether pushes wait for a transfer landing in the source (see
   * {@linkcode LandingWait}): until its marker is new to a replica, the temp
   * dir is quiet, or the wait runs out.
   */
  #heldForLanding(): boolean {
    if (this.#stopped) return false;
    return this.#landing.held(() => this.#versionDue());
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
    const markerText = readSmallFile(`${this.#o.source}/${VERSION_MARKER}`, MARKER_READ_MAX_BYTES);
    this.#sawMarker(markerText);
    const versionChanges = this.#versionChanges(r, markerText);
    const work = versionFirst(r.pending, asked, versionChanges);
    const plan = planPush(work, markerText, r.ackText, versionChanges);
    // The version files travel with their version (a version or whole push
    // sends the log, the marker goes after the tree): a push of only their
    // events would cost a connection after every version and send nothing
    // a replica uses.
    if (plan.kind === "scoped" && plan.changes.every((c) => VERSION_OWN.has(c.path))) return "ok";
    // A version push holds only for a replica still at the version it
    // acknowledged: its marker is read while the paths go.
    const held = plan.kind === "version"
      ? this.#transfers.replicaMarker(r.target).catch(() => null)
      : null;
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
        const m = await this.#transfers.marker(r.target, markerText);
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
    if (plan.kind === "version" && whole) this.#deletions.rebase();
    if (r.synced === false && whole) {
      r.synced = true;
      if (this.#replicas.every((x) => x.synced)) this.#deletions.allSynced();
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
    const guard = this.#deletions.limit();
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
      const why = this.#deletions.refusal(how, deletes - creates, dry.stats?.files);
      if (why) return this.#refuse(r, work, deletes, creates, why);
      cap = deletes + guard;
    }
    const result = await this.#rsync(r, how, changes, { maxDelete: cap, itemize: true });
    if (how === "full" && result.code === 0 && result.stats) {
      this.#deletions.measured(result.stats.files);
    }
    if (how !== "full" && result.created > 0) {
      r.recentCreated.push({ at: Date.now(), n: result.created });
    }
    return result;
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
    const may = this.#deletions.treeDeletes(how, extra.dryRun === true);
    return this.#transfers.tree(r.target, how, changes, may, extra);
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
