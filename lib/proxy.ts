/**
 * The proxy's data plane: a TCP listener that hands each client to the next
 * backend of a {@linkcode BackendPool} and relays bytes both ways through a
 * {@linkcode ProxyNet} engine (native FFI sockets on Linux, Deno's elsewhere).
 *
 * Byte counts are plain field additions and the idle timeout is one sweep over
 * all sessions, so a chunk costs no timer and no allocation.
 *
 * Clients the proxy cannot serve (too many connections, no healthy backend)
 * get an rsync greeting and an `@ERROR:` line, which the rsync client prints
 * as it prints a daemon's own refusals.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "./address.ts";
import { EnvironmentError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { Backend, BackendPool } from "./proxy_backends.ts";
import type { ProxyConn, ProxyListener, ProxyNet } from "./proxy_net.ts";
import { proxyV1Header } from "./proxy_protocol.ts";
import { describeConnectError } from "./rsync_probe.ts";

/** Options of {@linkcode TcpProxy}. */
export interface ProxyOptions {
  listen: HostPort;
  pool: BackendPool;
  /** Clients served at once; more get an `@ERROR` line. */
  maxConnections: number;
  /** A connection with no byte either way for this long is closed (ms). */
  idleTimeout: number;
  /** A backend that does not accept within this is marked down, the next one tried (ms). */
  connectTimeout: number;
  /** Send a PROXY v1 header to backends. */
  proxyProtocol: boolean;
  /** The socket engine (see lib/proxy_net.ts). */
  net: ProxyNet;
  log: Logger;
}

/** Why clients were turned away, and other totals, for `/status` and `/metrics`. */
export interface ProxyCounters {
  accepted: number;
  refusedMaxConnections: number;
  refusedNoBackend: number;
  idleTimeouts: number;
  /** Backend connects that failed (each client then tries the next backend). */
  connectFailures: number;
}

const enc = new TextEncoder();

/** One client and, once connected, its backend. */
class Session {
  readonly client: ProxyConn;
  upstream: ProxyConn | null = null;
  backend: Backend | null = null;
  /** Last byte either way (ms since epoch); read by the idle sweep. */
  last = Date.now();
  readonly started = Date.now();
  closed = false;
  constructor(client: ProxyConn) {
    this.client = client;
  }
  /** The relay's byte counter: bytes per backend, and the idle clock. */
  count = (toBackend: boolean, n: number): void => {
    this.last = Date.now();
    if (toBackend) this.backend!.bytesToBackend += n;
    else this.backend!.bytesToClient += n;
  };
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.client.close();
    } catch { /* already closed */ }
    try {
      this.upstream?.close();
    } catch { /* already closed */ }
  }
}

/**
 * A TCP round-robin proxy in front of rsync daemons.
 *
 * @example
 * ```ts
 * const proxy = new TcpProxy({ listen, pool, maxConnections: 1000, idleTimeout: 300_000,
 *   connectTimeout: 1000, proxyProtocol: false, net: openProxyNet("auto").net, log });
 * await proxy.start();
 * // … on SIGTERM:
 * await proxy.drain(30_000);
 * ```
 */
export class TcpProxy {
  #o: ProxyOptions;
  #listener: ProxyListener | null = null;
  #accepting: Promise<void> | null = null;
  #sweeper: ReturnType<typeof setInterval> | null = null;
  #sessions = new Set<Session>();
  #serving = new Set<Promise<void>>();
  #draining = false;
  /** Totals since start. */
  readonly counters: ProxyCounters = {
    accepted: 0,
    refusedMaxConnections: 0,
    refusedNoBackend: 0,
    idleTimeouts: 0,
    connectFailures: 0,
  };

  constructor(opts: ProxyOptions) {
    this.#o = opts;
  }

  /** Clients connected now (being connected or copying). */
  get active(): number {
    return this.#sessions.size;
  }
  /** True once {@linkcode drain} has begun. */
  get draining(): boolean {
    return this.#draining;
  }
  /** Where it listens (the real port when `listen.port` was 0). */
  get addr(): HostPort {
    const a = this.#listener?.addr ?? { hostname: this.#o.listen.host, port: this.#o.listen.port };
    return { host: a.hostname, port: a.port };
  }

