/**
 * A server's guard of its tree: when the tree is checked (at a new marker,
 * whole every so often, again and again while refused), what version it
 * announces after each check, and when a refused tree is repaired from
 * upstream. One state machine; every transition goes through
 * {@linkcode TreeGuard}'s `#enter`, checked against {@linkcode TRANSITIONS}.
 *
 * @module
 */

import { type Logger, VERSION_MARKER } from "../core/mod.ts";
import type { PublicKey } from "../release/mod.ts";
import { sameVersion, type VersionMarker } from "../version/mod.ts";
import { ensureTempDir, repairFrom, RepairPace } from "./repair.ts";
import { type Vouch, Voucher } from "./vouch.ts";

/**
 * Where the guard stands:
 * - `unchecked`: no check has ended yet; nothing is announced;
 * - `checking`: a check runs (one at a time; what asks for another meanwhile
 *   gets one more after it);
 * - `vouched`: the last check found the marker's version (or nothing to
 *   check against): the marker is announced;
 * - `refused`: the last check found the tree is not its marker's version:
 *   no version is announced;
 * - `repairing`: refused, and a repair from upstream runs; checks wait for
 *   it (they would see the tree half-rewritten), then the tree is checked whole;
 * - `stopped`: the server stops; nothing more is checked or announced.
 *
 * @example
 * ```ts
 * if (guard.state === "repairing") console.log("repairing from upstream");
 * ```
 */
export type GuardState = "unchecked" | "checking" | "vouched" | "refused" | "repairing" | "stopped";

/**
 * The states each state may go to: the one table of the machine.
 *
 * @example
 * ```ts
 * TRANSITIONS.repairing; // ["checking", "stopped"]: a repair ends in a check
 * ```
 */
export const TRANSITIONS: Readonly<Record<GuardState, readonly GuardState[]>> = {
  unchecked: ["checking", "stopped"],
  checking: ["unchecked", "vouched", "refused", "repairing", "stopped"],
  vouched: ["checking", "stopped"],
  refused: ["checking", "stopped"],
  repairing: ["checking", "stopped"],
  stopped: [],
};

/**
 * What checks the tree: a {@linkcode Voucher} (a stand-in in tests).
 *
 * @example
 * ```ts
 * const checker: TreeChecker = new Voucher(voucherOptions);
 * ```
 */
export interface TreeChecker {
  /** Checks the tree's version; `whole` walks it whatever else. Never rejects. */
  check(whole: boolean): Promise<Vouch>;
  /** Paths a watcher saw change. */
  changed(changes: readonly { path: string; deep: boolean }[]): void;
  /** A watcher lost events or stopped. */
  lost(): void;
  /** Resolves once what the last check keeps is written. */
  settled(): Promise<void>;
}

/**
 * Where a refused tree is repaired from, and the repair itself.
 *
 * @example
 * ```ts
 * const repair: GuardRepair = { upstream: "rsync1", run: (signal) => repairFrom({ ...opts, signal }) };
 * ```
 */
export interface GuardRepair {
  /** The upstream's name, for the log. */
  upstream: string | null;
  /** Runs one repair; null, or why it failed (one line). */
  run(signal: AbortSignal): Promise<string | null>;
}

/**
 * What a {@linkcode TreeGuard} checks with, tells, and how often.
 *
 * @example
 * ```ts
 * const opts: TreeGuardOptions = { checker: voucher, announce: (v) => daemon.setVersion(v),
 *   repair: null, watched: () => true, reconcileMs: 600_000, pollMs: 60_000, log };
 * ```
 */
