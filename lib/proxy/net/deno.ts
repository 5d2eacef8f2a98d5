/**
 * The portable proxy engine, `deno`: `Deno.TcpConn` read/write loops, for
 * where the native engines (lib/proxy/net/ffi.ts) cannot run.
 *
 * Plain `read`/`write` with reused buffers (`pipeTo` is slower and loses
 * half-close): each direction starts with a small buffer, so a
 * thousand idle connections stay cheap, and moves to a pooled 256 KiB one
 * once a read fills it.
 *
 * @module
 */

import type { HostPort } from "../../core/mod.ts";
import type { ByteCounter, ProxyConn, ProxyListener, ProxyNet } from "./net.ts";

const SMALL = 16 * 1024;
const BIG = 256 * 1024;
/** Big buffers kept for reuse; beyond this they are left to the GC. */
const MAX_FREE = 64;
const freeBuffers: Uint8Array<ArrayBuffer>[] = [];
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/**
 * The `deno` engine.
 *
 * @example
 * ```ts
 * const net = denoNet();
 * const l = await net.listen({ host: "127.0.0.1", port: 0 });
 * ```
 */
export function denoNet(): ProxyNet {
  return {
    engine: "deno",
    listen: (at) =>
      Promise.resolve(
        Deno.listen({ hostname: at.host, port: at.port, transport: "tcp" }) as ProxyListener,
      ),
    connect: connectWithin,
    relay: (client, upstream, count) => {
      const pair = [client, upstream] as Deno.TcpConn[];
      return Promise.all([
        pump(pair[0], pair[1], pair, count, true),
        pump(pair[1], pair[0], pair, count, false),
      ]).then(() => {});
    },
    close: () => Promise.resolve(),
  };
}

/**
 * Copies `from` → `to` until EOF (then passes the half-close on) or an error
 * (then closes both sides, which ends the other direction too).
 */
async function pump(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  pair: Deno.TcpConn[],
  count: ByteCounter,
  toBackend: boolean,
): Promise<void> {
  let buf = new Uint8Array(SMALL);
  let big = false;
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      count(toBackend, n);
      let off = await to.write(n === buf.length ? buf : buf.subarray(0, n));
      while (off < n) off += await to.write(buf.subarray(off, n));
      // A read right after a write returns whatever trickled in meanwhile; one
      // event-loop turn first lets bulk data pile up, so a read carries more
      // per syscall and the relay spends less CPU (nginx gets the same from its
      // batched epoll loop).
      if (big && n < buf.length) await nextTurn();
      if (!big && n === buf.length) {
        buf = freeBuffers.pop() ?? new Uint8Array(BIG);
        big = true;
      }
    }
    await to.closeWrite();
  } catch {
    for (const c of pair) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  } finally {
    if (big && freeBuffers.length < MAX_FREE) freeBuffers.push(buf);
  }
}

/** Connects, or throws `TimedOut` after `ms`. */
async function connectWithin(at: HostPort, ms: number): Promise<ProxyConn> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), ms);
  try {
    return await Deno.connect({
      hostname: at.host,
      port: at.port,
      transport: "tcp",
      signal: ac.signal,
    });
  } catch (e) {
    if (ac.signal.aborted) throw new Deno.errors.TimedOut(`no answer within ${ms}ms`);
    throw e;
  } finally {
    clearTimeout(t);
  }
}
