/**
 * Paths in dest that a server names: whether one leads through a symlink
 * (never followed), and removing the entries the source lacks, or keeping
 * them in the backup dir.
 *
 * @module
 */

import { detour } from "../core/mod.ts";
import type { DriftItem } from "./drift.ts";
import type { ClientJob } from "./job.ts";

/** A server-named path that leads through a symlink, and the symlink. */
export interface Detour {
  path: string;
  via: string;
}

/**
 * The first of `paths` (relative to `root`) that leads through a symlink in
 * `root`, or null. A directory (`isDir`) counts its own name too: rsync
 * enters it, and an rsync that trusts its server's file list (3.2.7 does,
 * when the server leaves the directory itself out of the list) then writes
 * through a symlink there.
 *
 * @example
 * ```ts
 * firstDetour("/apps/plugins", ["a.txt", "lnk/b.txt"], (p) => p.endsWith("/"));
 * // { path: "lnk/b.txt", via: "lnk" } when lnk is a symlink
 * ```
 */
export function firstDetour(
  root: string,
  paths: Iterable<string>,
  isDir: (p: string) => boolean,
): Detour | null {
  for (const path of paths) {
    const via = detour(root, path, { whole: isDir(path) });
    if (via) return { path, via };
  }
  return null;
}

/** Says that a server named a path through a symlink, which is not followed. */
export function warnDetour(job: ClientJob, d: Detour, then: string): void {
  job.log.warn(`the server named a path below a symlink in dest; not followed, ${then}`, {
    path: d.path,
    symlink: d.via,
    dest: job.dest,
  });
}

/**
 * Removes `extra` entries from dest (the top-most of each subtree), or moves
 * them into `backupDir` when given. An entry just `sent` under the same name
 * (a file that became a directory, or the reverse) stays, and so does what
 * was below a directory that became a file. Returns the first entry left
 * alone because its path leads through a symlink (in dest, or in the backup
 * dir), or null when none was.
 */
export async function removeExtras(
  dest: string,
  sent: DriftItem[],
  extra: DriftItem[],
  backupDir: string | null,
): Promise<Detour | null> {
  const bare = (p: string) => p.replace(/\/$/, "");
  const same = new Set(sent.map((i) => bare(i.path)));
  const nonDirs = new Set(sent.filter((i) => i.kind !== "dir").map((i) => bare(i.path)));
  const paths = [...new Set(extra.map((i) => bare(i.path)))].filter((p) => p && p !== ".")
    .sort();
  const tops = new Set<string>();
  for (const p of paths) {
    const parts = p.split("/");
    const under = (set: Set<string>) =>
      parts.some((_, i) => i > 0 && set.has(parts.slice(0, i).join("/")));
    if (same.has(p) || under(nonDirs) || under(tops)) continue;
    tops.add(p);
  }
  let refused: Detour | null = null;
  for (const p of tops) {
    const from = `${dest}/${p}`;
    const via = detour(dest, p) ?? (backupDir ? detour(backupDir, p) : null);
    if (via) {
      refused ??= { path: p, via };
      continue;
    }
    try {
      if (backupDir) {
        const to = `${backupDir}/${p}`;
        await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
        await moveAside(from, to);
      } else {
        await Deno.remove(from, { recursive: true });
      }
    } catch (e) {
      // Gone already, or below a file (nothing there to remove).
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    }
  }
  return refused;
}

export async function moveAside(from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, to);
  } catch (e) {
    // Another filesystem: copy, then remove.
    if (!(e instanceof Error) || !/EXDEV|cross-device/i.test(e.message)) throw e;
    const cp = await new Deno.Command("cp", { args: ["-a", from, to], stdin: "null" }).output();
    if (!cp.success) throw new Error(`cp -a ${from} ${to} failed`);
    await Deno.remove(from, { recursive: true });
  }
}