export interface TreeGuardOptions {
  checker: TreeChecker;
  /**
   * Hands the version the tree holds (null: none) to whoever announces it
   * (the daemons' module comment, then `/version`); called after the first
   * check and at every change of that version.
   */
  announce: (version: VersionMarker | null) => Promise<void>;
  /** The repair of a refused tree; null where there is no upstream (the primary). */
  repair: GuardRepair | null;
  /** Runs before every check: puts back the tree's temp dir, say. */
  prepare?: () => Promise<unknown>;
  /** Whether a watcher reports every change of the tree now. */
  watched: () => boolean;
  /** `push.reconcile`: the tree is checked whole at least this often (ms). */
  reconcileMs: number;
  /**
   * `push.poll_interval`: while no watcher reports changes, the tree is
   * checked whole this often (ms): nothing else would see an edit under the marker.
   */
  pollMs: number;
  log: Logger;
  /**
   * The clock (ms) the guard times its waits on; default the monotonic
   * `performance.now`: a wall clock stepped back would put off the whole
   * checks, the rechecks of a refused tree and its repair by the step.
   */
  now?: () => number;
  /**
   * Calls `fn` every `ms` until the returned stop; default `setInterval`.
   * The guard asks for a check at each call, in case an event is missed.
   */
  every?: (ms: number, fn: () => void) => () => void;
  /** How often the guard asks for a check unprompted (ms; default {@linkcode TICK_MS}). */
  tickMs?: number;
  /**
   * How often a refused tree is checked whole again, and how long a refusal
   * lasts before a repair (ms; default {@linkcode REFUSED_RECHECK_MS}).
   */
  refusedRecheckMs?: number;
  /** The pace of repairs; default a {@linkcode RepairPace} of its default waits. */
  pace?: RepairPace;
}

/**
 * How often the guard asks for a check by default: a missed marker event costs a second at most.
 *
 * @example
 * ```ts
 * new TreeGuard({ ...opts, tickMs: TICK_MS * 5 }); // a slower disk
 * ```
 */
export const TICK_MS = 1_000;

/**
 * How often a refused tree is checked whole by default (a repair seldom
 * changes the marker), and how long a refusal lasts before a repair: a
 * push or publish landing can leave the tree refused for a moment, which is
 * no reason to repair.
 *
 * @example
 * ```ts
 * new TreeGuard({ ...opts, refusedRecheckMs: REFUSED_RECHECK_MS });
 * ```
 */
export const REFUSED_RECHECK_MS = 5_000;

/**
 * The scheduler of a server's tree checks, announcements and repairs. The
 * server feeds it events (a tick, the marker changed, the watcher's paths
 * and losses) and reads what it holds (the version announced, the last
 * check, why it is unhealthy); the guard calls back only through its
 * options.
 *
 * The check is whole every `reconcileMs`, every `pollMs` while no watcher
 * reports changes, and every `refusedRecheckMs` while refused; else only
 * when the marker or the watched paths changed (the checker decides).
 *
 * @example
 * ```ts
 * const guard = new TreeGuard({ checker: voucher, announce: (v) => daemon.setVersion(v),
 *   repair: null, watched: () => true, reconcileMs: 600_000, pollMs: 60_000, log });
 * guard.start();
 * watcher.onChanges = (c) => guard.changed(c);
 * console.log(guard.state, guard.version?.seq);
 * await guard.stop();
 * ```
 */
export class TreeGuard {
  #o: TreeGuardOptions;
  #now: () => number;
  #state: GuardState = "unchecked";
  #current: VersionMarker | null = null;
  /** The announcement of `#current` has not been made whole: the next check makes it again. */
  #owed = false;
  #last: Vouch | null = null;
  /** When the tree is next checked whole, whatever its marker says (ms on the guard's clock). */
  #fullCheckAt = 0;
  /** Since when the tree has been refused; null while it is not. */
  #refusedSince: number | null = null;
  /** A check was asked for while one ran or a repair did: one more follows. */
  #again = false;
  #pace: RepairPace;
  #stop = new AbortController();
  #untick: () => void = () => {};
  /** The check running, or the last (never rejects). */
  #cycle: Promise<void> = Promise.resolve();

  constructor(opts: TreeGuardOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#pace = opts.pace ?? new RepairPace();
  }

  /** Where the guard stands. */
  get state(): GuardState {
    return this.#state;
  }

