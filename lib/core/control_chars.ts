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
// the bidirectional marks, overrides and isolates that reorder what is shown
// (U+061C, U+200E/F, U+202A–E, U+2066–9), the invisible ones that hide or
// join text (U+200B–D, U+2060–4, U+FEFF, the tags U+E0000–U+E007F) and the
// line and paragraph separators (U+2028/9) that break a line unseen.
const CONTROL =
  // deno-lint-ignore no-control-regex
  /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u{e0000}-\u{e007f}]/gu;
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
 * `s` as one printable line of at most `max` characters: {@linkcode stripControl}
 * with tabs and newlines as spaces, trimmed, and cut with "…" when longer —
 * for words a server or a file sends that go into a message as they are.
 *
 * @example
 * ```ts
 * printableLine("@ERROR: no\x9b[2J\tway", 80); // "@ERROR: no[2J way"
 * printableLine("x".repeat(500), 10); // "xxxxxxxxx…"
 * ```
 */
export function printableLine(s: string, max: number): string {
  const line = stripControl(s, { oneLine: true }).trim();
  if (line.length <= max) return line;
  // A cut between a surrogate pair's halves would leave half a character.
  let end = max - 1;
  if (/[\ud800-\udbff]/.test(line[end - 1] ?? "")) end--;
  return `${line.slice(0, end)}…`;
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
