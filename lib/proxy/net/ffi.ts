/**
 * The proxy's native engines: sockets opened through FFI and watched by the
 * process's own epoll loop (lib/sys/epoll.ts), bytes moved by plain system calls
 * with no promise, op or Deno resource per chunk. Two movers (lib/sys/holders.ts):
 *
 * - `copy`: read(2) into a 256 KiB buffer, write(2) out of it, as nginx does;
 * - `splice`: socket → pipe → socket with splice(2), so the bytes never enter
 *   the process. Half the proxy's own CPU, but on loopback the whole machine
 *   spent more per GB (see docs/benchmarks.md), so it is not the default.
 *
 * Each direction of a connection borrows a buffer or pipe only while it holds
 * bytes, so a thousand idle connections hold neither.
 *
 * @module
 */

import type { HostPort } from "../../core/mod.ts";
import {
  decodeSockAddr,
  EADDRINUSE,
  EADDRNOTAVAIL,
  EAGAIN,
  ECONNREFUSED,
  EINPROGRESS,
  EINTR,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  errno,
  type Holder,
  type HolderPool,
  holderPool,
  IPPROTO_TCP,
  type Libc,
  type Mover,
  openLibc,
  Reactor,
  resolveSockAddrs,
  SHUT_WR,
  SO_ERROR,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  type SockAddr,
  SOL_SOCKET,
  strerror,
  TCP_NODELAY,
} from "../../sys/mod.ts";
import type { ByteCounter, ProxyConn, ProxyListener, ProxyNet } from "./net.ts";

/** Rounds (a read and its writes) for one direction before it yields to other connections. */
const ROUNDS = 32;
const ECONNABORTED = 103;

/**
 * Opens a native engine moving bytes with `mover`, or says why it cannot be
 * used here.
 *
 * @example
 * ```ts
 * const got = openFfiNet("copy");
 * if (typeof got === "string") console.log(`no native engine: ${got}`);
 * ```
 */
export function openFfiNet(mover: Mover): ProxyNet | string {
  const c = openLibc();
  if (typeof c === "string") return c;
  return new FfiNet(c, mover);
}

class FfiNet implements ProxyNet {
  readonly engine: Mover;
  readonly c: Libc;
  readonly reactor: Reactor;
  readonly holders: HolderPool;
  #int = new Int32Array(1);

  constructor(c: Libc, mover: Mover) {
    this.c = c;
    this.engine = mover;
    this.reactor = new Reactor(c);
    this.holders = holderPool(c, mover);
  }

  async listen(at: HostPort): Promise<ProxyListener> {
    const c = this.c;
    const [sa] = await resolveSockAddrs(c, at.host, at.port);
    const fd = this.#socket(sa);
    this.#int[0] = 1;
    c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, this.#int, 4);
    if (c.bind(fd, sa.buf, sa.len) < 0 || c.listen(fd, 4096) < 0) {
      const e = errno(c);
      c.close(fd);
      throw osError(c, e);
    }
    return new FdListener(this, fd);
  }

  async connect(at: HostPort, ms: number): Promise<ProxyConn> {
    const until = Date.now() + ms;
    const addrs = await resolveSockAddrs(this.c, at.host, at.port);
    let last: unknown = null;
    for (const sa of addrs) {
      try {
        return await this.#connectOne(sa, until - Date.now(), ms);
      } catch (e) {
        last = e;
        if (e instanceof Deno.errors.TimedOut) break;
      }
    }
    throw last;
  }

  async #connectOne(sa: SockAddr, left: number, ms: number): Promise<FdSocket> {
    const c = this.c;
    if (left <= 0) throw new Deno.errors.TimedOut(`no answer within ${ms}ms`);
    const s = new FdSocket(this, this.#socket(sa), decodeSockAddr(sa.buf));
    if (c.connect(s.fd, sa.buf, sa.len) < 0) {
      const e = errno(c);
      if (e !== EINPROGRESS) {
        s.close();
        throw osError(c, e);
      }
      let timedOut = false;
      const t = setTimeout(() => {
        timedOut = true;
        s.close();
      }, left);
      try {
        // Until the kernel says how it went: a stale event (a reused
        // descriptor number) can report writable before the handshake ends.
        for (;;) {
          await s.ready(EPOLLOUT);
          if (timedOut) throw new Deno.errors.TimedOut(`no answer within ${ms}ms`);
          this.#int[0] = 0;
          c.getsockopt(s.fd, SOL_SOCKET, SO_ERROR, this.#int, new Uint32Array([4]));
          if (this.#int[0] !== 0) {
            const e = this.#int[0];
            s.close();
            throw osError(c, e);
          }
          const sa = new Uint8Array(28);
          if (c.getpeername(s.fd, sa, new Uint32Array([28])) === 0) break;
        }
      } finally {
        clearTimeout(t);
      }
    }
    return s;
  }

  relay(client: ProxyConn, upstream: ProxyConn, count: ByteCounter): Promise<void> {
    const a = client as FdSocket, b = upstream as FdSocket;
    if (a.closed || b.closed) {
      // Closed while connecting (an idle sweep, a drain cut): nothing to relay.
      a.close();
      b.close();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let open = 2;
      const finish = () => {
        up.release();
        down.release();
        a.onClose = b.onClose = null;
        if (!a.closed) a.unwatch();
        if (!b.closed) b.unwatch();
        resolve();
      };
      const fail = () => {
        a.close();
        b.close();
      };
      const flowDone = () => {
        if (--open === 0) finish();
      };
      const up = new Flow(this, a, b, (n) => count(true, n), fail, flowDone);
      const down = new Flow(this, b, a, (n) => count(false, n), fail, flowDone);
      a.onClose = b.onClose = () => {
        if (open > 0) {
          open = 0;
          finish();
        }
      };
      up.run();
      down.run();
    });
  }

