/**
 * The mass-delete guard of the push engine: deletions seen by the watcher are
 * held for a moment before they go downstream, and counted over a window, so
 * an `rm -rf` in progress is caught before its first pieces leave (Syncthing
 * delays deletes for the same reason). New and changed files never wait.
 *
 * ```
 *   pushing ──deletion seen──▶ holding ──quiet for delete_hold, under the limits──▶ pushing
 *      ▲                          │        (the held deletions go)
 *      │                          │ net deletions within delete_window, or since the last
 *      │                          │ publish, past push.max_delete or past
 *      │                          ▼ push.max_delete_percent of the tree
 *      └──publish, --allow-mass-delete, or the files back── blocked
 * ```
 *
 * Counts are net: a path created within the window offsets one deleted (a
 * renamed directory, an editor's temp file), as the push's dry-run guard
 * counts a move as no loss. The tree's loss since the last publish (or start)
 * counts too, against the same limits: a share deleted once per window adds
 * up, and only a publish (deliberate) starts the count again. Pure logic: the
 * engine owns the timers.
 *
 * @module
 */

import type { Change } from "../version/mod.ts";
import { formatDuration } from "../core/mod.ts";

/** Where the guard stands, as `/status` shows it. */
export type GuardState = "pushing" | "holding" | "blocked";

/** The guard's thresholds (push section of the fleet file). */
export interface GuardLimits {
  /** Net deletions within the window past this block (push.max_delete). */
  maxDelete: number;
  /** Net deletions past this share of the tree's entries block (push.max_delete_percent). */
  maxDeletePercent: number;
  /** Held deletions go after this much quiet (push.delete_hold, ms); at most 10× it after the first. */
  hold: number;
  /** Deletions sent within this window count together (push.delete_window, ms). */
  window: number;
}

/** What the engine does next, from {@linkcode DeleteGuard.step}. */
export type GuardStep =
  | { kind: "idle" }
  | { kind: "wait"; ms: number }
  | { kind: "release"; changes: Change[] }
  | { kind: "blocked"; reason: string };

/** Below this many net deletions the percent limit is not applied (a small tree's cleanup). */
export const MIN_PERCENT_DELETES = 20;
/** Held paths kept by name; past it only counted (then only a publish or the flag lifts a block). */
const MAX_TRACKED = 10_000;

/**
 * Why `net` deletions are a suspected accident, or null: past `max`, or past
 * `percent` of a tree of `entries` (when known, at least
 * {@linkcode MIN_PERCENT_DELETES} of them, and `percent` under 100).
 *
 * @example
 * ```ts
 * massDeleteReason(600, 1000, 50, 1000); // "600 of 1000 entries: more than push.max_delete_percent 50%"
 * massDeleteReason(5, 1000, 50, 8);      // null: a small tree's small cleanup
 * ```
 */
export function massDeleteReason(
  net: number,
  max: number,
  percent: number,
  entries: number | null,
): string | null {
  if (net > max) return `${net} net, more than push.max_delete ${max}`;
  const applies = percent < 100 && entries !== null && entries > 0 && net >= MIN_PERCENT_DELETES;
  if (applies && net * 100 > entries! * percent) {
    return `${net} of ${entries} entries: more than push.max_delete_percent ${percent}%`;
  }
  return null;
}

/**
 * Holds and counts deletions.
 *
 * @example
 * ```ts
 * const g = new DeleteGuard({ maxDelete: 1000, maxDeletePercent: 50, hold: 2000, window: 600_000 });
 * g.entries = 5000;                                  // from the last whole push
 * g.hold([{ path: "a.txt", deep: true }], Date.now());
 * g.step(Date.now());                                // { kind: "wait", ms: 2000 }
 * g.step(Date.now() + 2000);                         // { kind: "release", changes: [...] }
 * ```
 */
export class DeleteGuard {
  #limits: GuardLimits;
  #held = new Map<string, Change>();
  #heldCount = 0;
  #first = 0;
  #last = 0;
  /** Signed counts within the window: + deletions sent, − paths created. */
  #log: { at: number; n: number }[] = [];
  #blocked: string | null = null;
  /** True while `--allow-mass-delete` or a publish lifts the limits. */
  allowed = false;
  #entries: number | null = null;
  /** Paths created minus deletions sent since the last whole push. */
  #delta = 0;
  /** Held deletions the last whole push's count already left out. */
  #counted = 0;
  /** The tree's entries at its first whole push since start or the last publish. */
  #baseline: number | null = null;

  constructor(limits: GuardLimits) {
    this.#limits = limits;
  }

  /** Entries of the tree: rsync's count at its last whole push, then kept by the changes seen. */
  get entries(): number | null {
    return this.#entries === null ? null : Math.max(0, this.#entries + this.#delta);
  }

