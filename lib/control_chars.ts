/**
 * Control characters out of hostile text: what a client reports, what a
 * server or rsync sends back, what a marker file holds. Any of it can reach an
 * operator's terminal (`fanout fleet`, an error line, a log read with `less`
 * or `journalctl`), where an escape sequence can clear the screen, retitle the
 * window or rewrite what the operator reads. One helper strips them wherever
 * such text is printed or logged.
 *
 * @module
 */

// C0 but tab and newline, DEL, C1 (0x9b is a one-byte CSI on some terminals),
// and the bidirectional overrides and isolates that reorder what is shown.
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const LINE_BREAKS = /[\t\n]/g;

/**
 * `s` without control characters. Tabs and newlines stay unless `oneLine`,
 * which turns them into spaces (for a table cell or a one-line message).
 *
 * @example
 * ```ts
 * stripControl("web1\x1b[2J\x1b]0;owned\x07"); // "web1[2J]0;owned"
 * stripControl("a\nb", { oneLine: true }); // "a b"
 * ```
 */
export function stripControl(s: string, opts: { oneLine?: boolean } = {}): string {
  const out = s.replace(CONTROL, "");
  return opts.oneLine ? out.replace(LINE_BREAKS, " ") : out;
}

/**
 * A copy of JSON-like `v` with {@linkcode stripControl} applied to every
 * string in it (keys too); other values are kept as they are.
 *
 * @example
 * ```ts
 * stripControlDeep({ host: "web1", error: "boom\x1b[2J" }); // { host: "web1", error: "boom[2J" }
 * ```
 */
export function stripControlDeep<T>(v: T): T {
  if (typeof v === "string") return stripControl(v) as T;
  if (Array.isArray(v)) return v.map(stripControlDeep) as T;
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[stripControl(k)] = stripControlDeep(x);
  return out as T;
}
