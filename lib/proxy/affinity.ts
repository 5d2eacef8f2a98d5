/**
 * Client affinity: which backend each client address was last sent to, and
 * since when, so that the connections of one client run (the release files,
 * then the files they name) reach one server while the servers hold
 * different versions.
 *
 * An entry's window runs from the pick that made it and is never extended
 * by later connections: clients behind one NAT share an address, and must
 * not stay on one backend for as long as any of them keeps connecting. The
 * table holds at most `max` entries, expired ones swept and the oldest
 * evicted when it is full, so clients from ever new addresses cannot grow
 * it without bound.
 *
 * @module
 */

/** Options of {@linkcode AffinityTable}. */
export interface AffinityOptions {
  /** How long after a client's pick its connections stay with that backend (ms); 0: off. */
  window: number;
  /** Entries kept at most (default {@linkcode MAX_AFFINITY_ENTRIES}). */
  max?: number;
  /** The clock (tests). */
  now?: () => number;
}

/**
 * The most client addresses the table remembers at once: far more than the
 * clients that run within one window, and a few megabytes at the most.
 */
export const MAX_AFFINITY_ENTRIES = 65_536;

interface Entry<T> {
  backend: T;
  /** When the pick was made (ms since epoch). */
  at: number;
}

/**
 * Client address → the backend its window holds it to.
 *
 * @example
 * ```ts
 * const table = new AffinityTable<string>({ window: 10_000 });
 * table.remember("192.0.2.7", "rsync2");
 * table.lookup("192.0.2.7", (b) => rotation.includes(b)); // "rsync2" for 10 s
 * ```
 */
export class AffinityTable<T> {
  readonly window: number;
  readonly max: number;
  #now: () => number;
  /** In the order the entries were made (a renewed entry moves to the end): oldest first. */
  #entries = new Map<string, Entry<T>>();

  constructor(opts: AffinityOptions) {
    this.window = opts.window;
    this.max = Math.max(1, opts.max ?? MAX_AFFINITY_ENTRIES);
    this.#now = opts.now ?? Date.now;
  }

  /** Off: a window of 0. */
  get enabled(): boolean {
    return this.window > 0;
  }

  /** Clients held to a backend now (expired entries swept first). */
  get size(): number {
    this.#sweep(this.#now());
    return this.#entries.size;
  }

  /**
   * The backend `client` was sent to within the window, when `usable`
   * accepts it (in rotation, not tried yet for this connection); else null.
   */
  lookup(client: string, usable: (backend: T) => boolean): T | null {
    if (!this.enabled) return null;
    const e = this.#entries.get(client);
    if (!e) return null;
    if (!this.#live(e, this.#now())) {
      this.#entries.delete(client);
      return null;
    }
    return usable(e.backend) ? e.backend : null;
  }

  /** Holds `client` to `backend` for a window from now (a new pick: a new window). */
  remember(client: string, backend: T): void {
    if (!this.enabled) return;
    const now = this.#now();
    this.#sweep(now);
    this.#entries.delete(client);
    while (this.#entries.size >= this.max) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(client, { backend, at: now });
  }

  /**
   * Drops the expired entries: the oldest first, so the sweep stops at the
   * first live one. After the clock stepped back, the oldest entries are
   * dated after now, and go too.
   */
  #sweep(now: number): void {
    for (const [client, e] of this.#entries) {
      if (this.#live(e, now)) return;
      this.#entries.delete(client);
    }
  }

  /**
   * Whether `e`'s window holds at `now`. A pick dated after `now` (the
   * clock stepped back) holds no more: its window would last the step too.
   */
  #live(e: Entry<T>, now: number): boolean {
    return e.at <= now && now - e.at < this.window;
  }
}
