/**
 * The proxy's data plane: a TCP listener that hands each client to the next
 * backend of a {@linkcode BackendPool} (or, within its affinity window, to
 * the one its address was last sent to) and relays bytes both ways through a
 * {@linkcode ProxyNet} engine (native FFI sockets on Linux, Deno's elsewhere).
 *
 * Byte counts are plain field additions and the idle and handshake deadlines
 * are one sweep over all sessions, so a chunk costs no timer and no allocation.
 *
 * Every client is hostile until it has spoken rsync: the proxy dials a backend
 * only once the client has sent its `@RSYNCD:` greeting (an rsync client
 * sends it at once), watches the greeting exchange and the module request go
 * through, and only then hands the pair to the engine's relay. A client that
 * has not done so within `handshakeTimeout` is closed, so silent or trickling
 * sockets hold a slot for seconds and never reach a server. One source address
 * holds at most `maxPerSource` slots. After the handshake, only bytes from the
 * server count as activity: a client trickling a byte a second (or not
 * reading) is idle.
 *
 * Clients the proxy cannot serve (too many connections, from the address or
 * in all, no healthy backend) get an rsync greeting and an `@ERROR:` line,
 * which the rsync client prints as it prints a daemon's own refusals.
 *
 * @module
 */

import { EnvironmentError, formatHostPort, type HostPort, type Logger } from "../core/mod.ts";
import type { Backend, BackendPool } from "./backends.ts";
import type { ProxyConn, ProxyListener, ProxyNet } from "./net/mod.ts";
import { describeConnectError, proxyV1Header } from "../rsync/mod.ts";

/** Options of {@linkcode TcpProxy}. */
export interface ProxyOptions {
  listen: HostPort;
  pool: BackendPool;
  /** Clients served at once; more get an `@ERROR` line. */
  maxConnections: number;
  /** Clients served at once from one source address; more get an `@ERROR` line. */
  maxPerSource: number;
  /** A client that has not sent its greeting and module request within this is closed (ms). */
  handshakeTimeout: number;
  /** A connection whose server has sent nothing for this long is closed (ms). */
  idleTimeout: number;
  /** A backend that does not accept within this is marked down, the next one tried (ms). */
  connectTimeout: number;
  /** Send a PROXY v1 header to backends. */
  proxyProtocol: boolean;
  /**
   * The modules a client may ask for (the read module); any other request
   * is cut before it reaches a server. Unset: any. A server's write module
   * checks the address it sees, which behind the proxy is the proxy's own.
   */
  modules?: string[];
  /** The socket engine (see lib/proxy/net/net.ts). */
  net: ProxyNet;
  log: Logger;
}

/** Why clients were turned away, and other totals, for `/status` and `/metrics`. */
export interface ProxyCounters {
  accepted: number;
  refusedMaxConnections: number;
  /** Refused: the source address already held `maxPerSource` connections. */
  refusedPerSource: number;
  refusedNoBackend: number;
  /** Closed: no greeting and module request within `handshakeTimeout`. */
  handshakeTimeouts: number;
  /** Closed: what the client sent first was not an rsync greeting, or too long. */
  badHandshakes: number;
  idleTimeouts: number;
  /** Backend connects that failed (each client then tries the next backend). */
  connectFailures: number;
}

const enc = new TextEncoder();
const NL = 10;
/** The client's greeting and module request are a few dozen bytes; more is not rsync. */
const MAX_HANDSHAKE = 4096;
/** Refusals still saying why at once; beyond this a refused socket is just closed. */
const MAX_REFUSING = 256;

