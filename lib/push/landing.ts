/**
 * The wait for a landing transfer. A publish or an upstream's push lands in
 * the source path by path through its temp dir, and its marker comes last;
 * the version push that follows the marker sends the version's paths once,
 * so pushing each path's events first would put one or two pushes ahead of
 * it. Kept apart from the engine as one small state machine with its own
 * timer and clocks.
 *
 * @module
 */

import { receivingSince } from "../core/mod.ts";

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
 * Options of {@linkcode LandingWait}.
 *
 * @example
 * ```ts
 * const o: LandingWaitOptions = { source: "/srv/plugins", kick: () => engine.kickAll() };
 * ```
 */
export interface LandingWaitOptions {
  /** The tree whose temp dir shows a transfer landing. */
  source: string;
  /** The wall clock (ms since the epoch) the temp dir's times are read against; default `Date.now`. */
  clock?: () => number;
  /** The monotonic clock (ms) the wait is timed on; default `performance.now`. */
  monotonic?: () => number;
  /** The longest wait (ms; default 5 s). */
  maxMs?: number;
  /** Called when a wait looks again: pushes held back try once more. */
  kick: () => void;
}

/**
 * Whether pushes wait, because a transfer is landing in the source and its
 * marker is not there yet. A wait ends once the temp dir has been quiet for
 * {@linkcode LANDING_QUIET_MS}, the marker is new to a replica, or
 * {@linkcode LANDING_MAX_MS} after it began; while it lasts, `kick` is called
 * every {@linkcode LANDING_RECHECK_MS} (one timer per wait). A look told to
 * wait always gets its kick, even when another look ends the wait first
 * (the engine asks once per replica, and a replica held without a kick would
 * get nothing until the next change or reconcile).
 *
 * @example
 * ```ts
 * const landing = new LandingWait({ source, clock: Date.now, kick: () => kickAll() });
 * if (landing.held(() => versionDue())) return; // kick brings the next look
 * landing.stop();
 * ```
 */
export class LandingWait {
  #o: LandingWaitOptions;
  /** When the wait began (monotonic ms), or null while no transfer lands. */
  #first: number | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(opts: LandingWaitOptions) {
    this.#o = opts;
  }

  /**
   * True while pushes wait. `versionDue` says whether the source's marker is
   * new to a replica that takes pushes; it is asked only while a transfer
   * lands and the wait has not run out.
   */
  held(versionDue: () => boolean): boolean {
    if (this.#stopped) return false;
    const wall = (this.#o.clock ?? Date.now)();
    // A timer set for an earlier look is left to fire: that look was told to
    // wait for its kick, and this one ending the wait does not give it one.
    if (!receivingSince(this.#o.source, wall - LANDING_QUIET_MS)) {
      this.#first = null;
      return false;
    }
    // The wait is timed on the monotonic clock: a wall clock stepped back
    // would stretch it by the step. Only file times need the wall clock.
    const now = (this.#o.monotonic ?? (() => performance.now()))();
    const first = this.#first ?? now;
    if (now - first >= (this.#o.maxMs ?? LANDING_MAX_MS) || versionDue()) {
      // The landing goes on (the marker's own transfer, or one that never
      // ends): no second wait until the temp dir is quiet.
      this.#first = first;
      return false;
    }
    if (this.#timer === undefined) {
      this.#first = first;
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#o.kick();
      }, LANDING_RECHECK_MS);
    }
    return true;
  }

  /** Ends any wait for good: its timer goes, and nothing is held from now on. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