  /** The version announced: the one the last check found the tree holds; null for none. */
  get version(): VersionMarker | null {
    return this.#current;
  }

  /** What the last check found; null before the first ended. */
  get last(): Vouch | null {
    return this.#last;
  }

  /**
   * Checks the tree at once, then asks for a check every `tickMs`.
   *
   * @example
   * ```ts
   * guard.start();
   * ```
   */
  start(): void {
    this.#request();
    const every = this.#o.every ?? ((ms, fn) => {
      const id = setInterval(fn, ms);
      return () => clearInterval(id);
    });
    this.#untick = every(this.#o.tickMs ?? TICK_MS, () => this.tick());
  }

  /**
   * The timer's event: asks for a check (the checker answers at once when
   * nothing changed and no whole check is due).
   *
   * @example
   * ```ts
   * guard.tick();
   * ```
   */
  tick(): void {
    this.#request();
  }

  /**
   * The version marker at the tree's root changed (a push landed): checks at once.
   *
   * @example
   * ```ts
   * watchMarker("/srv/plugins", () => guard.markerChanged());
   * ```
   */
  markerChanged(): void {
    this.#request();
  }

  /**
   * Paths a watcher saw change: the next check looks at them again.
   *
   * @example
   * ```ts
   * watcher.onChanges = (c) => guard.changed(c);
   * ```
   */
  changed(changes: readonly { path: string; deep: boolean }[]): void {
    this.#o.checker.changed(changes);
  }

  /**
   * The watcher lost events or stopped: the next check walks the whole tree.
   *
   * @example
   * ```ts
   * watcher.onLost = () => guard.lost();
   * ```
   */
  lost(): void {
    this.#o.checker.lost();
  }

  /**
   * Why the host is not healthy because of its tree, or null: while the tree
   * is refused it announces no version.
   *
   * @example
   * ```ts
   * guard.problem(); // "announcing no version: the tree is not version 4's manifest at \"a.txt\""
   * ```
   */
  problem(): string | null {
    const v = this.#last;
    if (v?.state !== "refused") return null;
    return `announcing no version: ${v.why}`;
  }

  /**
   * What `/status` says of the last check of the tree.
   *
   * @example
   * ```ts
   * guard.checkStatus(); // { state: "verified", by: "walk", hashed: 12 }
   * ```
   */
  checkStatus(): Record<string, unknown> {
    const v = this.#last;
    if (v === null) return { state: "pending" };
    switch (v.state) {
      case "verified":
        return { state: v.state, by: v.by, hashed: v.hashed };
      case "unchecked":
        return { state: v.state, why: v.why };
      case "refused":
        return { state: v.state, why: v.why, path: v.path };
    }
  }

  /**
   * Stops: no more checks, announcements or repairs; aborts a repair
   * running; resolves once what the last check keeps is written. A check
   * running is not waited for: a walk of a large tree would hold the stop.
   *
   * @example
   * ```ts
   * await guard.stop();
   * ```
   */
  async stop(): Promise<void> {
    if (this.#state !== "stopped") this.#enter("stopped");
    this.#untick();
    this.#stop.abort();
    await this.#o.checker.settled();
  }

  /**
   * Resolves once the check or repair running (and any asked for meanwhile)
   * has ended.
   *
   * @example
   * ```ts
   * guard.tick();
   * await guard.idle();
   * ```
   */
  async idle(): Promise<void> {
    let cycle;
    do {
      cycle = this.#cycle;
      await cycle;
    } while (cycle !== this.#cycle);
  }

  #enter(next: GuardState): void {
    if (!TRANSITIONS[this.#state].includes(next)) {
      throw new Error(`tree guard: no transition from ${this.#state} to ${next}`);
    }
    this.#state = next;
  }

  /** A check asked for: now, or after the check or repair running. */
  #request(): void {
    if (this.#state === "stopped") return;
    if (this.#state === "checking" || this.#state === "repairing") {
      this.#again = true;
      return;
    }
    this.#again = false;
    this.#enter("checking");
    this.#cycle = this.#run();
  }

  /** One check, its announcement, then the state it leaves. */
  async #run(): Promise<void> {
    let repair = false;
    try {
      repair = await this.#checkAndAnnounce();
    } catch (e) {
      this.#o.log.warn("version not refreshed", { error: (e as Error).message });
    }
    if (this.#state === "stopped") return;
    if (repair) {
      this.#enter("repairing");
      this.#repair(this.#o.repair!);
      return;
    }
    this.#enter(this.#settledState());
    if (this.#again) this.#request();
  }

  /** The state the last check leaves the guard in. */
  #settledState(): GuardState {
    if (this.#last === null) return "unchecked";
    return this.#last.state === "refused" ? "refused" : "vouched";
  }

  /**
   * Checks the tree and hands the version it holds to `announce` (after the
   * first check, and when it changed); returns whether a repair is due.
   */
  async #checkAndAnnounce(): Promise<boolean> {
    await this.#o.prepare?.();
    const first = this.#last === null;
    const v = await this.#check();
    const repair = this.#refusedFor(v) >= this.#recheckMs() && this.#repairMayStart();
    if (this.#state === "stopped") return false;
    const held = v.state === "refused" ? null : v.marker;
    if (!sameVersion(held, this.#current) || first || this.#owed) {
      this.#current = held;
      // Owed until it is made: an announcement that throws may leave the
      // daemons naming a version the tree no longer holds.
      this.#owed = true;
      await this.#o.announce(held);
      this.#owed = false;
    }
    return repair;
  }

  /** The checker's check, whole when one is due; logs a change of verdict. */
  async #check(): Promise<Vouch> {
    const now = this.#now();
    const whole = now >= this.#fullCheckAt;
    const before = this.#last;
    const v = await this.#o.checker.check(whole);
    this.#last = v;
    if (whole) this.#fullCheckAt = now + this.#wholeCheckEvery(v);
    if (v.state === "refused" && before?.state !== "refused") {
      this.#o.log.warn("announcing no version: the tree is not the version its marker names", {
        why: v.why,
        path: v.path ?? undefined,
      });
    } else if (v.state !== "refused" && before?.state === "refused") {
      this.#o.log.info("the tree holds its version again", { seq: v.marker?.seq });
    }
    return v;
  }

  /** How long after a whole check that found `v` the next one is made (ms). */
  #wholeCheckEvery(v: Vouch): number {
    if (v.state === "refused") return this.#recheckMs();
    const { reconcileMs, pollMs } = this.#o;
    return this.#o.watched() ? reconcileMs : Math.min(pollMs, reconcileMs);
  }

  /** How long the tree has been refused (ms; 0 when it is not). */
  #refusedFor(v: Vouch): number {
    const now = this.#now();
    this.#refusedSince = v.state === "refused" ? this.#refusedSince ?? now : null;
    if (this.#refusedSince === null) this.#pace.held(now);
    return this.#refusedSince === null ? 0 : now - this.#refusedSince;
  }

  /** Whether a repair may start now: there is an upstream, and the pace allows one. */
  #repairMayStart(): boolean {
    if (this.#o.repair === null || this.#stop.signal.aborted) return false;
    return this.#pace.start(this.#now());
  }

  /** Repairs the tree in the background; checks it whole after. */
  #repair(repair: GuardRepair): void {
    const signal = this.#stop.signal;
    this.#o.log.info("repairing the tree from upstream", { upstream: repair.upstream });
    this.#cycle = repair.run(signal).then((failed) => {
      if (failed && !signal.aborted) {
        this.#o.log.warn("repair from upstream failed", { error: failed });
      }
    }, () => {}).finally(() => {
      this.#fullCheckAt = 0;
      if (this.#state !== "repairing") return;
      this.#enter("checking");
      this.#again = false;
      this.#cycle = this.#run();
    });
  }

  #recheckMs(): number {
    return this.#o.refusedRecheckMs ?? REFUSED_RECHECK_MS;
  }
}