/** One client and, once connected, its backend. */
class Session {
  readonly client: ProxyConn;
  readonly source: string;
  upstream: ProxyConn | null = null;
  backend: Backend | null = null;
  /** Last byte from the server (ms since epoch); read by the idle sweep. */
  last = Date.now();
  readonly started = Date.now();
  /** Until when the handshake may take (ms since epoch); null once it is done. */
  handshakeUntil: number | null;
  closed = false;
  constructor(client: ProxyConn, source: string, handshakeMs: number) {
    this.client = client;
    this.source = source;
    this.handshakeUntil = this.started + handshakeMs;
  }
  /** The relay's byte counter: bytes per backend, and the idle clock (server bytes only). */
  count = (toBackend: boolean, n: number): void => {
    if (toBackend) this.backend!.bytesToBackend += n;
    else {
      this.last = Date.now();
      this.backend!.bytesToClient += n;
    }
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
 * A TCP round-robin proxy in front of rsync daemons, with client affinity.
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
  /** Sessions per source address. */
  #perSource = new Map<string, number>();
  #refusing = 0;
  /** When each refusal reason was last logged, and how many went unlogged since. */
  #refusalLog = new Map<string, { at: number; unlogged: number }>();
  /** Totals since start. */
  readonly counters: ProxyCounters = {
    accepted: 0,
    refusedMaxConnections: 0,
    refusedPerSource: 0,
    refusedNoBackend: 0,
    handshakeTimeouts: 0,
    badHandshakes: 0,
    idleTimeouts: 0,
    connectFailures: 0,
  };

  constructor(opts: ProxyOptions) {
    this.#o = opts;
  }

  /** Clients connected now (in the handshake or copying). */
  get active(): number {
    return this.#sessions.size;
  }
  /** Source addresses with a connection now. */
  get sources(): number {
    return this.#perSource.size;
  }
  /** Clients still in the rsync handshake now. */
  get handshaking(): number {
    let n = 0;
    for (const s of this.#sessions) if (s.handshakeUntil !== null) n++;
    return n;
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
    const every = Math.max(
      50,
      Math.min(1000, this.#o.idleTimeout / 4, this.#o.handshakeTimeout / 4),
    );
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
    const source = sourceOf(client);
    const refusal = this.#admit(source);
    if (refusal) return this.#refuse(client, refusal.reason, refusal.line);
    const s = new Session(client, source, this.#o.handshakeTimeout);
    this.#sessions.add(s);
    this.#perSource.set(source, (this.#perSource.get(source) ?? 0) + 1);
    try {
      // Nothing reaches a backend before the client has spoken rsync.
      const greeting = await readGreeting(client);
      if (greeting === null || s.closed) return;
      if (typeof greeting === "string") {
        this.counters.badHandshakes++;
        this.#logRefusal("bad_handshake", { client: peer(client), why: greeting });
        this.#forget(s);
        return this.#refuse(client, null, `@ERROR: fanout proxy: ${greeting}`);
      }
      const tried = new Set<Backend>();
      // An address that cannot be read is no client's: no affinity for it.
      const key = source === "?" ? undefined : source;
      let upstream: ProxyConn | null = null;
      let b: Backend | null = null;
      while (!upstream && !s.closed && (b = pool.pick(tried, key))) {
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
        this.#forget(s);
        return this.#refuse(client, null, `@ERROR: fanout proxy: no healthy rsync server (${why})`);
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
        const allowed = this.#o.modules;
        const asked = await handshake(client, upstream, greeting, s.count, allowed);
        if (typeof asked === "string") {
          this.counters.badHandshakes++;
          this.#logRefusal("bad_handshake", { client: peer(client), why: asked });
        }
        if (asked !== true || s.closed) return;
        s.handshakeUntil = null;
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
      this.#forget(s);
    }
  }

  /** Why a client from `source` cannot have a slot now, or null. */
  #admit(source: string): { reason: string; line: string } | null {
    const { maxConnections: max, maxPerSource } = this.#o;
    if (this.#sessions.size >= max) {
      this.counters.refusedMaxConnections++;
      return {
        reason: "max_connections",
        line: `@ERROR: fanout proxy: too many connections (max ${max}); try again later`,
      };
    }
    if ((this.#perSource.get(source) ?? 0) >= maxPerSource) {
      this.counters.refusedPerSource++;
      return {
        reason: "max_connections_per_source",
        line:
          `@ERROR: fanout proxy: too many connections from ${source} (max ${maxPerSource}); try again later`,
      };
    }
    return null;
  }

  /** Frees the session's slot (idempotent). */
  #forget(s: Session): void {
    if (!this.#sessions.delete(s)) return;
    s.closed = true;
    const n = (this.#perSource.get(s.source) ?? 1) - 1;
    if (n > 0) this.#perSource.set(s.source, n);
    else this.#perSource.delete(s.source);
  }

  /**
   * Turns a client away with `line`; logs it (rate-limited: a flood is one
   * line per reason every 10 s). Past {@linkcode MAX_REFUSING} refusals at
   * once the socket is just closed: a flood must not hold descriptors.
   */
  async #refuse(client: ProxyConn, reason: string | null, line: string): Promise<void> {
    if (reason) this.#logRefusal(reason, { client: peer(client), error: line });
    if (this.#refusing >= MAX_REFUSING) {
      try {
        client.close();
      } catch { /* closed */ }
      return;
    }
    this.#refusing++;
    try {
      await refuse(client, line);
    } finally {
      this.#refusing--;
    }
  }

  #logRefusal(reason: string, fields: Record<string, string>): void {
    const now = Date.now();
    const last = this.#refusalLog.get(reason);
    if (last && now - last.at < 10_000) {
      last.unlogged++;
      return;
    }
    this.#o.log.warn("refused", {
      reason,
      ...fields,
      unlogged_since_last: last?.unlogged || undefined,
    });
    this.#refusalLog.set(reason, { at: now, unlogged: 0 });
  }

  #sweep(): void {
    const now = Date.now();
    const cutoff = now - this.#o.idleTimeout;
    for (const s of this.#sessions) {
      if (s.closed) continue;
      if (s.handshakeUntil !== null) {
        if (s.handshakeUntil > now) continue;
        this.counters.handshakeTimeouts++;
        this.#logRefusal("handshake_timeout", {
          client: peer(s.client),
          after: `${now - s.started}ms`,
        });
        s.close();
        this.#forget(s);
      } else if (s.last < cutoff) {
        this.counters.idleTimeouts++;
        this.#o.log.info("closed idle connection", {
          client: peer(s.client),
          backend: s.backend?.name,
          idle_ms: now - s.last,
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

/** The address a client connects from (the unit of `maxPerSource`). */
function sourceOf(conn: ProxyConn): string {
  try {
    return conn.remoteAddr.hostname;
  } catch {
    return "?";
  }
}

/**
 * Reads what the client sends first, up to the end of its `@RSYNCD:`
 * greeting line (and whatever came with it). Returns the bytes, why they are
 * not an rsync greeting, or null when the client left (or was closed).
 */
async function readGreeting(conn: ProxyConn): Promise<Uint8Array | string | null> {
  const buf = new Uint8Array(MAX_HANDSHAKE);
  let len = 0;
  while (len < buf.length) {
    const n = await conn.read(buf.subarray(len)).catch(() => null);
    if (n === null) return null;
    len += n;
    const head = new TextDecoder().decode(buf.subarray(0, Math.min(len, 9)));
    if (!"@RSYNCD: ".startsWith(head) && !head.startsWith("@RSYNCD: ")) {
      return "not an rsync client greeting";
    }
    if (buf.subarray(len - n, len).includes(NL)) return buf.slice(0, len);
  }
  return `greeting longer than ${MAX_HANDSHAKE} bytes`;
}

/**
 * Passes the rest of the rsync handshake through: the client's greeting (read
 * already) and then its module request to the server, the server's greeting
 * to the client. True once the module request (the client's second line) is
 * through; false when either side left or the client sent too much.
 */
async function handshake(
  client: ProxyConn,
  upstream: ProxyConn,
  greeting: Uint8Array,
  count: (toBackend: boolean, n: number) => void,
  modules?: string[],
): Promise<boolean | string> {
  let refused: string | null = null;
  const toServer = async (): Promise<boolean> => {
    const end = greeting.indexOf(NL) + 1;
    await writeAll(upstream, greeting.subarray(0, end));
    count(true, end);
    // The module request is held until its line is complete, and checked.
    let held = greeting.slice(end);
    const buf = new Uint8Array(1024);
    while (!held.includes(NL)) {
      const n = await client.read(buf);
      if (n === null || greeting.length + held.length + n > MAX_HANDSHAKE) return false;
      const more = new Uint8Array(held.length + n);
      more.set(held);
      more.set(buf.subarray(0, n), held.length);
      held = more;
    }
    const module = new TextDecoder().decode(held.subarray(0, held.indexOf(NL))).replace(/\r$/, "");
    if (modules && module !== "#list" && module !== "" && !modules.includes(module)) {
      refused = `module ${JSON.stringify(module.slice(0, 60))} is not served through the proxy`;
      return false;
    }
    await writeAll(upstream, held);
    count(true, held.length);
    return true;
  };
  const toClient = async (): Promise<boolean> => {
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await upstream.read(buf);
      if (n === null) return false;
      await writeAll(client, buf.subarray(0, n));
      count(false, n);
      if (buf.subarray(0, n).includes(NL)) return true;
    }
  };
  // Either side failing (gone, closed by the deadline, too long) ends both,
  // so the other direction's read returns too.
  const failed = () => {
    for (const c of [client, upstream]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    return false;
  };
  const guard = (p: Promise<boolean>) => p.then((ok) => ok || failed(), failed);
  const [a, b] = await Promise.all([guard(toServer()), guard(toClient())]);
  return refused ?? (a && b);
}