  /**
   * Binds the listen address and starts serving.
   *
   * @throws {EnvironmentError} when the address is in use or cannot be bound.
   */
  async start(): Promise<void> {
    const at = this.#o.listen;
    try {
      this.#listener = await this.#o.net.listen(at);
    } catch (e) {
      const why = e instanceof Deno.errors.AddrInUse
        ? "address in use"
        : e instanceof Deno.errors.AddrNotAvailable
        ? "no such address on this host"
        : e instanceof Deno.errors.NotFound
        ? "no such host"
        : (e as Error).message;
      throw new EnvironmentError(`proxy cannot listen on ${formatHostPort(at)}: ${why}`);
    }
    this.#accepting = this.#acceptLoop(this.#listener);
    const every = Math.max(50, Math.min(1000, this.#o.idleTimeout / 4));
    this.#sweeper = setInterval(() => this.#sweep(), every);
  }

  /**
   * Stops accepting, lets running transfers finish for up to `timeoutMs`, then
   * closes what is left. Resolves with how many were cut.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.#draining = true;
    this.#stopAccepting();
    await this.#accepting;
    const deadline = Date.now() + timeoutMs;
    while (this.#sessions.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    const cut = this.#sessions.size;
    for (const s of this.#sessions) s.close();
    await this.#stop();
    return cut;
  }

  /** Closes the listener and every connection at once. */
  async close(): Promise<void> {
    this.#draining = true;
    this.#stopAccepting();
    await this.#accepting;
    for (const s of this.#sessions) s.close();
    await this.#stop();
  }

  #stopAccepting(): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
  }

  async #stop(): Promise<void> {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    // Sessions still closing (their #serve) finish before the engine goes.
    while (this.#serving.size > 0) await Promise.allSettled([...this.#serving]);
    await this.#o.net.close();
  }

  async #acceptLoop(listener: ProxyListener): Promise<void> {
    for (;;) {
      let conn: ProxyConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (this.#draining || e instanceof Deno.errors.BadResource) return;
        // Out of file descriptors and the like: say so, breathe, go on.
        this.#o.log.error("accept failed", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      this.counters.accepted++;
      const serving = this.#serve(conn).catch((e) =>
        this.#o.log.error("proxying failed", { error: (e as Error).message })
      ).finally(() => this.#serving.delete(serving));
      this.#serving.add(serving);
    }
  }

  async #serve(client: ProxyConn): Promise<void> {
    const { pool, log } = this.#o;
    try {
      client.setNoDelay(true);
    } catch { /* the client is already gone */ }
    if (this.#sessions.size >= this.#o.maxConnections) {
      this.counters.refusedMaxConnections++;
      log.warn("refused: too many connections", {
        client: peer(client),
        max: this.#o.maxConnections,
      });
      return refuse(
        client,
        `@ERROR: fanout proxy: too many connections (max ${this.#o.maxConnections}); try again later`,
      );
    }
    const s = new Session(client);
    this.#sessions.add(s);
    try {
      const tried = new Set<Backend>();
      let upstream: ProxyConn | null = null;
      let b: Backend | null = null;
      while (!upstream && !s.closed && (b = pool.pick(tried))) {
        tried.add(b);
        try {
          upstream = await this.#o.net.connect(b.addr, this.#o.connectTimeout);
        } catch (e) {
          const why = describeConnectError(e);
          // A refused connect is a daemon gone: out of rotation at once. A
          // slow one may be this proxy's own lag under a flood: this client
          // tries the next backend, and the active checks decide.
          if (e instanceof Deno.errors.TimedOut) b.connectFailures++;
          else pool.markFailed(b, why);
          this.counters.connectFailures++;
          log.warn("backend connect failed; trying the next", { backend: b.name, error: why });
        }
      }
      if (!upstream || !b) {
        if (s.closed) return;
        this.counters.refusedNoBackend++;
        const why = pool.whyNone();
        log.error("refused: no healthy rsync server", { client: peer(client), why });
        this.#sessions.delete(s);
        s.closed = true;
        return refuse(client, `@ERROR: fanout proxy: no healthy rsync server (${why})`);
      }
      s.upstream = upstream;
      s.backend = b;
      if (s.closed) return void upstream.close();
      upstream.setNoDelay(true);
      b.active++;
      b.connections++;
      try {
        if (this.#o.proxyProtocol) {
          await writeAll(upstream, proxyV1Header(client.remoteAddr, client.localAddr));
        }
        s.last = Date.now();
        await this.#o.net.relay(client, upstream, s.count);
      } finally {
        b.active--;
      }
      if (log.enabled("debug")) {
        log.debug("client done", {
          client: peer(client),
          backend: b.name,
          ms: Date.now() - s.started,
        });
      }
    } finally {
      s.close();
      this.#sessions.delete(s);
    }
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#o.idleTimeout;
    for (const s of this.#sessions) {
      if (s.last < cutoff && !s.closed) {
        this.counters.idleTimeouts++;
        this.#o.log.info("closed idle connection", {
          client: peer(s.client),
          backend: s.backend?.name,
          idle_ms: Date.now() - s.last,
        });
        s.close();
      }
    }
  }
}

async function writeAll(conn: ProxyConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/**
 * Turns a client away the way an rsync daemon does: a greeting, then the
 * `@ERROR` line, which the rsync client prints. Waits (briefly) for the
 * client to hang up, so closing does not reset the line away unread.
 */
async function refuse(conn: ProxyConn, line: string): Promise<void> {
  const t = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, 2_000);
  try {
    await writeAll(conn, enc.encode(`@RSYNCD: 30.0\n${line}\n`));
    const scratch = new Uint8Array(1024);
    while ((await conn.read(scratch)) !== null) { /* the client's greeting and module */ }
  } catch {
    /* gone, or closed by the timer */
  } finally {
    clearTimeout(t);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

function peer(conn: ProxyConn): string {
  try {
    const a = conn.remoteAddr;
    return formatHostPort({ host: a.hostname, port: a.port });
  } catch {
    return "?";
  }
}