/**
 * What {@linkcode guardTree} needs of a server: its tree, its fleet's keys and pace, its upstream.
 *
 * @example
 * ```ts
 * const setup: TreeGuardSetup = { root: "/srv/plugins", stateDir: "/var/lib/fanout/vouch",
 *   trusted: keys, excludes: [".git"], upstream: { source: "rsync://10.0.0.10:873/plugins/",
 *   name: "rsync1" }, rsync: fleet.rsync, watched: () => true, reconcileMs: 600_000,
 *   pollMs: 60_000, announce: (v) => daemon.setVersion(v), log };
 * ```
 */
export interface TreeGuardSetup {
  /** The tree served. */
  root: string;
  /** A private dir for the voucher's manifest and record. */
  stateDir: string;
  /** The fleet's public keys; none: nothing is checked. */
  trusted: readonly PublicKey[];
  /** `push.exclude`. */
  excludes: string[];
  /** The upstream's read module (an rsync:// URL ending in `/`) and name; null on the primary. */
  upstream: { source: string; name: string | null } | null;
  rsync: { path: string; timeout: number; connectTimeout: number };
  /** Local address to connect from (`--address`). */
  address?: string;
  /** Whether a watcher reports every change of the tree now. */
  watched: () => boolean;
  reconcileMs: number;
  pollMs: number;
  announce: (version: VersionMarker | null) => Promise<void>;
  log: Logger;
}

