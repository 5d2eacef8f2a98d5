/**
 * The pending work of one replica: a bounded set of changed paths that
 * collapses into "push the whole tree" past a threshold, so a replica that is
 * down for a day costs a few bytes of memory, not a growing queue.
 *
 * @module
 */

/** One changed path, relative to the tree root. */
export interface Change {
  /** Relative path, no leading slash. */
  path: string;
  /**
   * True when everything under the path must be looked at: a new or
   * renamed-in directory, a removal. False for an in-place modification,
   * where walking a large existing directory would be wasted.
   */
  deep: boolean;
  /** The path is gone (a deletion): the push engine holds it a moment (lib/push/delete_guard.ts). */
  gone?: boolean;
  /** The path appeared (created or renamed in): it offsets a deletion in the guard's count. */
  created?: boolean;
}

/** What a push must do, as taken from a {@linkcode ChangeSet}. */
export type Work =
  | { kind: "full"; reason: string; since: number }
  | { kind: "paths"; changes: Change[]; since: number };

/**
 * A bounded set of changes.
 *
 * @example
 * ```ts
 * const set = new ChangeSet(1000);
 * set.add([{ path: "a/b.txt", deep: false }]);
 * const work = set.take(); // { kind: "paths", changes: [...] }
 * ```
 */
export class ChangeSet {
  #paths = new Map<string, boolean>();
  #full: string | null = null;
  #since: number | null = null;
  readonly maxPaths: number;

  constructor(maxPaths: number) {
    this.maxPaths = maxPaths;
  }

  /** Adds changes; past `maxPaths` distinct paths the set becomes a full push. */
  add(changes: Iterable<Change>): void {
    this.#since ??= Date.now();
    if (this.#full !== null) return;
    for (const c of changes) {
      this.#paths.set(c.path, (this.#paths.get(c.path) ?? false) || c.deep);
      if (this.#paths.size > this.maxPaths) {
        this.markFull(`more than ${this.maxPaths} changed paths`);
        return;
      }
    }
  }

  /** Asks for a full push (start, reconcile, overflow, retry after failure). */
  markFull(reason: string): void {
    this.#since ??= Date.now();
    if (this.#full === null) this.#full = reason;
    this.#paths.clear();
  }

  /** True when there is nothing to push. */
  get empty(): boolean {
    return this.#full === null && this.#paths.size === 0;
  }

  /** Number of pending paths (0 when a full push is pending). */
  get size(): number {
    return this.#paths.size;
  }

  /** When the oldest pending change arrived (ms since epoch), or null. */
  get since(): number | null {
    return this.#since;
  }

  /** The pending full-push reason, or null. */
  get fullReason(): string | null {
    return this.#full;
  }

  /** Takes everything pending, leaving the set empty; null when empty. */
  take(): Work | null {
    if (this.empty) return null;
    const since = this.#since ?? Date.now();
    const work: Work = this.#full !== null
      ? { kind: "full", reason: this.#full, since }
      : { kind: "paths", changes: [...this.#paths].map(([path, deep]) => ({ path, deep })), since };
    this.#paths.clear();
    this.#full = null;
    this.#since = null;
    return work;
  }
}
