// A counting semaphore: at most `n` holders at once, FIFO for the waiters.

/** Bounds concurrent work. */
export class Semaphore {
  #free: number;
  #waiters: (() => void)[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  /** Resolves when a slot is held; call the returned function to release it. */
  async acquire(): Promise<() => void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiters.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.#free++;
    };
  }
}
