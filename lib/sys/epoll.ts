/**
 * A small epoll reactor for file descriptors opened through FFI: register a
 * descriptor with the events it waits for and a handler, and the handler runs
 * when the kernel reports them.
 *
 * While events keep coming it waits briefly on the main thread (nginx's loop,
 * in effect), yielding one event-loop turn between batches so timers, health
 * checks and HTTP still run; once quiet it parks on a worker thread (an FFI
 * `nonblocking` call, a thread round trip each), which an eventfd wakes when
 * the last descriptor leaves, so no call is left pending.
 *
 * Internal to lib/proxy/net/ffi.ts and lib/sys/inotify.ts.
 *
 * @module
 */

import { errno, type Libc } from "./libc.ts";

export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EFD_NONBLOCK = 0o4000;
const CLOEXEC = 0o2000000;
/** x86-64 packs `struct epoll_event` (12 bytes); arm64 pads it to 16. */
const EV_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const EV_DATA = Deno.build.arch === "x86_64" ? 4 : 8;
const MAX_EVENTS = 256;
/**
 * While traffic flows the loop waits on the main thread, at most this long
 * (ms) at a time: parking on the worker thread costs three context switches
 * a wake-up, which at loopback speeds would take a large share of the
 * proxy's CPU. Timers, health checks and HTTP wait at most this long for
 * their turn.
 */
const HOT_WAIT_MS = 2;
/** Empty short waits (≈ HOT_WAIT_MS each) before parking on the worker thread. */
const HOT_SPINS = 25;

/** Called with the ready events (`EPOLLIN | …`) of a registered descriptor. */
export type EventHandler = (events: number) => void;

/**
 * Runs handlers for ready descriptors.
 *
 * @example
 * ```ts
 * const r = new Reactor(libc);
 * r.watch(fd, EPOLLIN, (ev) => onReadable(ev));
 * r.watch(fd, 0, null); // stop watching
 * await r.close();
 * ```
 */
export class Reactor {
  #c: Libc;
  #ep: number;
  #wake: number;
  #handlers = new Map<number, EventHandler>();
  #masks = new Map<number, number>();
  #events = new Uint8Array(EV_SIZE * MAX_EVENTS);
  #view = new DataView(this.#events.buffer);
  #ctl = new Uint8Array(EV_SIZE);
  #ctlView = new DataView(this.#ctl.buffer);
  #loop: Promise<void> | null = null;
  #hot: boolean;

  /**
   * `hot: false` parks the wait on the worker thread at once, for a caller
   * whose events come a few at a time and whose main thread must not wait.
   *
   * @throws {Error} when the kernel refuses an epoll instance or an eventfd.
   */
  constructor(c: Libc, opts: { hot?: boolean } = {}) {
    this.#c = c;
    this.#hot = opts.hot ?? true;
    this.#ep = c.epoll_create1(CLOEXEC);
    this.#wake = c.eventfd(0, EFD_NONBLOCK | CLOEXEC);
    if (this.#ep < 0 || this.#wake < 0) throw new Error(`epoll: errno ${errno(c)}`);
    this.#control(EPOLL_CTL_ADD, this.#wake, EPOLLIN);
  }

  /**
   * Sets what `fd` waits for. A mask of 0 unregisters it, so a descriptor
   * nobody waits on cannot report a hang-up over and over.
   */
  watch(fd: number, mask: number, handler: EventHandler | null): void {
    const had = this.#masks.get(fd) ?? 0;
    if (mask === 0 || handler === null) {
      if (had !== 0) this.forget(fd);
      return;
    }
    this.#handlers.set(fd, handler);
    if (had === mask) return;
    this.#control(had === 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, mask);
    this.#masks.set(fd, mask);
    this.#loop ??= this.#run();
  }

  /** Unregisters `fd` (call before closing it). */
  forget(fd: number): void {
    if (!this.#masks.has(fd)) return;
    this.#control(EPOLL_CTL_DEL, fd, 0);
    this.#masks.delete(fd);
    this.#handlers.delete(fd);
    if (this.#masks.size === 0) this.#poke();
  }

  /** Resolves once no descriptor is watched and the wait thread has returned. */
  async idle(): Promise<void> {
    while (this.#loop) await this.#loop;
  }

  /** Waits for {@linkcode idle}, then closes the epoll instance. */
  async close(): Promise<void> {
    for (const fd of [...this.#masks.keys()]) this.forget(fd);
    await this.idle();
    this.#c.close(this.#wake);
    this.#c.close(this.#ep);
  }

  #control(op: number, fd: number, mask: number): void {
    this.#ctlView.setUint32(0, mask, true);
    this.#ctlView.setBigUint64(EV_DATA, BigInt(fd), true);
    this.#c.epoll_ctl(this.#ep, op, fd, this.#ctl);
  }

  #poke(): void {
    this.#c.write(this.#wake, new BigUint64Array([1n]), 8n);
  }

  async #run(): Promise<void> {
    const c = this.#c;
    /** Empty short waits in a row; past HOT_SPINS the loop parks on the worker thread. */
    let quiet = HOT_SPINS;
    let failures = 0;
    try {
      while (this.#masks.size > 0) {
        let n: number;
        if (quiet < HOT_SPINS && this.#hot) {
          n = c.epoll_wait(this.#ep, this.#events, MAX_EVENTS, HOT_WAIT_MS);
          quiet = n > 0 ? 0 : quiet + 1;
        } else {
          n = c.epoll_wait(this.#ep, this.#events, MAX_EVENTS, 0);
          if (n === 0) n = await c.epoll_wait_blocking(this.#ep, this.#events, MAX_EVENTS, -1);
          quiet = 0;
        }
        // A signal landing on the waiting thread interrupts it (EINTR); that
        // thread's errno cannot be read from here, so any failure is retried,
        // and only a failure that persists is an error.
        if (n < 0) {
          if (++failures > 100) throw new Error(`epoll_wait keeps failing (errno ${errno(c)})`);
          n = 0;
        } else failures = 0;
        this.#dispatch(n);
        // One turn for everything else in the process before the next batch.
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.#loop = null;
    }
  }

  #dispatch(n: number): void {
    for (let i = 0; i < n; i++) {
      const ev = this.#view.getUint32(i * EV_SIZE, true);
      const fd = this.#view.getUint32(i * EV_SIZE + EV_DATA, true);
      if (fd === this.#wake) {
        this.#c.read(this.#wake, new Uint8Array(8), 8n);
        continue;
      }
      // Stale events for a descriptor unregistered earlier in this batch are
      // dropped; handlers treat events as hints and retry their call anyway.
      this.#handlers.get(fd)?.(ev);
    }
  }
}
