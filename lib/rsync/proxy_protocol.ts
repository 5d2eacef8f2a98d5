/**
 * The PROXY protocol, version 1 (the text form every rsync 3.2+ daemon reads
 * with `proxy protocol = yes`): one line sent before anything else on a
 * connection, so the backend sees the real client instead of the proxy.
 *
 * @module
 */

const enc = new TextEncoder();

/** The header of a connection whose client cannot be told (health checks). */
export const PROXY_V1_UNKNOWN: Uint8Array = enc.encode("PROXY UNKNOWN\r\n");

/**
 * The PROXY v1 header for a connection from `client` to `server` (the
 * proxy's own listening address, as the client dialled it). Addresses of
 * different families, or that are not TCP, give `PROXY UNKNOWN`, which
 * tells the backend to use the connection's own peer.
 *
 * @example
 * ```ts
 * const h = proxyV1Header(
 *   { transport: "tcp", hostname: "10.0.0.7", port: 51234 },
 *   { transport: "tcp", hostname: "10.0.0.20", port: 873 },
 * );
 * new TextDecoder().decode(h); // "PROXY TCP4 10.0.0.7 10.0.0.20 51234 873\r\n"
 * ```
 */
export function proxyV1Header(client: Deno.Addr, server: Deno.Addr): Uint8Array {
  if (client.transport !== "tcp" || server.transport !== "tcp") return PROXY_V1_UNKNOWN;
  const c = unmapV4(client.hostname);
  const s = unmapV4(server.hostname);
  const v6 = c.includes(":");
  if (v6 !== s.includes(":")) return PROXY_V1_UNKNOWN;
  return enc.encode(
    `PROXY ${v6 ? "TCP6" : "TCP4"} ${c} ${s} ${client.port} ${server.port}\r\n`,
  );
}

/** `::ffff:10.0.0.7` (an IPv4 client on a dual-stack socket) → `10.0.0.7`. */
function unmapV4(host: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return m ? m[1] : host;
}
