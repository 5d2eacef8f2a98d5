/**
 * The version log (`.fanout-changes`, next to `.fanout-version` at the root
 * of every tree): one JSON line per recent publish, saying which paths it
 * changed and deleted on the primary, and between which two versions.
 *
 * The publisher writes it (from rsync's itemized list of its own transfer)
 * and sends it with the marker, so every server holding version N holds the
 * log up to N. A client holding version M < N then fetches only the paths of
 * the entries from M to N instead of walking the whole tree twice. Each entry
 * names the version it starts from, so a client follows an unbroken chain
 * from its own version or not at all: any gap, an entry too large to list
 * (`whole`), or a log that ends early sends it down the whole-tree path.
 *
 * @module
 */

import { parseMarker, sameVersion as same, type VersionMarker } from "./version.ts";

/** What one publish changed. */
export interface LogEntry {
  /** The version this publish made. */
  to: VersionMarker;
  /** The version on the primary before it (null for the first publish). */
  from: VersionMarker | null;
  /** Paths created or changed, relative to the root (directories end in `/`). */
  paths: string[];
  /** Paths deleted (directories end in `/`). */
  deleted: string[];
  /** The change is not known path by path (too large, a name that is not UTF-8,
   * or a primary whose tree may not have been `from`'s): walk the tree. */
  whole: boolean;
}

/** What a client must do to go from one version to a later one. */
export interface ChangeList {
  /** Paths to fetch (no trailing `/`; `.` for the root), sorted. */
  paths: string[];
  /** Of those, the directories. */
  dirs: Set<string>;
  /** Paths to delete (no trailing `/`), sorted. */
  deleted: string[];
  /** Entries followed. */
  versions: number;
}

/** The newest entries a log keeps. */
export const LOG_MAX_ENTRIES = 100;
/** The log's size bound in bytes; the oldest entries go first. */
export const LOG_MAX_BYTES = 256 * 1024;
/**
 * The most of a server's log a client fetches and reads (four times what a
 * publisher writes): a larger log is not fetched, and the client compares
 * the whole tree instead, as it does for any log it cannot use.
 */
export const LOG_READ_MAX_BYTES = 4 * LOG_MAX_BYTES;
/** An entry with more paths than this is written as `whole`. */
export const ENTRY_MAX_PATHS = 1000;

/**
 * Builds the entry of one publish.
 *
 * @example
 * ```ts
 * newEntry(previous, marker, { paths: ["a.txt"], deleted: ["old/", "old/b.txt"] });
 * ```
 */
export function newEntry(
  from: VersionMarker | null,
  to: VersionMarker,
  change: { paths: string[]; deleted: string[]; whole?: boolean },
): LogEntry {
  const whole = change.whole === true ||
    change.paths.length + change.deleted.length > ENTRY_MAX_PATHS;
  return {
    to,
    from,
    paths: whole ? [] : change.paths,
    deleted: whole ? [] : change.deleted,
    whole,
  };
}

/**
 * Parses a log; lines that are not entries are skipped (a client then finds
 * no chain through them and walks the tree).
 *
 * @example
 * ```ts
 * parseLog(await Deno.readTextFile("/srv/tree/.fanout-changes")).at(-1)?.to.seq;
 * ```
 */
export function parseLog(text: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line);
      const to = parseMarker(JSON.stringify(e.to));
      const from = e.from === null ? null : parseMarker(JSON.stringify(e.from));
      const strings = (a: unknown) => Array.isArray(a) && a.every((s) => typeof s === "string");
      if (!to || (e.from !== null && !from)) continue;
      if (e.whole !== true && !(strings(e.paths) && strings(e.deleted))) continue;
      out.push({
        to,
        from,
        paths: e.whole === true ? [] : e.paths,
        deleted: e.whole === true ? [] : e.deleted,
        whole: e.whole === true,
      });
    } catch { /* not an entry */ }
  }
  return out;
}

/**
 * `log` with `entry` added, trimmed to {@linkcode LOG_MAX_ENTRIES} and
 * {@linkcode LOG_MAX_BYTES} (oldest first out; the newest always stays).
 *
 * @example
 * ```ts
 * const text = appendEntry(await Deno.readTextFile(file).catch(() => ""), entry);
 * ```
 */
export function appendEntry(log: string, entry: LogEntry): string {
  const lines = [...parseLog(log), entry].map((e) => JSON.stringify(e) + "\n");
  let bytes = lines.reduce((n, l) => n + l.length, 0);
  let first = Math.max(0, lines.length - LOG_MAX_ENTRIES);
  for (let i = 0; i < first; i++) bytes -= lines[i].length;
  while (first < lines.length - 1 && bytes > LOG_MAX_BYTES) bytes -= lines[first++].length;
  return lines.slice(first).join("");
}

/**
 * The paths that take a tree from version `from` to version `to`, following
 * the log's chain of entries; null when the log cannot say (no unbroken
 * chain, or an entry marked `whole`).
 *
 * @example
 * ```ts
 * const list = changesBetween(parseLog(text), local, remote);
 * if (list === null) console.log("walk the whole tree");
 * ```
 */
export function changesBetween(
  entries: LogEntry[],
  from: VersionMarker,
  to: VersionMarker,
): ChangeList | null {
  // Last word per path: a path deleted in one version and created in a later
  // one is fetched, and the reverse is deleted.
  const state = new Map<string, "dir" | "other" | "deleted">();
  let cur = from;
  let versions = 0;
  for (const e of entries) {
    if (same(cur, to)) break;
    if (!e.from || !same(e.from, cur)) continue;
    if (e.whole) return null;
    // Within one publish a deletion and a creation of one name (a file that
    // became a directory) end with the name present.
    for (const p of e.deleted) state.set(bare(p), "deleted");
    for (const p of e.paths) state.set(bare(p), p.endsWith("/") ? "dir" : "other");
    cur = e.to;
    versions++;
  }
  if (!same(cur, to) || versions === 0) return null;
  const paths: string[] = [];
  const deleted: string[] = [];
  const dirs = new Set<string>();
  for (const [p, s] of state) {
    if (s === "deleted") deleted.push(p);
    else paths.push(p);
    if (s === "dir") dirs.add(p);
  }
  return { paths: paths.sort(), dirs, deleted: deleted.sort(), versions };
}

function bare(p: string): string {
  const b = p.replace(/\/+$/, "");
  return b === "" ? "." : b;
}
