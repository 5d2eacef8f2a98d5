/**
 * The client's run result: one typed object per run, written as JSON to
 * `<state_dir>/<name>/client-status.json` after every run (also after a
 * failed one), so monitoring can read what the last run did and the next run
 * knows when the tree was last fully verified. The same object is what a
 * client would report to the primary.
 *
 * @module
 */

import { tempFor } from "../core/mod.ts";
import type { VersionMarker } from "../version/mod.ts";

/** File name of the status file in the host's state dir. */
export const STATUS_FILE = "client-status.json";

/** What one client run did. */
export interface ClientRunResult {
  /** This host's name (`--name`, default the host name). */
  host: string;
  /** When the run started (ISO time). */
  time: string;
  /** Wall time of the run in ms, splay excluded. */
  duration_ms: number;
  /** How far it went: `fast` (version unchanged, no tree walk), `verify`
   * (tree compared, nothing to change), `sync` (changes applied),
   * `pinned` (held back by `--rollback`), `failed`. */
  mode: "fast" | "verify" | "sync" | "pinned" | "failed";
  /** The source URL. */
  source: string;
  /** The server that answered (`host:port` dialed), null when none did. */
  server: string | null;
  /** The destination directory. */
  dest: string;
  /** The version in dest after the run (its `.fanout-version`). */
  version: VersionMarker | null;
  /** The version in dest before the run. */
  previous_version: VersionMarker | null;
  /** Entries that differed from the source (drift), before this run fixed them. */
  drift: number;
  /** Files created or updated. */
  files_changed: number;
  /** Entries deleted. */
  files_deleted: number;
  /** Bytes of file data transferred (rsync's "total transferred file size"). */
  bytes_changed: number;
  /** Bytes received on the wire. */
  bytes_received: number;
  /** Where overwritten or deleted files were kept, when something was. */
  backup_dir: string | null;
  /** Last time the whole tree was compared with the source (ISO), or null. */
  verified_at: string | null;
  /** The process exit code (0 ok, 3 transfer, 4 safety…). */
  exit_code: number;
  /** The error line when the run failed, else null. */
  error: string | null;
}

/**
 * Reads the last status of the host whose state dir is `stateDir`; null when
 * there is none or it is unreadable.
 *
 * @example
 * ```ts
 * const last = readStatus("/var/lib/fanout/web1");
 * ```
 */
export function readStatus(stateDir: string): ClientRunResult | null {
  try {
    const v = JSON.parse(Deno.readTextFileSync(`${stateDir}/${STATUS_FILE}`));
    return typeof v === "object" && v !== null && typeof v.exit_code === "number" ? v : null;
  } catch {
    return null;
  }
}

/**
 * Writes `result` as the status file, atomically (temp file and rename), so
 * a reader never sees half a file.
 *
 * @example
 * ```ts
 * writeStatus("/var/lib/fanout/web1", result);
 * ```
 */
export function writeStatus(stateDir: string, result: ClientRunResult): void {
  const path = `${stateDir}/${STATUS_FILE}`;
  const tmp = tempFor(path);
  // Sync: two small calls at the end of every cron run (see existsNow in lib/core/fs.ts).
  Deno.writeTextFileSync(tmp, JSON.stringify(result, null, 2) + "\n");
  Deno.renameSync(tmp, path);
}
