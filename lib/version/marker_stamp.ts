/**
 * The marker's file time as a witness of the tree scan that sent it.
 *
 * rsync lists a tree first (name, size, mtime of every file) and reads each
 * file's bytes later, when it sends them; the receiver gives a file the mtime
 * of the list. A version that lands on the server between the two therefore
 * reaches a client as the new marker's bytes under the old marker's mtime,
 * with the rest of the tree as listed before it: files the new version added
 * are missing, files it changed may be stale. (Plain `rsync -a
 * --delay-updates` does the same: the window is rsync's, not fanout's.)
 *
 * So every server's marker carries its `published_at` as its mtime (the
 * publisher and the push engine stamp it), and a client whose marker is older
 * by its mtime than by its content knows its tree came from an earlier scan.
 *
 * @module
 */

import { VERSION_MARKER } from "../core/mod.ts";
import { parseMarker, readMarker } from "./version.ts";

/**
 * Sets the mtime of the marker file at `path` to its own `published_at`.
 * A file that is not a valid marker is left alone.
 *
 * @throws {Deno.errors.NotFound} when there is no file at `path`.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile(path, formatMarker(marker));
 * stampMarker(path);
 * ```
 */
export function stampMarker(path: string): void {
  const marker = parseMarker(Deno.readTextFileSync(path));
  const at = marker ? Date.parse(marker.published_at) : NaN;
  if (!Number.isNaN(at)) Deno.utimeSync(path, new Date(at), new Date(at));
}

/**
 * False when the marker in `dir` has an mtime earlier than the `published_at`
 * it holds: its bytes were read after a newer version landed on the server
 * that listed the tree, so the tree around it is from before that version.
 * True otherwise, including when there is no marker. A marker written by
 * hand and not stamped can read false: the kernel's file times lag the clock
 * `published_at` comes from by up to a tick, so its mtime may fall just
 * before it, and every client run then compares the tree again; fanout's
 * publisher and push engine always stamp.
 *
 * @example
 * ```ts
 * if (!markerFromScan(dest)) log.info("a version landed during the transfer; comparing again");
 * ```
 */
export function markerFromScan(dir: string): boolean {
  const marker = readMarker(dir);
  const at = marker ? Date.parse(marker.published_at) : NaN;
  if (Number.isNaN(at)) return true;
  let mtime: number | undefined;
  try {
    mtime = Deno.lstatSync(`${dir}/${VERSION_MARKER}`).mtime?.getTime();
  } catch {
    return true;
  }
  if (mtime === undefined || mtime >= at) return true;
  // A file system (or an rsync) that keeps whole seconds only.
  return mtime % 1000 === 0 && mtime === Math.floor(at / 1000) * 1000;
}
