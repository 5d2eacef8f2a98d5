/**
 * The `splice` proxy engine: sockets opened through FFI, watched by an epoll
 * reactor, and bytes moved socket → pipe → socket with splice(2), so they
 * never enter the process. The copy engine spends most of its CPU copying
 * every byte into JavaScript buffers and back out; this one leaves the
 * kernel only the page references to pass on.
 *
 * Each direction of a connection borrows a pipe from a small pool only while
 * it holds data, so a thousand idle connections hold no pipes.
 *
 * @module
 */

import type { HostPort } from "./address.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, Reactor } from "./_epoll.ts";
import {
  decodeSockAddr,
  EADDRINUSE,
  EADDRNOTAVAIL,
  EAGAIN,
  ECONNREFUSED,
  EINPROGRESS,
  EINTR,
  errno,
  F_SETPIPE_SZ,
  IPPROTO_TCP,
  type Libc,
  openLibc,
  resolveSockAddrs,
  SHUT_WR,
  SO_ERROR,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  type SockAddr,
  SOL_SOCKET,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
  strerror,
  TCP_NODELAY,
} from "./_libc.ts";
import type { ByteCounter, ProxyConn, ProxyListener, ProxyNet } from "./proxy_net.ts";

/** Bytes a pipe holds: one splice moves at most this much. */
const PIPE_SIZE = 1024 * 1024;
const PIPE_BIG = BigInt(PIPE_SIZE);
/** Pipes kept for reuse (1 MiB each counts against the user's pipe pages). */
const MAX_FREE_PIPES = 16;
/** Splice rounds for one direction before it yields to other connections. */
const ROUNDS = 32;
const ECONNABORTED = 103;
const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

/**
 * Opens the engine, or says why it cannot be used here.
 *
 * @example
 * ```ts
 * const got = openSpliceNet();
 * if (typeof got === "string") console.log(`no splice: ${got}`);
 * ```
 */
export function openSpliceNet(): ProxyNet | string {
  const c = openLibc();
  if (typeof c === "string") return c;
  return new SpliceNet(c);
}

interface Pipe {
  r: number;
  w: number;
}

class SpliceNet implements ProxyNet {
  readonly engine = "splice" as const;
  readonly c: Libc;
  readonly reactor: Reactor;
  #pipes: Pipe[] = [];
  #int = new Int32Array(1);

  constructor(c: Libc) {
    this.c = c;
    this.reactor = new Reactor(c);
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
    for (const p of this.#pipes.splice(0)) this.#closePipe(p);
  }

  takePipe(): Pipe | null {
    const p = this.#pipes.pop();
    if (p) return p;
    const fds = new Int32Array(2);
    if (this.c.pipe2(fds, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0) return null;
    // Bigger pipes move more per call; past the user's pipe-page limit the
    // kernel refuses, and the default 64 KiB still works.
    this.c.fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    return { r: fds[0], w: fds[1] };
  }

  givePipe(p: Pipe, empty: boolean): void {
    if (empty && this.#pipes.length < MAX_FREE_PIPES) this.#pipes.push(p);
    else this.#closePipe(p);
  }

  #closePipe(p: Pipe): void {
    this.c.close(p.r);
    this.c.close(p.w);
  }

  #socket(sa: SockAddr): number {
    const family = new DataView(sa.buf.buffer).getUint16(0, true);
    const fd = this.c.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw osError(this.c, errno(this.c));
    return fd;
  }
}

/** One direction of a relay: `src` → pipe → `dst`. */
class Flow {
  #net: SpliceNet;
  #src: FdSocket;
  #dst: FdSocket;
  #count: (n: number) => void;
  #fail: () => void;
  #done: () => void;
  #pipe: Pipe | null = null;
  /** Bytes in the pipe not yet passed on. */
  #held = 0;
  #eof = false;
  #finished = false;

  constructor(
    net: SpliceNet,
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
        const n = Number(
          c.splice(this.#pipe!.r, null, dst.fd, null, BigInt(this.#held), SPLICE_FLAGS),
        );
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
      this.#pipe ??= this.#net.takePipe();
      if (!this.#pipe) return this.#fail();
      const n = Number(c.splice(src.fd, null, this.#pipe.w, null, PIPE_BIG, SPLICE_FLAGS));
      if (n > 0) {
        this.#held = n;
        this.#count(n);
      } else if (n === 0) {
        this.#eof = true;
      } else {
        const e = errno(c);
        if (e === EINTR) continue;
        if (e !== EAGAIN) return this.#fail();
        // Nothing to read: the pipe is empty, so it goes back to the pool.
        this.release();
        return this.#wait(EPOLLIN);
      }
    }
    // Still busy after many rounds: give other connections a turn; the
    // level-triggered reactor reports this one again at once.
    this.#wait(this.#held > 0 ? EPOLLOUT : EPOLLIN);
  };

  /** Returns the pipe to the pool (or closes it if it still holds bytes). */
  release(): void {
    if (!this.#pipe) return;
    this.#net.givePipe(this.#pipe, this.#held === 0);
    this.#pipe = null;
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
  #net: SpliceNet;
  #onIn: (() => void) | null = null;
  #onOut: (() => void) | null = null;
  #local: Deno.NetAddr | null = null;

  constructor(net: SpliceNet, fd: number, remote: Deno.NetAddr) {
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
  #net: SpliceNet;
  #sock: FdSocket;
  #sa = new Uint8Array(28);
  #len = new Uint32Array(1);

  constructor(net: SpliceNet, fd: number) {
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
