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

import { VERSION_LOG, VERSION_MARKER } from "./defaults.ts";
import type { ApplyContext, TreeLayout } from "./client.ts";
import { type ClientJob, failUnlessOk, rsyncRun } from "./client_job.ts";
import { LISTED_MAX } from "./client_inplace.ts";
import { type RsyncResult, writeFileList } from "./rsync.ts";
import { describeVersion, parseMarker, type VersionMarker } from "./version.ts";
import { type ChangeList, changesBetween, parseLog } from "./version_log.ts";

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
  const why = !ahead
    ? "the server read is not ahead"
    : !list
    ? "no chain of entries"
    : list.deleted.length > job.maxDelete
    ? `${list.deleted.length} deletions, more than client.max_delete`
    : list.paths.length + list.deleted.length > LISTED_MAX
    ? `${list.paths.length + list.deleted.length} paths`
    : [...list.paths, ...list.deleted].some((p) => p.startsWith("/") || p.split("/").includes(".."))
    ? "a path leaving the tree"
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
  // Into a kept copy: rsync sends only what the log gained since.
  const r = await rsyncRun(job, {
    source: job.source,
    dest: `${dir}/`,
    filesFrom: names,
    timeout: Math.min(job.timeout, 30_000),
    connectTimeout: job.connectTimeout,
  });
  if (r.code === 23 && /No such file|link_stat/.test(r.stderr)) return null;
  failUnlessOk(job, r);
  const [text, marker] = await Promise.all(
    [VERSION_LOG, VERSION_MARKER].map((n) => Deno.readTextFile(`${dir}/${n}`).catch(() => "")),
  );
  const target = parseMarker(marker);
  return target ? { target, text } : null;
}
