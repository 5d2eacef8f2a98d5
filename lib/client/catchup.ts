/**
 * Catching up by the version log: a client at version M, whose source is at
 * a later version N, fetches the source's `.fanout-changes` and
 * `.fanout-version` (one small transfer, both from one server), follows the
 * log from M to N, and fetches just the paths it names: no tree walk on
 * either side. Anything the log cannot vouch for falls back to the whole-tree
 * comparison, which is the default path anyway:
 *
 * - no log on the source, or no unbroken chain of entries from M to N, or an
 *   entry too large to list;
 * - more deletions than `client.max_delete`, or more paths than a drift list
 *   takes ({@linkcode LISTED_MAX}): the comparison then says what to refuse;
 * - a listed path the source lacks, or a transfer that lands another version
 *   than N (a balancer picked another server).
 *
 * Only runs whose tree was verified recently take this path (the fast path's
 * rule, `client.verify_every`): like the fast path, it trusts that dest
 * still holds what the last run left.
 *
 * @module
 */

import { readSmallFile, VERSION_LOG, VERSION_MARKER } from "../core/mod.ts";
import type { ApplyContext, TreeLayout } from "./layout.ts";
import { type ClientJob, failUnlessOk, rsyncRun, safeAttrs } from "./job.ts";
import { LISTED_MAX } from "./inplace.ts";
import { firstDetour, warnDetour } from "./dest_paths.ts";
import { type RsyncResult, writeFileList } from "../rsync/mod.ts";
import {
  type ChangeList,
  changesBetween,
  describeVersion,
  LOG_READ_MAX_BYTES,
  MARKER_MAX_BYTES,
  parseLog,
  parseMarker,
  type VersionMarker,
} from "../version/mod.ts";

/** What a catch-up did. */
export interface CatchUp {
  /** The version dest is now at. */
  target: VersionMarker;
  /** What the log said to do. */
  list: ChangeList;
  /** The transfer of the listed paths. */
  r: RsyncResult;
}

/**
 * Brings dest from version `before` to the source's by the version log;
 * null when the log cannot (dest may then be partly updated: the whole-tree
 * path that follows finishes the job).
 *
 * @throws {RsyncFailure} when the source cannot be reached (retry it).
 *
 * @example
 * ```ts
 * const done = await catchUp(job, before, layout, { state, backupDir: null });
 * if (!done) await compareAndApply();
 * ```
 */
export async function catchUp(
  job: ClientJob,
  before: VersionMarker,
  layout: TreeLayout,
  ctx: ApplyContext,
): Promise<CatchUp | null> {
  if (!layout.applyChanges) return null;
  const fetched = await fetchLog(job);
  if (!fetched) {
    job.log.debug("the source has no version log or marker; comparing the whole tree");
    return null;
  }
  const { target, text } = fetched;
  const ahead = target.seq > before.seq;
  const list = ahead ? changesBetween(parseLog(text), before, target) : null;
  const named = list ? [...list.paths, ...list.deleted] : [];
  const leaves = named.some((p) => p.startsWith("/") || p.split("/").includes(".."));
  const tree = await layout.current() ?? job.dest;
  const through = list && !leaves ? firstDetour(tree, named, (p) => list.dirs.has(p)) : null;
  // A path through a symlink the log itself turns into a directory is a
  // change rsync makes (the link goes, the directory comes); any other is
  // a log that names what dest does not hold there, or a hostile one.
  if (through && !list?.dirs.has(through.via)) {
    warnDetour(job, through, "comparing the whole tree");
  }
  const why = !ahead
    ? "the server read is not ahead"
    : !list
    ? "no chain of entries"
    : list.deleted.length > job.maxDelete
    ? `${list.deleted.length} deletions, more than client.max_delete`
    : list.paths.length + list.deleted.length > LISTED_MAX
    ? `${list.paths.length + list.deleted.length} paths`
    : leaves
    ? "a path leaving the tree"
    : through
    ? `a path through the symlink ${through.via}`
    : null;
  if (why || !list) {
    job.log.debug("the version log cannot say; comparing the whole tree", {
      from: describeVersion(before),
      to: describeVersion(target),
      reason: why,
    });
    return null;
  }
  const r = await layout.applyChanges(list, target, ctx);
  if (!r) {
    job.log.debug("the source did not match its version log; comparing the whole tree", {
      to: describeVersion(target),
    });
    return null;
  }
  job.log.debug("caught up by the version log", {
    from: describeVersion(before),
    to: describeVersion(target),
    versions: list.versions,
    paths: list.paths.length,
    deleted: list.deleted.length,
  });
  return { target, list, r };
}

/** The source's log and marker, fetched together; null when it has either missing. */
async function fetchLog(job: ClientJob): Promise<{ target: VersionMarker; text: string } | null> {
  const dir = `${job.stateDir}/version-log`;
  const names = `${job.stateDir}/version-log.list`;
  await Deno.mkdir(dir, { recursive: true });
  await writeFileList(names, [VERSION_LOG, VERSION_MARKER]);
  let tooLarge = false;
  // Into a kept copy: rsync sends only what the log gained since. Files
  // larger than any log are not fetched (rsync says so with --info=skip1).
  const r = await rsyncRun(job, {
    source: job.source,
    dest: `${dir}/`,
    filesFrom: names,
    timeout: Math.min(job.timeout, 30_000),
    connectTimeout: job.connectTimeout,
    extra: [`--max-size=${LOG_READ_MAX_BYTES}`, "--info=skip1", ...safeAttrs(job)],
  }, { onStdout: (line) => tooLarge ||= / is over max-size$/.test(line) });
  if (r.code === 23 && /No such file|link_stat/.test(r.stderr)) return null;
  failUnlessOk(job, r);
  if (tooLarge) {
    // The kept copy is of an older log or marker: of no use, and not kept.
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    job.log.warn(
      "the source's version log or marker is too large to read; comparing the whole tree",
      {
        max_bytes: LOG_READ_MAX_BYTES,
      },
    );
    return null;
  }
  const target = parseMarker(readSmallFile(`${dir}/${VERSION_MARKER}`, MARKER_MAX_BYTES) ?? "");
  const text = readSmallFile(`${dir}/${VERSION_LOG}`, LOG_READ_MAX_BYTES) ?? "";
  return target ? { target, text } : null;
}
