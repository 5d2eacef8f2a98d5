/**
 * The default tree layout: dest is updated in place, with `--delay-updates`
 * so changed files land together at the end and a killed run leaves no
 * partial file in dest.
 *
 * @module
 */

import type { ApplyContext, CheckedRelease, TreeLayout } from "./layout.ts";
import { exists, existsNow, VERSION_LOG, VERSION_MARKER } from "../core/mod.ts";
import { firstDetour, removeExtras, warnDetour } from "./dest_paths.ts";
import { writeDestMarker } from "./safety.ts";
import type { Drift, DriftItem } from "./drift.ts";
import { baseJob, type ClientJob, RsyncFailure, safeAttrs } from "./job.ts";
import { clearDirty, removeDelayDirs, removeStaging, transfer } from "./transfer.ts";
import { type RsyncResult, writeFileList } from "../rsync/mod.ts";
import {
  type ChangeList,
  markerFromScan,
  readMarker,
  sameVersion,
  type VersionMarker,
} from "../version/mod.ts";

/**
 * Up to this many differences, a sync sends only the paths the comparison
 * listed (`--files-from`) instead of walking the whole tree a second time.
 */
export const LISTED_MAX = 1000;

/**
 * The default layout: dest is updated in place with `--delay-updates`
 * (changed files land together at the end, deletions after them).
 *
 * A small drift (the common case: a few files of a new version) is applied
 * from the comparison's own list: rsync transfers just those paths, then the
 * extra entries are removed here (kept in the backup dir when asked). A large
 * one gets a whole-tree `rsync --delete`. A version log's change list
 * (lib/client/catchup.ts) is applied the same way, without a comparison.
 */