  async close(): Promise<void> {
    await this.reactor.close();
    this.holders.close();
  }

  #socket(sa: SockAddr): number {
    const family = new DataView(sa.buf.buffer).getUint16(0, true);
    const fd = this.c.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw osError(this.c, errno(this.c));
    return fd;
  }
}

/** One direction of a relay: `src` → holder → `dst`. */
class Flow {
  #net: FfiNet;
  #src: FdSocket;
  #dst: FdSocket;
  #count: (n: number) => void;
  #fail: () => void;
  #done: () => void;
  #holder: Holder | null = null;
  /** Bytes held not yet passed on. */
  #held = 0;
  #eof = false;
  #finished = false;

  constructor(
    net: FfiNet,
    src: FdSocket,
    dst: FdSocket,
    count: (n: number) => void,
    fail: () => void,
    done: () => void,
  ) {
    this.#net = net;
    this.#src = src;
    this.#dst = dst;
    this.#count = count;
    this.#fail = fail;
    this.#done = done;
  }

  /** Moves what can move now, then waits for whichever side blocked. */
  run = (): void => {
    const c = this.#net.c;
    const src = this.#src, dst = this.#dst;
    if (this.#finished || src.closed || dst.closed) return;
    for (let round = 0; round < ROUNDS; round++) {
      if (this.#held > 0) {
        const n = this.#holder!.flush(dst.fd, this.#held);
        if (n < 0) {
          const e = errno(c);
          if (e === EINTR) continue;
          if (e === EAGAIN) return this.#wait(EPOLLOUT);
          return this.#fail();
        }
        this.#held -= n;
        continue;
      }
      if (this.#eof) {
        this.#finished = true;
        this.#wait(0);
        c.shutdown(dst.fd, SHUT_WR);
        return this.#done();
      }
      this.#holder ??= this.#net.holders.take();
      if (!this.#holder) return this.#fail();
      const n = this.#holder.fill(src.fd);
      if (n > 0) {
        this.#held = n;
        this.#count(n);
      } else if (n === 0) {
        this.#eof = true;
      } else {
        const e = errno(c);
        if (e === EINTR) continue;
        if (e !== EAGAIN) return this.#fail();
        // Nothing to read: the holder is empty, so it goes back to the pool.
        this.release();
        return this.#wait(EPOLLIN);
      }
    }
    // Still busy after many rounds: give other connections a turn; the
    // level-triggered reactor reports this one again at once.
    this.#wait(this.#held > 0 ? EPOLLOUT : EPOLLIN);
  };

  /** Returns the holder to the pool (dropped if it still holds bytes). */
  release(): void {
    if (!this.#holder) return;
    this.#net.holders.give(this.#holder, this.#held === 0);
    this.#holder = null;
    this.#held = 0;
  }

  #wait(on: number): void {
    this.#src.want(EPOLLIN, on === EPOLLIN ? this.run : null);
    this.#dst.want(EPOLLOUT, on === EPOLLOUT ? this.run : null);
  }
}

/** A non-blocking socket registered with the reactor on demand. */
class FdSocket implements ProxyConn {
  readonly fd: number;
  readonly remoteAddr: Deno.NetAddr;
  closed = false;
  /** Set by a relay: runs once when the socket is closed. */
  onClose: (() => void) | null = null;
  #net: FfiNet;
  #onIn: (() => void) | null = null;
  #onOut: (() => void) | null = null;
  #local: Deno.NetAddr | null = null;

  constructor(net: FfiNet, fd: number, remote: Deno.NetAddr) {
    this.#net = net;
    this.fd = fd;
    this.remoteAddr = remote;
  }

  get localAddr(): Deno.NetAddr {
    if (!this.#local) {
      const sa = new Uint8Array(28), len = new Uint32Array([28]);
      this.#net.c.getsockname(this.fd, sa, len);
      this.#local = decodeSockAddr(sa);
    }
    return this.#local;
  }

  /** Sets (or clears, with null) the callback for one kind of readiness. */
  want(kind: typeof EPOLLIN | typeof EPOLLOUT, fn: (() => void) | null): void {
    if (this.closed) return;
    if (kind === EPOLLIN) this.#onIn = fn;
    else this.#onOut = fn;
    const mask = (this.#onIn ? EPOLLIN : 0) | (this.#onOut ? EPOLLOUT : 0);
    this.#net.reactor.watch(this.fd, mask, this.#handle);
  }

  /** Stops waiting for anything (a relay that ended while the socket stays open). */
  unwatch(): void {
    this.#onIn = this.#onOut = null;
    this.#net.reactor.forget(this.fd);
  }

  /** Resolves when the socket is ready for `kind`, or closed. */
  ready(kind: typeof EPOLLIN | typeof EPOLLOUT): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const done = () => {
        this.want(kind, null);
        this.#waiters.delete(done);
        resolve();
      };
      this.#waiters.add(done);
      this.want(kind, done);
    });
  }
  #waiters = new Set<() => void>();

