/**
 * Where one direction of a relay keeps bytes between reading them from one
 * socket and passing them to the other, for lib/proxy/net/ffi.ts: a buffer
 * (read(2)/write(2), what nginx does) or a pipe (splice(2): the bytes stay in
 * the kernel). Pools lend a holder to a direction only while it holds bytes,
 * so idle connections hold none.
 *
 * @module
 */

import {
  F_SETPIPE_SZ,
  type Libc,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
} from "./libc.ts";

/** Bytes between two sockets. Calls return a byte count, 0 at EOF (fill), or -1 with errno set. */
export interface Holder {
  /** Reads from `fd` into the (empty) holder. */
  fill(fd: number): number;
  /** Writes up to `n` of the bytes still held (the last `n` filled) to `fd`. */
  flush(fd: number, n: number): number;
}

/** Lends holders; one that still holds bytes when given back is dropped. */
export interface HolderPool {
  take(): Holder | null;
  give(h: Holder, empty: boolean): void;
  close(): void;
}

/** How bytes move: `copy` through a buffer, `splice` through a pipe. */
export type Mover = "copy" | "splice";

/** A pool of the holders `mover` needs. */
export function holderPool(c: Libc, mover: Mover): HolderPool {
  return mover === "copy" ? new BufferPool(c) : new PipePool(c);
}

const BUFFER_SIZE = 256 * 1024;
const BUFFER_BIG = BigInt(BUFFER_SIZE);
const MAX_FREE_BUFFERS = 64;

class BufferHolder implements Holder {
  readonly buf = new Uint8Array(BUFFER_SIZE);
  #c: Libc;
  #filled = 0;
  constructor(c: Libc) {
    this.#c = c;
  }
  fill(fd: number): number {
    const n = Number(this.#c.read(fd, this.buf, BUFFER_BIG));
    this.#filled = n > 0 ? n : 0;
    return n;
  }
  flush(fd: number, n: number): number {
    const from = this.#filled - n;
    return Number(this.#c.write(fd, from === 0 ? this.buf : this.buf.subarray(from), BigInt(n)));
  }
}

class BufferPool implements HolderPool {
  #c: Libc;
  #free: BufferHolder[] = [];
  constructor(c: Libc) {
    this.#c = c;
  }
  take(): Holder {
    return this.#free.pop() ?? new BufferHolder(this.#c);
  }
  give(h: Holder): void {
    if (this.#free.length < MAX_FREE_BUFFERS) this.#free.push(h as BufferHolder);
  }
  close(): void {
    this.#free = [];
  }
}

/** One splice moves at most this much. */
const PIPE_SIZE = 1024 * 1024;
const PIPE_BIG = BigInt(PIPE_SIZE);
/** Pipes kept for reuse (1 MiB each counts against the user's pipe pages). */
const MAX_FREE_PIPES = 16;
const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

class PipeHolder implements Holder {
  readonly r: number;
  readonly w: number;
  #c: Libc;
  constructor(c: Libc, r: number, w: number) {
    this.#c = c;
    this.r = r;
    this.w = w;
  }
  fill(fd: number): number {
    return Number(this.#c.splice(fd, null, this.w, null, PIPE_BIG, SPLICE_FLAGS));
  }
  flush(fd: number, n: number): number {
    return Number(this.#c.splice(this.r, null, fd, null, BigInt(n), SPLICE_FLAGS));
  }
}

class PipePool implements HolderPool {
  #c: Libc;
  #free: PipeHolder[] = [];
  constructor(c: Libc) {
    this.#c = c;
  }
  take(): Holder | null {
    const p = this.#free.pop();
    if (p) return p;
    const fds = new Int32Array(2);
    if (this.#c.pipe2(fds, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0) return null;
    // Bigger pipes move more per call; past the user's pipe-page limit the
    // kernel refuses, and the default 64 KiB still works.
    this.#c.fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    return new PipeHolder(this.#c, fds[0], fds[1]);
  }
  give(h: Holder, empty: boolean): void {
    const p = h as PipeHolder;
    if (empty && this.#free.length < MAX_FREE_PIPES) this.#free.push(p);
    else this.#close(p);
  }
  close(): void {
    for (const p of this.#free.splice(0)) this.#close(p);
  }
  #close(p: PipeHolder): void {
    this.#c.close(p.r);
    this.#c.close(p.w);
  }
}
