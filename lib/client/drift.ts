/**
 * Comparing dest with the source: a dry run (`--dry-run --delete
 * --itemize-changes`) sorted into changed, missing and extra entries,
 * leaving out fanout's own files (the destination marker, rsync's `.~tmp~`
 * staging dirs).
 *
 * @module
 */

import { DEST_MARKER } from "../core/defaults.ts";
import { baseJob, type ClientJob, failUnlessOk, rsyncRun, serverOf } from "./job.ts";
import { DELAY_DIR } from "./transfer.ts";

/** One difference between dest and the source. */
export interface DriftItem {
  /** Path relative to the tree root; directories end in `/`. */
  path: string;
  /** `file`, `dir`, `link` or `other`. */
  kind: "file" | "dir" | "link" | "other";
  /** For changed items: what differs (`size`, `time`, `content`, `perms`…). */
  what?: string[];
}

/** What a comparison found. */
export interface Drift {
  /** In both, but different. */
  changed: DriftItem[];
  /** In the source only. */
  missing: DriftItem[];
  /** In dest only (a sync deletes them). */
  extra: DriftItem[];
  /** Entries in the source's file list (the root included). */
  sourceEntries: number;
  /** The server that answered. */
  server: string;
  /** Some names came escaped from rsync (unprintable bytes): shown decoded,
   * but not trusted as a transfer list. */
  escaped: boolean;
}

/** The number of differences in `d`. */
export function driftCount(d: Drift): number {
  return d.changed.length + d.missing.length + d.extra.length;
}

/**
 * Lists how `target` differs from the source (a dry run: nothing changes).
 * `adopt` keeps a `.git` out of the comparison (adoption drops it anyway).
 *
 * @throws {TransferError} when the source cannot be read.
 *
 * @example
 * ```ts
 * const drift = await compare(job, "/apps/dat/plugins");
 * if (driftCount(drift) === 0) console.log("in sync");
 * ```
 */
export async function compare(
  job: ClientJob,
  target: string,
  opts: { adopt?: boolean } = {},
): Promise<Drift> {
  const rj = baseJob(job, target);
  const r = await rsyncRun(job, {
    ...rj,
    delete: true,
    dryRun: true,
    excludes: [...rj.excludes!, ...(opts.adopt ? ["/.git"] : [])],
  });
  failUnlessOk(job, r);
  return { ...classify(r.items), sourceEntries: r.stats?.files ?? 0, server: serverOf(job.source) };
}

/**
 * Sorts itemized rsync lines into changed, missing and extra entries,
 * leaving out fanout's own files.
 *
 * @example
 * ```ts
 * classify([">f.st...... a.txt", "*deleting   b.txt"]);
 * // { changed: [{ path: "a.txt", kind: "file", what: ["size", "time"] }], missing: [], extra: [{ path: "b.txt", … }] }
 * ```
 */
export function classify(items: string[]): Omit<Drift, "sourceEntries" | "server"> {
  const out: Omit<Drift, "sourceEntries" | "server"> = {
    changed: [],
    missing: [],
    extra: [],
    escaped: false,
  };
  const name = (raw: string) => {
    const path = unescapeName(raw);
    if (path !== raw) out.escaped = true;
    return path;
  };
  for (const line of items) {
    if (line.startsWith("*deleting")) {
      const path = name(line.slice(9).trimStart());
      if (ours(path)) continue;
      out.extra.push({ path, kind: path.endsWith("/") ? "dir" : "other" });
      continue;
    }
    const flags = line.slice(0, 11);
    const kind = ({ f: "file", d: "dir", L: "link" } as const)[flags[1]] ?? "other";
    const path = name(kind === "link" ? line.slice(12).replace(/ -> .*$/, "") : line.slice(12));
    if (ours(path)) continue;
    // The root's own mtime moves whenever fanout writes its marker: not drift.
    if (path === "./" && flags[0] === "." && flags.slice(2).replace(/[tT.]/g, "") === "") continue;
    if (flags.slice(2).startsWith("+++")) {
      out.missing.push({ path, kind });
    } else {
      out.changed.push({ path, kind, what: attrs(flags) });
    }
  }
  return out;
}

/**
 * Undoes rsync's escaping of names in its output (`caf\#303\#251.txt` for
 * `café.txt`: bytes it will not print, in octal).
 *
 * @example
 * ```ts
 * unescapeName("caf\\#303\\#251.txt"); // "café.txt"
 * ```
 */
export function unescapeName(raw: string): string {
  if (!raw.includes("\\#")) return raw;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < raw.length;) {
    const oct = /^\\#([0-7]{3})/.exec(raw.slice(i, i + 5));
    if (oct) {
      bytes.push(parseInt(oct[1], 8));
      i += 5;
    } else {
      const ch = String.fromCodePoint(raw.codePointAt(i)!);
      bytes.push(...enc.encode(ch));
      i += ch.length;
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

const ATTRS: [number, string, string][] = [
  [2, "c", "content"],
  [3, "s", "size"],
  [4, "t", "time"],
  [4, "T", "time"],
  [5, "p", "perms"],
  [6, "o", "owner"],
  [7, "g", "group"],
];

function attrs(flags: string): string[] {
  const what = ATTRS.filter(([i, ch]) => flags[i] === ch).map(([, , w]) => w);
  if (flags[0] === ">" && !what.includes("content") && !what.includes("size")) {
    what.unshift("content");
  }
  return what.length ? what : ["attributes"];
}

function ours(path: string): boolean {
  return path === DEST_MARKER || path.split("/").includes(DELAY_DIR);
}