  /** A whole push counted the tree's entries (held deletions are already gone from it). */
  set entries(n: number | null) {
    this.#entries = n;
    this.#delta = 0;
    this.#counted = this.#heldCount;
    if (this.#baseline === null && n !== null) this.#baseline = n + this.#heldCount;
  }

  /**
   * A version push landed a publish without counting the tree: when no
   * whole push has set the baseline since the publish, the entries kept
   * from the last one (held deletions still in) become it, so the loss
   * since the publish counts from now on.
   */
  rebase(): void {
    const now = this.entries;
    if (this.#baseline === null && now !== null) this.#baseline = now + this.#counted;
  }

  /**
   * Entries a tree of `entries` (a whole run's count of the source) has lost
   * since the last publish (or start); 0 before the baseline is known.
   */
  lossAt(entries: number): number {
    return this.#baseline === null ? 0 : Math.max(0, this.#baseline - entries);
  }

  /** The tree's entries the loss is measured against, or null before a whole push. */
  get baseline(): number | null {
    return this.#baseline;
  }

  /**
   * Net entries lost since the last publish (or start), the held deletions
   * included; 0 before a whole push counted the tree.
   */
  get lost(): number {
    const now = this.entries;
    if (this.#baseline === null || now === null) return 0;
    return Math.max(0, this.#baseline - now + this.#heldCount - this.#counted);
  }

  /** pushing, holding (deletions wait) or blocked (a mass deletion is suspected). */
  get state(): GuardState {
    return this.#blocked !== null ? "blocked" : this.#heldCount > 0 ? "holding" : "pushing";
  }

  /** Why deletions are blocked, or null. */
  get reason(): string | null {
    return this.#blocked;
  }

  /** Deletions held now. */
  get held(): number {
    return this.#heldCount;
  }

  /** Net deletions within the window, the held ones included. */
  net(now: number): number {
    this.#prune(now);
    return Math.max(0, this.#heldCount + this.#log.reduce((s, e) => s + e.n, 0));
  }

  /** New paths seen: each offsets one deletion within the window. */
  created(n: number, now: number): void {
    if (n <= 0) return;
    this.#delta += n;
    this.#prune(now);
    // One entry a second at most: a busy tree's log stays a few hundred entries.
    const last = this.#log.at(-1);
    if (last && last.n < 0 && now - last.at < 1000) last.n -= n;
    else this.#log.push({ at: now, n: -n });
  }

  /** Drops what fell out of the window (the log is in time order). */
  #prune(now: number): void {
    const since = now - this.#limits.window;
    let i = 0;
    while (i < this.#log.length && this.#log[i].at < since) i++;
    if (i > 0) this.#log.splice(0, i);
  }

  /** Deletions seen: held until {@linkcode step} releases them. */
  hold(deletions: Change[], now: number): void {
    if (deletions.length === 0) return;
    if (this.#heldCount === 0) this.#first = now;
    this.#last = now;
    for (const c of deletions) {
      if (this.#held.has(c.path)) continue;
      this.#heldCount++;
      if (this.#held.size < MAX_TRACKED) this.#held.set(c.path, c);
    }
    this.#check(now);
  }

  /** What to do now: nothing, wait, release the held deletions, or stay blocked. */
  step(now: number): GuardStep {
    if (this.#blocked !== null) return { kind: "blocked", reason: this.#blocked };
    if (this.#heldCount === 0) return { kind: "idle" };
    const due = Math.min(this.#last + this.#limits.hold, this.#first + 10 * this.#limits.hold);
    if (now < due) return { kind: "wait", ms: due - now };
    const changes = [...this.#held.values()];
    this.#log.push({ at: now, n: this.#heldCount });
    this.#delta -= this.#heldCount - this.#counted;
    this.#counted = 0;
    this.#held.clear();
    this.#heldCount = 0;
    return { kind: "release", changes };
  }

  /**
   * Drops held deletions whose paths exist again (the files were put back);
   * unblocks when what is left is under the limits. Returns true when it
   * unblocked. A block past the tracked paths stays until lifted.
   */
  restored(exists: (path: string) => boolean, now: number): boolean {
    if (this.#blocked === null || this.#heldCount > this.#held.size) return false;
    for (const path of [...this.#held.keys()]) {
      if (!exists(path)) continue;
      this.#held.delete(path);
      this.#heldCount--;
    }
    this.#counted = Math.min(this.#counted, this.#heldCount);
    this.#blocked = null;
    this.#check(now);
    return this.#blocked === null;
  }

  /**
   * A publish or the flag: unblocks, forgets the window and the loss so far
   * (the next whole push counts the new baseline, or {@linkcode rebase} sets
   * it); returns the held deletions.
   */
  lift(): Change[] {
    const changes = [...this.#held.values()];
    this.#held.clear();
    this.#heldCount = 0;
    this.#log = [];
    this.#counted = 0;
    this.#baseline = null;
    this.#blocked = null;
    return changes;
  }

  #check(now: number): void {
    if (this.allowed || this.#blocked !== null) return;
    const { maxDelete, maxDeletePercent, window } = this.#limits;
    const burst = massDeleteReason(this.net(now), maxDelete, maxDeletePercent, this.entries);
    if (burst) {
      this.#blocked = `${burst} within ${formatDuration(window)}`;
      return;
    }
    // Measured against the baseline: what is left shrinks as the tree does.
    const slow = massDeleteReason(this.lost, maxDelete, maxDeletePercent, this.#baseline);
    if (slow) this.#blocked = `${slow} since the last publish`;
  }
}
