/**
 * Speaks just enough of the rsync daemon protocol to tell whether a daemon is
 * alive: connect, read its `@RSYNCD:` greeting, optionally list modules, and
 * hang up politely. A daemon that accepts TCP but never greets is down.
 *
 * @module
 */

import { deadline, type HostPort, printableLine, quoted, stripControl } from "../core/mod.ts";
import { markerFromComment, type VersionMarker } from "../version/mod.ts";

/** The outcome of one probe. */
export interface ProbeResult {
  ok: boolean;
  /** The greeting line, e.g. `@RSYNCD: 32.0 sha512 sha256 …`. */
  greeting?: string;
  /** Listed modules (only when asked for, and only `list = yes` ones). */
  modules?: string[];
  /** Each listed module's comment, by name. */
  comments?: Record<string, string>;
  /** Why it failed, in words. */
  error?: string;
  /** Round trip in ms. */
  ms: number;
}

const enc = new TextEncoder();

/**
 * The most a probe reads from a daemon (greeting and module list): a real
 * list is a few KiB; a server sending more is cut off, not buffered.
 */
export const PROBE_MAX_BYTES = 256 * 1024;

/** The most of a daemon's `@ERROR` line a probe's error keeps (a real one is a short sentence). */
const ERROR_MAX = 200;

/**
 * Probes the rsync daemon at `at` within `timeoutMs`.
 *
 * @example
 * ```ts
 * const r = await probeRsyncd({ host: "127.0.0.3", port: 10873 }, 1000, { list: true });
 * if (r.ok) console.log(r.modules);
 * ```
 */
export async function probeRsyncd(
  at: HostPort,
  timeoutMs: number,
  opts: {
    list?: boolean;
    /** Sent first, for a daemon with `proxy protocol = yes` (see lib/rsync/proxy_protocol.ts). */
    proxyHeader?: Uint8Array;
  } = {},
): Promise<ProbeResult> {
  const started = performance.now();
  let conn: Deno.TcpConn | null = null;
  // One deadline for the whole exchange: it aborts the connect, or closes
  // the connection so a pending read fails.
  const dl = deadline(timeoutMs, () => {
    try {
      conn?.close();
    } catch { /* closed */ }
    conn = null;
  });
  const done = (r: Omit<ProbeResult, "ms">): ProbeResult => ({
    ...r,
    ms: performance.now() - started,
  });
  try {
    conn = await Deno.connect({
      hostname: at.host,
      port: at.port,
      transport: "tcp",
      signal: dl.signal,
    });
    if (dl.expired) return done({ ok: false, error: `timed out after ${timeoutMs}ms` });
    conn.setNoDelay(true);
    if (opts.proxyHeader) await conn.write(opts.proxyHeader);
    // Greet first, as the rsync client does: fanout's proxy dials a server
    // only once the client has greeted. Protocol 30 needs no digest list and
    // every 3.x daemon speaks it.
    await conn.write(enc.encode("@RSYNCD: 30.0\n"));
    const reader = new LineReader(conn);
    const greeting = await reader.line();
    if (greeting === null) {
      return done({
        ok: false,
        error: dl.expired
          ? `no greeting within ${timeoutMs}ms`
          : "connection closed before the greeting",
      });
    }
    if (!greeting.startsWith("@RSYNCD:")) {
      return done({
        ok: false,
        // Its words go into a status page and a terminal: C0 and C1
        // escaped (quoted), what else could reorder or hide text stripped.
        error: `not an rsync daemon: ${stripControl(quoted(greeting, 60))}`,
      });
    }
    await conn.write(enc.encode("#list\n"));
    const modules: string[] = [];
    const comments: Record<string, string> = {};
    for (let line = await reader.line(); line !== null; line = await reader.line()) {
      if (line.startsWith("@RSYNCD: EXIT")) break;
      if (line.startsWith("@ERROR")) {
        return done({ ok: false, greeting, error: printableLine(line, ERROR_MAX) });
      }
      if (opts.list && line.trim()) {
        // rsyncd lists "%-15s\t%s": the name, padded, then the comment.
        const name = line.split(/\s/)[0];
        modules.push(name);
        const tab = line.indexOf("\t");
        comments[name] = tab < 0 ? "" : line.slice(tab + 1);
      }
    }
    return done({
      ok: true,
      greeting,
      modules: opts.list ? modules : undefined,
      comments: opts.list ? comments : undefined,
    });
  } catch (e) {
    if (dl.expired) return done({ ok: false, error: `timed out after ${timeoutMs}ms` });
    return done({ ok: false, error: describeConnectError(e) });
  } finally {
    dl.done();
    try {
      (conn as Deno.TcpConn | null)?.close();
    } catch { /* already closed by the deadline */ }
  }
}

/** A short reason for a failed connect, e.g. `connection refused`. */
export function describeConnectError(e: unknown): string {
  if (e instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (e instanceof Deno.errors.TimedOut) return "connect timed out";
  if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) {
    return "timed out";
  }
  return (e as Error).message ?? String(e);
}

class LineReader {
  #conn: Deno.Conn;
  #buf = "";
  #dec = new TextDecoder();
  #chunk = new Uint8Array(4096);
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  #total = 0;
  async line(): Promise<string | null> {
    while (!this.#buf.includes("\n")) {
      const n = await this.#conn.read(this.#chunk);
      if (n === null) return null;
      this.#total += n;
      if (this.#total > PROBE_MAX_BYTES) {
        throw new Error(`the daemon sent more than ${PROBE_MAX_BYTES} bytes`);
      }
      this.#buf += this.#dec.decode(this.#chunk.subarray(0, n));
    }
    const i = this.#buf.indexOf("\n");
    const line = this.#buf.slice(0, i);
    this.#buf = this.#buf.slice(i + 1);
    return line;
  }
}

/**
 * The version a fanout server's `module` announces in its comment (the one
 * its tree holds): one module listing, no rsync process on either side.
 * Null for a module whose comment names none; undefined when the listing
 * cannot tell (no answer, no such module).
 *
 * @example
 * ```ts
 * const v = await listedVersion({ host: "10.0.0.10", port: 873 }, "plugins", 5000);
 * if (v === undefined) console.log("ask for the marker file instead");
 * ```
 */
export async function listedVersion(
  at: HostPort,
  module: string,
  timeoutMs: number,
): Promise<VersionMarker | null | undefined> {
  const r = await probeRsyncd(at, timeoutMs, { list: true }).catch(() => null);
  const comment = r?.ok ? r.comments?.[module] : undefined;
  return comment === undefined ? undefined : markerFromComment(comment);
}
