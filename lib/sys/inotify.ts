/**
 * inotify through FFI, for lib/watch/watch.ts: one watch per directory on one
 * inotify descriptor, read by an epoll reactor on this thread, with events
 * handed over in Deno's `FsEvent` shape (kind, paths, flag).
 *
 * Against `Deno.watchFs` in a worker, it saves the worker's isolate (a heap
 * of its own), reports a kernel queue overflow every time (Deno does not
 * always), and a watch added for a new directory costs one syscall and
 * nothing later (Deno checks every event against every watch it ever opened).
 *
 * @module
 */

import { Reactor } from "./epoll.ts";
import { EAGAIN, EINTR, errno, type Libc, strerror } from "./libc.ts";

/** One event, as lib/watch/watch.ts takes it: Deno's kinds, absolute paths, and "rescan" on overflow. */
export type RawEvent = [kind: Deno.FsEvent["kind"], paths: string[], flag: string | null];

const IN_MODIFY = 0x2;
const IN_ATTRIB = 0x4;
const IN_CLOSE_WRITE = 0x8;
const IN_MOVED_FROM = 0x40;
const IN_MOVED_TO = 0x80;
const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const IN_Q_OVERFLOW = 0x4000;
const IN_IGNORED = 0x8000;
const IN_ONLYDIR = 0x01000000;
const IN_DONT_FOLLOW = 0x02000000;
const IN_EXCL_UNLINK = 0x04000000;
const MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
  IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK;
const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const ENOENT = 2;
const ENOTDIR = 20;
const ENOSPC = 28;
const EPOLLIN = 0x1;

/**
 * Watches directories with inotify and reports their events.
 *
 * @example
 * ```ts
 * const src = new InotifySource(libc, (events) => handle(events), (msg) => fallBack(msg));
 * await src.watch(["/srv/plugins", "/srv/plugins/a"]);
 * await src.terminate();
 * ```
 */
export class InotifySource {
  #c: Libc;
  #fd: number;
  #reactor: Reactor;
  #paths = new Map<number, string>();
  #onEvents: (events: RawEvent[]) => void;
  #onError: (message: string) => void;
  #buf = new Uint8Array(64 * 1024);
  #path = new Uint8Array(4097);
  #enc = new TextEncoder();
  #dec = new TextDecoder();
  #closed = false;

  /** @throws {Error} when the kernel refuses an inotify instance (`max_user_instances`). */
  constructor(
    c: Libc,
    onEvents: (events: RawEvent[]) => void,
    onError: (message: string) => void,
  ) {
    this.#c = c;
    this.#onEvents = onEvents;
    this.#onError = onError;
    this.#fd = c.inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.#fd < 0) {
      throw new Error(
        `cannot start inotify: ${strerror(c, errno(c))} (fs.inotify.max_user_instances)`,
      );
    }
    // Events come a few at a time: no hot polling, the wait parks at once.
    this.#reactor = new Reactor(c, { hot: false });
    this.#reactor.watch(this.#fd, EPOLLIN, () => this.#read());
  }

  /** Never crowded: a watch added later costs nothing per event. */
  readonly crowded = false;

  /**
   * Watches `dirs` (each non-recursively, never through a symbolic link).
   *
   * A directory gone since it was listed is skipped.
   *
   * @throws {Error} `… ENOSPC …` when the user's watch limit is reached
   * (`fs.inotify.max_user_watches`).
   */
  watch(dirs: string[]): Promise<void> {
    const c = this.#c;
    for (const dir of dirs) {
      const { read, written } = this.#enc.encodeInto(dir, this.#path.subarray(0, 4096));
      if (read !== dir.length) {
        return Promise.reject(new Error(`cannot watch ${dir}: path longer than 4095 bytes`));
      }
      this.#path[written] = 0;
      const wd = c.inotify_add_watch(this.#fd, this.#path, MASK);
      if (wd < 0) {
        const e = errno(c);
        // Removed since the walk listed it: its removal event follows (or
        // came already), and nothing below it is left to watch.
        if (e === ENOENT || e === ENOTDIR) continue;
        const why = e === ENOSPC ? "ENOSPC: no space left for inotify watches" : strerror(c, e);
        return Promise.reject(new Error(`cannot watch ${dir}: ${why}`));
      }
      // The same directory renamed gets the same descriptor back: it now has this name.
      this.#paths.set(wd, dir);
    }
    return Promise.resolve();
  }

  /** Delivers every event queued so far. */
  drain(): Promise<void> {
    if (!this.#closed) this.#read();
    return Promise.resolve();
  }

  /** Stops watching (closes the descriptor, with its watches). */
  async terminate(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#reactor.forget(this.#fd);
    this.#c.close(this.#fd);
    await this.#reactor.close();
  }

  #read(): void {
    const c = this.#c;
    const events: RawEvent[] = [];
    for (;;) {
      const n = Number(c.read(this.#fd, this.#buf, BigInt(this.#buf.length)));
      if (n > 0) {
        this.#parse(n, events);
        continue;
      }
      if (n === 0) break;
      const e = errno(c);
      if (e === EINTR) continue;
      if (e !== EAGAIN) this.#onError(`inotify read failed: ${strerror(c, e)}`);
      break;
    }
    if (events.length) this.#onEvents(events);
  }

  #parse(n: number, out: RawEvent[]): void {
    const dv = new DataView(this.#buf.buffer, 0, n);
    for (let off = 0; off + 16 <= n;) {
      const wd = dv.getInt32(off, true);
      const mask = dv.getUint32(off + 4, true);
      const len = dv.getUint32(off + 12, true);
      let nameEnd = off + 16;
      while (nameEnd < off + 16 + len && this.#buf[nameEnd] !== 0) nameEnd++;
      const name = this.#dec.decode(this.#buf.subarray(off + 16, nameEnd));
      off += 16 + len;
      if (mask & IN_Q_OVERFLOW) {
        out.push(["other", [], "rescan"]);
        continue;
      }
      const dir = this.#paths.get(wd);
      if (mask & IN_IGNORED) {
        this.#paths.delete(wd);
        continue;
      }
      if (dir === undefined) continue;
      const path = name ? `${dir}/${name}` : dir;
      const kind: Deno.FsEvent["kind"] = mask & IN_CREATE
        ? "create"
        : mask & IN_DELETE
        ? "remove"
        : mask & (IN_MOVED_FROM | IN_MOVED_TO)
        ? "rename"
        : mask & IN_CLOSE_WRITE
        ? "access"
        : "modify";
      out.push([kind, [path], null]);
    }
  }
}
