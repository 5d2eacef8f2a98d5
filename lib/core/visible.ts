// Printing values that came from a file or the network: quoted, cut, and
// with every control character escaped, so no terminal or log line sees one.

/** C0, DEL and C1 control characters: none may reach a rendered file or a terminal raw. */
// deno-lint-ignore no-control-regex
export const CONTROL_CHARS = /[\x00-\x1f\x7f-\x9f]/;

/**
 * `s` in double quotes, cut to `max` characters, every control character
 * escaped (JSON.stringify alone leaves U+007F-U+009F as they are).
 *
 * @example
 * ```ts
 * quoted("/srv/t\n[evil]"); // "\"/srv/t\\n[evil]\""
 * ```
 */
export function quoted(s: string, max = 60): string {
  return JSON.stringify(s.length > max ? s.slice(0, max - 3) + "..." : s).replace(
    /[\x7f-\x9f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
