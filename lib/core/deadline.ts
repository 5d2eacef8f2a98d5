// A deadline for one exchange that costs a cron client nothing to start.
//
// Deno 2.9 builds setTimeout on Node's timers, loaded on first use: a cost
// a one-shot cron process pays on every run, large next to a no-op client run
// (docs/benchmarks.md). AbortSignal.timeout runs on Deno's core timers. It
// cannot be cancelled, so it may keep the event loop up to `ms` after the
// exchange: fine for a run that ends with Deno.exit() and for servers, which
// probe again and again anyway.

/** What {@linkcode deadline} returns. */
export interface Deadline {
  /** Aborts when the time is up (pass it to Deno.connect). */
  signal: AbortSignal;
  /** True once the time was up. */
  readonly expired: boolean;
  /** The exchange is over: the deadline no longer calls `onExpire`. */
  done(): void;
}

/**
 * Calls `onExpire` after `ms` unless {@linkcode Deadline.done} came first.
 *
 * @example
 * ```ts
 * let conn: Deno.TcpConn | null = null;
 * const dl = deadline(5000, () => conn?.close());
 * try {
 *   conn = await Deno.connect({ hostname: "127.0.0.1", port: 873, signal: dl.signal });
 * } finally {
 *   dl.done();
 * }
 * ```
 */
export function deadline(ms: number, onExpire: () => void = () => {}): Deadline {
  const signal = AbortSignal.timeout(ms);
  let over = false;
  const fire = () => {
    if (!over) onExpire();
  };
  signal.addEventListener("abort", fire, { once: true });
  return {
    signal,
    get expired() {
      return signal.aborted;
    },
    done() {
      over = true;
      signal.removeEventListener("abort", fire);
    },
  };
}
