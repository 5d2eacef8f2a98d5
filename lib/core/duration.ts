/**
 * Durations as the fleet file writes them: a number and a unit.
 *
 * @module
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * The longest duration fanout takes, in ms: a timer waits at most 2^31−1 ms
 * and fires at once when asked for longer, so a longer interval or timeout
 * would turn into none.
 *
 * @example
 * ```ts
 * DURATION_MAX; // 2147483647 (about 24.8 days)
 * ```
 */
export const DURATION_MAX = 2 ** 31 - 1;

/** The milliseconds `text` is written as, unbounded; null when it is no duration. */
function writtenMs(text: string): number | null {
  const m = PATTERN.exec(text.trim());
  return m ? Math.round(Number(m[1]) * UNITS[m[2]]) : null;
}

/**
 * Parses `"200ms"`, `"2s"`, `"5m"`, `"1h"`, `"1d"` (also `"1.5s"`) into
 * milliseconds. Returns `null` for anything else, including a bare number,
 * because a unit-less `30` is ambiguous in a config file, and for a duration
 * longer than {@linkcode DURATION_MAX} ({@linkcode durationTooLong} says so).
 *
 * @example
 * ```ts
 * parseDuration("5m"); // 300000
 * parseDuration("30"); // null
 * parseDuration("30d"); // null
 * ```
 */
export function parseDuration(text: string): number | null {
  const ms = writtenMs(text);
  return ms !== null && ms <= DURATION_MAX ? ms : null;
}

/**
 * Why `text`, a well-formed duration, is refused all the same: it is longer
 * than {@linkcode DURATION_MAX} (so many digits are Infinity, too). Undefined
 * when it is not too long, or no duration at all.
 *
 * @example
 * ```ts
 * durationTooLong("30d"); // "is too long: the most is 2147483647ms (about 24.8 days)"
 * durationTooLong("5m"); // undefined
 * ```
 */
export function durationTooLong(text: string): string | undefined {
  const ms = writtenMs(text);
  if (ms === null || ms <= DURATION_MAX) return undefined;
  const days = Math.floor(DURATION_MAX / 86_400_000 * 10) / 10;
  return `is too long: the most is ${DURATION_MAX}ms (about ${days} days)`;
}

/**
 * Formats milliseconds for humans and logs: `850ms`, `1.2s`, `5m`, `2h`.
 *
 * @example
 * ```ts
 * formatDuration(1234); // "1.2s"
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)}m`;
  return `${+(ms / 3_600_000).toFixed(1)}h`;
}