  #handle = (ev: number): void => {
    const bad = ev & (EPOLLERR | EPOLLHUP);
    if ((ev & EPOLLIN || bad) && this.#onIn) this.#onIn();
    if ((ev & EPOLLOUT || bad) && this.#onOut && !this.closed) this.#onOut();
  };

  setNoDelay(noDelay = true): void {
    const v = new Int32Array([noDelay ? 1 : 0]);
    this.#net.c.setsockopt(this.fd, IPPROTO_TCP, TCP_NODELAY, v, 4);
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.closed) throw new Deno.errors.BadResource("socket closed");
      const n = Number(this.#net.c.read(this.fd, p as Uint8Array<ArrayBuffer>, BigInt(p.length)));
      if (n > 0) return n;
      if (n === 0) return p.length === 0 ? 0 : null;
      const e = errno(this.#net.c);
      if (e === EAGAIN) await this.ready(EPOLLIN);
      else if (e !== EINTR) throw osError(this.#net.c, e);
    }
  }

  async write(p: Uint8Array): Promise<number> {
    for (;;) {
      if (this.closed) throw new Deno.errors.BadResource("socket closed");
      const n = Number(this.#net.c.write(this.fd, p as Uint8Array<ArrayBuffer>, BigInt(p.length)));
      if (n >= 0) return n;
      const e = errno(this.#net.c);
      if (e === EAGAIN) await this.ready(EPOLLOUT);
      else if (e !== EINTR) throw osError(this.#net.c, e);
    }
  }

  closeWrite(): Promise<void> {
    if (!this.closed) this.#net.c.shutdown(this.fd, SHUT_WR);
    return Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#onIn = this.#onOut = null;
    this.#net.reactor.forget(this.fd);
    this.#net.c.close(this.fd);
    for (const w of [...this.#waiters]) w();
    const f = this.onClose;
    this.onClose = null;
    f?.();
  }
}

class FdListener implements ProxyListener {
  #net: FfiNet;
  #sock: FdSocket;
  #sa = new Uint8Array(28);
  #len = new Uint32Array(1);

  constructor(net: FfiNet, fd: number) {
    this.#net = net;
    this.#sock = new FdSocket(net, fd, { transport: "tcp", hostname: "", port: 0 });
  }

  get addr(): Deno.NetAddr {
    return this.#sock.localAddr;
  }

  async accept(): Promise<ProxyConn> {
    const c = this.#net.c;
    for (;;) {
      if (this.#sock.closed) throw new Deno.errors.BadResource("listener closed");
      this.#len[0] = this.#sa.length;
      const fd = c.accept4(this.#sock.fd, this.#sa, this.#len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) return new FdSocket(this.#net, fd, decodeSockAddr(this.#sa));
      const e = errno(c);
      if (e === EAGAIN) await this.#sock.ready(EPOLLIN);
      else if (e !== EINTR && e !== ECONNABORTED) throw osError(c, e);
    }
  }

  close(): void {
    this.#sock.close();
  }
}

/** Maps an errno to the `Deno.errors` class Deno itself would throw. */
function osError(c: Libc, e: number): Error {
  const msg = `${strerror(c, e)} (os error ${e})`;
  if (e === ECONNREFUSED) return new Deno.errors.ConnectionRefused(msg);
  if (e === EADDRINUSE) return new Deno.errors.AddrInUse(msg);
  if (e === EADDRNOTAVAIL) return new Deno.errors.AddrNotAvailable(msg);
  return new Error(msg);
}
