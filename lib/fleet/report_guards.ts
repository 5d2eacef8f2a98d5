// The primary's defences of POST /report that need memory: a per-host rate
// limit, a rate limit over all hosts, and the set of signatures already used.
// They forget what has aged out, so their size stays bounded by
// (hosts x rate x window).

/** At most `limit` events per key in any `windowMs`. */
export class RateLimiter {
  #events = new Map<string, number[]>();
  #lastSweep = 0;
  constructor(readonly limit: number, readonly windowMs: number) {}

  /** Takes one event for `key` at `now`; returns 0 when allowed, else ms until one is. */
  take(key: string, now: number): number {
    this.#sweep(now);
    const since = now - this.windowMs;
    const list = (this.#events.get(key) ?? []).filter((t) => t > since);
    if (list.length >= this.limit) {
      this.#events.set(key, list);
      return list[0] + this.windowMs - now;
    }
    list.push(now);
    this.#events.set(key, list);
    return 0;
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < this.windowMs) return;
    this.#lastSweep = now;
    for (const [k, list] of this.#events) {
      if (list[list.length - 1] <= now - this.windowMs) this.#events.delete(k);
    }
  }
}

/** Signatures seen within the accepted clock window; a second use is a replay. */
export class ReplayCache {
  #seen = new Map<string, number>();
  #lastSweep = 0;
  constructor(readonly windowMs: number) {}

  /** Records `sig` (signed at `t` ms); false when it was already seen. */
  remember(sig: string, t: number, now: number): boolean {
    if (now - this.#lastSweep >= 10_000) {
      this.#lastSweep = now;
      // A signature older than the window is refused as stale anyway.
      for (const [s, at] of this.#seen) if (at < now - this.windowMs) this.#seen.delete(s);
    }
    if (this.#seen.has(sig)) return false;
    this.#seen.set(sig, t);
    return true;
  }
}

/**
 * At most `perMinute` events a minute over all keys, as a token bucket: a
 * burst of up to `perMinute` passes at once, then events pass at the refill
 * rate, so once a flood stops the next event waits a second or so, not a minute.
 */
export class GlobalRate {
  #tokens: number;
  #at = 0;
  constructor(readonly perMinute: number) {
    this.#tokens = perMinute;
  }

  /** Takes one event at `now`; returns 0 when allowed, else ms until one is. */
  take(now: number): number {
    const perMs = this.perMinute / 60_000;
    this.#tokens = Math.min(this.perMinute, this.#tokens + Math.max(0, now - this.#at) * perMs);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    // Less a hair, so float error never rounds a whole millisecond up.
    return Math.ceil((1 - this.#tokens) / perMs - 1e-6);
  }
}
