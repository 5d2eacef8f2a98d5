/**
 * Durations as the fleet file writes them: a number and a unit.
 *
 * @module
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * Parses `"200ms"`, `"2s"`, `"5m"`, `"1h"`, `"1d"` (also `"1.5s"`) into
 * milliseconds. Returns `null` for anything else, including a bare number,
 * because a unit-less `30` is ambiguous in a config file.
 *
 * @example
 * ```ts
 * parseDuration("5m"); // 300000
 * parseDuration("30"); // null
 * ```
 */
export function parseDuration(text: string): number | null {
  const m = PATTERN.exec(text.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * UNITS[m[2]]);
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