export function inPlace(job: ClientJob): TreeLayout {
  return {
    current: () => Promise.resolve(existsNow(job.dest) ? job.dest : null),
    recover: async () => {
      await removeDelayDirs(job.dest);
      await removeStaging(job);
    },
    apply: async (drift: Drift, ctx: ApplyContext) => {
      if (ctx.state === "absent") await Deno.mkdir(job.dest, { recursive: true });
      if (ctx.state === "absent" || ctx.state === "empty") {
        await writeDestMarker(job.dest, "created");
      }
      const base = baseJob(job, job.dest);
      const listed = [...drift.changed, ...drift.missing].map((i) => i.path);
      const all = [...listed, ...drift.extra.map((i) => i.path)];
      // A new version (the marker among the differences) comes whole from
      // one connection. The comparison and the transfer are two connections:
      // behind a balancer they may reach two servers, and while a version
      // travels (or a push lands in between) those hold two versions. The
      // list of one applied with the files and marker of the other leaves a
      // tree that is neither, under the newer marker, which the fast path
      // and --watch then trust.
      const newVersion = listed.includes(VERSION_MARKER);
      if (
        ctx.state === "marked" && !newVersion && !drift.escaped && all.length <= LISTED_MAX &&
        all.every(plainPath) && !firstDetour(job.dest, all, (p) => p.endsWith("/"))
      ) {
        let r: RsyncResult | null = null;
        let gone = false;
        if (listed.length) {
          const list = `${job.stateDir}/client-files-from`;
          // The marker rides along: the same version as dest's on the server
          // that sends the list, it is not sent; another version, and it is,
          // which says the listed files came from that other version.
          await writeFileList(
            list,
            [...listed, ...(await exists(`${job.dest}/${VERSION_MARKER}`) ? [VERSION_MARKER] : [])]
              .map((p) => p === "./" ? "." : p),
          );
          // The dirty flag stays up until the extras are gone, or until the
          // whole tree has come: a run killed in between (the marker of
          // another version already in dest) must not pass for in sync. The
          // soak caught one such client: the new marker, a file missing.
          // A listed path gone on the server (the list reached another
          // version; the soak saw it end a run with exit 3): the whole tree
          // below makes dest one version.
          r = await transferListed(job, list, ctx);
          gone = r === null;
        }
        if (!gone && !r?.items.some((l) => l.endsWith(` ${VERSION_MARKER}`))) {
          const refused = await removeExtras(
            job.dest,
            [...drift.changed, ...drift.missing],
            drift.extra,
            ctx.backupDir,
          );
          if (!refused) {
            await clearDirty(job);
            return r ?? emptyResult();
          }
          warnDetour(job, refused, "syncing the whole tree");
        } else {
          // Behind a balancer the list went to a server at another version
          // than the one compared (a push in flight): the whole tree, on one
          // connection, makes dest one version again.
          job.log.debug(
            gone
              ? "a listed path is gone on the server; syncing the whole tree"
              : "the list came from another version; syncing the whole tree",
            { dest: job.dest },
          );
        }
      }
      return await transfer(job, {
        ...base,
        delete: true,
        delayUpdates: true,
        backupDir: ctx.backupDir ?? undefined,
        // Deletions after the new files are in place, so readers see the
        // tree change in one short burst; --max-delete is the backstop for
        // a source that changed since the comparison.
        deleteDelay: true,
        maxDelete: job.maxDelete,
      });
    },
    // Loaded on first use: an unsigned fleet's client never reads its code.
    applyRelease: async (c: CheckedRelease, ctx: ApplyContext) =>
      await (await import("./inplace_signed.ts")).applyInPlace(job, c, ctx),
    applyChanges: async (list: ChangeList, target: VersionMarker, ctx: ApplyContext) => {
      const file = `${job.stateDir}/client-files-from`;
      const names = new Set([...list.paths, VERSION_LOG, VERSION_MARKER]);
      await writeFileList(file, names);
      // A listed path the source lacks: the log and that server's tree
      // disagree. The dirty flag stays up, so the whole-tree path that
      // follows cleans up first.
      const r = await transferListed(job, file, ctx);
      if (!r) return null;
      // Behind a balancer the transfer may reach a server at another version
      // than the one whose log was read: then the listed paths are not the
      // change. Or one that listed them just before the target landed: then
      // the changed files may be stale under the target's marker.
      if (!sameVersion(readMarker(job.dest), target) || !markerFromScan(job.dest)) return null;
      const kind = (p: string): DriftItem["kind"] => list.dirs.has(p) ? "dir" : "file";
      const refused = await removeExtras(
        job.dest,
        list.paths.map((path) => ({ path, kind: kind(path) })),
        list.deleted.map((path) => ({ path, kind: "other" })),
        ctx.backupDir,
      );
      if (refused) {
        // The dirty flag stays up: the whole-tree path that follows finishes.
        warnDetour(job, refused, "comparing the whole tree");
        return null;
      }
      await clearDirty(job);
      return r;
    },
  };
}

/**
 * Transfers the paths listed in `file` into dest, leaving the dirty flag up
 * for the caller's next steps. Null when a listed path is not on the server
 * that answered (rsync 23) or went away during the run (24).
 *
 * @throws {TransferError} for any other failure.
 */
async function transferListed(
  job: ClientJob,
  file: string,
  ctx: ApplyContext,
): Promise<RsyncResult | null> {
  try {
    return await transfer(job, {
      ...baseJob(job, job.dest),
      filesFrom: file,
      delayUpdates: true,
      backupDir: ctx.backupDir ?? undefined,
      // A directory that became a file: what was below it is among the
      // extras (the comparison's, or the log's deletions), so it may go.
      extra: [...safeAttrs(job), "--force"],
    }, { keepDirty: true });
  } catch (e) {
    if (e instanceof RsyncFailure && (e.rsyncCode === 23 || e.rsyncCode === 24)) return null;
    throw e;
  }
}

/** A path as rsync itemized it, usable as is: no escapes, nothing leaving the tree. */
function plainPath(p: string): boolean {
  return !p.includes("\\#") && !p.startsWith("/") && !p.split("/").includes("..");
}

function emptyResult(): RsyncResult {
  return { code: 0, stats: null, items: [], deleted: 0, created: 0, stderr: "", ms: 0 };
}
