// A wait that another part of the program can cut short: a watching client
// sleeps its poll interval, and a version notice ends the sleep at once.

/**
 * A sleep that {@linkcode Nudge.poke} ends early. A poke while nobody waits
 * is kept for the next wait, so one that lands during work is not lost.
 *
 * @example
 * ```ts
 * const nudge = new Nudge();
 * onNotice(() => nudge.poke());
 * while (!signal.aborted) {
 *   await check();
 *   await nudge.wait(60_000, signal); // the interval, or less when poked
 * }
 * ```
 */
export class Nudge {
  #pending = false;
  #wake: (() => void) | null = null;

  /** Ends the current wait, or the next one at once. */
  poke(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /**
   * Waits `ms`, or less when poked (now or since the last wait) or when
   * `signal` aborts. Resolves true when poked.
   */
  wait(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (poked: boolean) => {
        clearTimeout(t);
        signal?.removeEventListener("abort", onAbort);
        this.#wake = null;
        if (poked) this.#pending = false;
        resolve(poked);
      };
      const onAbort = () => done(false);
      const t = setTimeout(() => done(false), ms);
      this.#wake = () => done(true);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
