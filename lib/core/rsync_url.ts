/**
 * rsync daemon URLs, `rsync://[user@]host[:port]/module[/path]`: one parser
 * and one builder for every place that reads or writes one (the fleet file's
 * `client.source`, the client's server name and module listing, the URLs the
 * push and the publisher dial). A source can come from a hand-edited file or a
 * command line and ends up in logs and status lines, so the parser is strict:
 * bounded length, no white space or control characters, a real host name, IP
 * or bracketed IPv6 literal, a port in 1..65535, no `.` or `..` path parts.
 *
 * @module
 */

import { stripControl } from "./control_chars.ts";
import { formatHostPort, isIp } from "./address.ts";

/** rsync's daemon port, where a URL names none. */
export const RSYNC_PORT = 873;

/** The longest URL the parser reads (a path's limit, PATH_MAX). */
export const RSYNC_URL_MAX = 4096;

/** A parsed `rsync://` URL. */
export interface RsyncUrl {
  /** The user before `@`, or null when the URL names none. */
  user: string | null;
  /** A host name or IP literal (IPv6 without brackets). */
  host: string;
  /** 1..65535; {@linkcode RSYNC_PORT} when the URL names none. */
  port: number;
  /** The daemon module. */
  module: string;
  /** What follows the module: `""` (none), `"/"`, or `"/dir/file"`. */
  path: string;
}

const URL_SHAPE =
  /^rsync:\/\/(?:([^@/]*)@)?(\[[^\]/]*\]|[^/:@\[\]]*)(?::(\d{1,5}))?\/([^/]*)(\/.*)?$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * Parses `rsync://[user@]host[:port]/module[/path]`. Returns null for anything
 * else: another scheme, `host::module`, white space or control characters
 * anywhere, a host that is neither a name nor an IP literal (IPv6 in
 * brackets), a port outside 1..65535, an empty module, `.` or `..` as a part,
 * or more than {@linkcode RSYNC_URL_MAX} characters.
 *
 * @example
 * ```ts
 * parseRsyncUrl("rsync://apps@[::1]:10873/plugins/");
 * // { user: "apps", host: "::1", port: 10873, module: "plugins", path: "/" }
 * parseRsyncUrl("rsync://lb/plugins"); // { user: null, host: "lb", port: 873, module: "plugins", path: "" }
 * parseRsyncUrl("rsync://lb:99999/plugins/"); // null
 * ```
 */
export function parseRsyncUrl(text: string): RsyncUrl | null {
  if (text.length > RSYNC_URL_MAX || /\s/.test(text) || stripControl(text) !== text) return null;
  const m = URL_SHAPE.exec(text);
  if (!m) return null;
  const [, user, hostText, portText, module, path = ""] = m;
  if (user !== undefined && !USER.test(user)) return null;
  const host = parseHost(hostText);
  const port = portText === undefined ? RSYNC_PORT : Number(portText);
  if (host === null || port < 1 || port > 65535) return null;
  if (!isPart(module) || !path.split("/").slice(1).every((p, i, all) => isPathPart(p, i, all))) {
    return null;
  }
  return { user: user ?? null, host, port, module, path };
}

/**
 * The URL for `url`'s parts, the port always written, the path `"/"` unless
 * given (the module's contents, as rsync reads a trailing slash).
 *
 * @example
 * ```ts
 * formatRsyncUrl({ host: "127.0.0.3", port: 10873, module: "plugins-push", user: "apps" });
 * // "rsync://apps@127.0.0.3:10873/plugins-push/"
 * formatRsyncUrl({ host: "::1", port: 873, module: "plugins", path: "/.fanout-version" });
 * // "rsync://[::1]:873/plugins/.fanout-version"
 * ```
 */
export function formatRsyncUrl(
  url: Pick<RsyncUrl, "host" | "port" | "module"> & { user?: string | null; path?: string },
): string {
  const user = url.user ? `${url.user}@` : "";
  return `rsync://${user}${formatHostPort(url)}/${url.module}${url.path ?? "/"}`;
}

/** A name of dot-separated labels, an IPv4 literal, or an IPv6 literal in brackets. */
function parseHost(text: string): string | null {
  if (text.startsWith("[")) {
    const inside = text.slice(1, -1);
    return inside.includes(":") && isIp(inside) ? inside : null;
  }
  if (/^[\d.]+$/.test(text)) return isIp(text) ? text : null;
  return text.length <= 253 && text.split(".").every((l) => LABEL.test(l)) ? text : null;
}

function isPart(part: string): boolean {
  return part.length > 0 && part.length <= 255 && part !== "." && part !== "..";
}

/** Every part of a path is a name, but the last may be empty (a trailing slash). */
function isPathPart(part: string, i: number, all: string[]): boolean {
  return isPart(part) || (part === "" && i === all.length - 1);
}