/**
 * The guard of a server's tree: a {@linkcode Voucher} checks it, the
 * upstream's read module repairs it, and its temp dir is put back before
 * every check (removed or replaced, a symlink is never written through).
 *
 * @example
 * ```ts
 * const guard = guardTree({ root: "/srv/plugins", stateDir: "/var/lib/fanout/vouch", trusted: keys,
 *   excludes: [".git"], upstream: null, rsync: fleet.rsync, watched: () => true,
 *   reconcileMs: 600_000, pollMs: 60_000, announce: (v) => daemon.setVersion(v), log });
 * guard.start();
 * ```
 */
export function guardTree(o: TreeGuardSetup): TreeGuard {
  const checker = new Voucher({
    root: o.root,
    stateDir: o.stateDir,
    trusted: o.trusted,
    excludes: o.excludes,
    watched: o.watched,
  });
  const up = o.upstream;
  return new TreeGuard({
    checker,
    announce: o.announce,
    repair: up && {
      upstream: up.name,
      run: (signal) =>
        repairFrom({
          source: up.source,
          root: o.root,
          excludes: o.excludes,
          rsync: o.rsync,
          address: o.address,
          signal,
        }),
    },
    prepare: () => ensureTempDir(o.root),
    watched: o.watched,
    reconcileMs: o.reconcileMs,
    pollMs: o.pollMs,
    log: o.log,
  });
}

/**
 * Calls `changed` when the version marker at the root of `tree` changes (a
 * push landed), so the version announced follows at once. A watch of the
 * root alone (not recursive): one inotify watch, whatever the tree's size;
 * the guard's tick covers a missed event or a watch that cannot be made.
 *
 * @example
 * ```ts
 * const w = watchMarker("/srv/plugins", () => guard.markerChanged());
 * w.close();
 * ```
 */
export function watchMarker(tree: string, changed: () => void): { close(): void } {
  let w: Deno.FsWatcher;
  try {
    w = Deno.watchFs(tree, { recursive: false });
  } catch {
    return { close() {} };
  }
  (async () => {
    try {
      for await (const ev of w) {
        if (ev.paths.some((p) => p.endsWith(`/${VERSION_MARKER}`))) changed();
      }
    } catch { /* closed, or the tree went away: the tick still checks */ }
  })();
  return {
    close() {
      try {
        w.close();
      } catch { /* closed */ }
    },
  };
}
