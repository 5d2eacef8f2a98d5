/**
 * IP addresses and `host:port` pairs as the fleet file writes them.
 *
 * @module
 */

/** A listening or connecting address. */
export interface HostPort {
  /** An IP literal (IPv6 without brackets). */
  host: string;
  /** 1..65535. */
  port: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * True for an IPv4 or IPv6 literal (no brackets).
 *
 * @example
 * ```ts
 * isIp("127.0.0.2"); // true
 * isIp("rsync1");    // false
 * ```
 */
export function isIp(text: string): boolean {
  if (IPV4.test(text)) return true;
  // IPv6: hex groups and colons, at most one "::"; good enough to reject names.
  return /^[0-9a-fA-F:]+$/.test(text) && text.includes(":") &&
    (text.match(/::/g)?.length ?? 0) <= 1 && text.split(":").length <= 8;
}

/** True for `0.0.0.0` and `::`, which listen everywhere but cannot be dialled. */
export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::";
}

/**
 * Parses `"10.0.0.3:873"` or `"[::1]:873"`. Returns `null` when the text is not
 * an IP literal and a port in 1..65535.
 *
 * @example
 * ```ts
 * parseHostPort("127.0.0.2:8873"); // { host: "127.0.0.2", port: 8873 }
 * parseHostPort("10.0.0.3");       // null
 * ```
 */
export function parseHostPort(text: string): HostPort | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m || !isIp(m[1])) return null;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host: m[1], port };
}

/**
 * Formats a {@linkcode HostPort} back into `host:port` (brackets for IPv6).
 *
 * @example
 * ```ts
 * formatHostPort({ host: "::1", port: 873 }); // "[::1]:873"
 * ```
 */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * Where to dial a listener: `listen` itself, or `address` (the host's own IP)
 * in place of a wildcard listen IP.
 *
 * @example
 * ```ts
 * dialable({ host: "0.0.0.0", port: 8873 }, "10.0.0.10"); // { host: "10.0.0.10", port: 8873 }
 * ```
 */
export function dialable(listen: HostPort, address: string): HostPort {
  return isWildcard(listen.host) ? { host: address, port: listen.port } : listen;
}
