/**
 * The version marker at the root of every tree (`.fanout-version`):
 * `{"seq": 42, "commit": "<sha>", "ref": "main", "published_at": "<ISO>"}`.
 * Publish writes it last, every push sends it last, so a host whose marker
 * says seq N holds all of version N.
 *
 * @module
 */

import { readSmallFile, stripControl, VERSION_MARKER } from "../core/mod.ts";

/**
 * The most a marker file may hold (a real one is ~150 bytes): a larger one,
 * or one that is not a regular file, reads as no marker.
 */
export const MARKER_MAX_BYTES = 4096;

/** A published version. */
export interface VersionMarker {
  /** Monotonic publish counter. */
  seq: number;
  /** The git commit the tree was exported from. */
  commit: string;
  ref: string;
  /** ISO time of the publish. */
  published_at: string;
}

/**
 * Parses marker text; null when it is not a valid marker.
 *
 * @example
 * ```ts
 * parseMarker('{"seq":1,"commit":"ab12","ref":"main","published_at":"2026-11-25T00:00:00Z"}')?.seq; // 1
 * ```
 */
export function parseMarker(text: string): VersionMarker | null {
  try {
    return markerOf(JSON.parse(text));
  } catch { /* not JSON */ }
  return null;
}

/** The most of a `GET /version` answer read: a marker and its JSON wrapping. */
export const VERSION_ANSWER_MAX_BYTES = MARKER_MAX_BYTES + 64;

/**
 * The marker of a `GET /version` answer (`{"version": <marker or null>}`,
 * lib/health's board): null when it names none, undefined when the text is
 * not that shape or its marker is not valid. The answer comes from whoever
 * holds the port, so it gets a marker file's check.
 *
 * @example
 * ```ts
 * parseVersionAnswer('{"version":{"seq":1,"commit":"ab12","ref":"main","published_at":"2026-11-25T00:00:00Z"}}')?.seq; // 1
 * parseVersionAnswer('{"version":null}'); // null
 * parseVersionAnswer("<html>"); // undefined
 * ```
 */
export function parseVersionAnswer(text: string): VersionMarker | null | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || !("version" in parsed)) return undefined;
  const v = (parsed as { version: unknown }).version;
  if (v === null) return null;
  return markerOf(v) ?? undefined;
}

/**
 * `v` as a marker when it has the four fields, each of the right kind; null
 * otherwise. The one check for every way a marker arrives (a file's JSON, a
 * module comment): seq a safe integer from 0 (so a run of hundreds of digits,
 * Infinity or a rounded huge number is no seq), the strings one clean line.
 */
function markerOf(v: unknown): VersionMarker | null {
  if (typeof v !== "object" || v === null) return null;
  const { seq, commit, ref, published_at: at } = v as Record<string, unknown>;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) return null;
  if (typeof commit !== "string" || typeof ref !== "string" || typeof at !== "string") return null;
  // A marker comes from a server: its text may reach a terminal or a log.
  const t = (x: string) => stripControl(x, { oneLine: true });
  return { seq: seq as number, commit: t(commit), ref: t(ref), published_at: t(at) };
}

/**
 * Reads the marker of the tree at `dir`; null when absent or invalid (a
 * symlink is not followed, and more than {@linkcode MARKER_MAX_BYTES} is
 * not read: the file comes from a server).
 *
 * @example
 * ```ts
 * const v = readMarker("/data/rsync/plugins");
 * ```
 */
export function readMarker(dir: string): VersionMarker | null {
  // Sync: a few bytes, read on every cron run (see existsNow in lib/core/fs.ts).
  const text = readSmallFile(`${dir}/${VERSION_MARKER}`, MARKER_MAX_BYTES);
  return text === null ? null : parseMarker(text);
}

/**
 * True when both markers name the same publish (or both are absent).
 *
 * @example
 * ```ts
 * if (!sameVersion(remote, local)) console.log("a new version is out");
 * ```
 */
export function sameVersion(a: VersionMarker | null, b: VersionMarker | null): boolean {
  if (!a || !b) return a === b;
  return a.seq === b.seq && a.commit === b.commit && a.published_at === b.published_at;
}

/** The marker as it is written to disk (one line of JSON and a newline). */
export function formatMarker(v: VersionMarker): string {
  return JSON.stringify({
    seq: v.seq,
    commit: v.commit,
    ref: v.ref,
    published_at: v.published_at,
  }) + "\n";
}

/** A short human form: `seq 42 (1a2b3c4d main)`. */
export function describeVersion(v: VersionMarker | null): string {
  return v ? `seq ${v.seq} (${v.commit.slice(0, 8)} ${v.ref})` : "none";
}

const COMMENT = /fanout-version seq=(\d+) commit=(\S+) ref=(\S+) at=(\S+)/;

/**
 * The marker as the read module's comment carries it, so a client can learn
 * the version from a module listing: one tiny exchange with the daemon and
 * no rsync process (see lib/rsync/probe.ts).
 *
 * @example
 * ```ts
 * markerComment(v); // "fanout-version seq=42 commit=1a2b… ref=main at=2026-11-25T21:00:00.000Z"
 * ```
 */
export function markerComment(v: VersionMarker): string {
  // The marker comes from the tree, which an upstream writes: nothing of it may
  // end the comment's line, continue it (a trailing backslash) or expand in it (%VAR%).
  // deno-lint-ignore no-control-regex
  const safe = (s: string) => s.replace(/[\s\x00-\x1f\x7f-\x9f\\%]/g, "_");
  return `fanout-version seq=${v.seq} commit=${safe(v.commit)} ref=${safe(v.ref)} at=${
    safe(v.published_at)
  }`;
}

/**
 * The marker a module comment carries (see {@linkcode markerComment}), or
 * null; held to the same checks as {@linkcode parseMarker}.
 *
 * @example
 * ```ts
 * markerFromComment("plugins fanout-version seq=42 commit=1a2b ref=main at=2026-11-25T21:00:00Z")?.seq; // 42
 * ```
 */
export function markerFromComment(comment: string): VersionMarker | null {
  const m = COMMENT.exec(comment);
  return m ? markerOf({ seq: Number(m[1]), commit: m[2], ref: m[3], published_at: m[4] }) : null;
}
