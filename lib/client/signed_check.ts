/**
 * `--check` in a signed fleet: dest compared with the signed manifest of the
 * source's release, every file hashed (a check vouches for bytes, not for a
 * stat record), changing nothing.
 *
 * @module
 */

import { planTree, type TreeEntry, type TreePlan } from "../release/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import type { Drift, DriftItem } from "./drift.ts";
import { type ClientJob, serverOf } from "./job.ts";
import { fetchRelease } from "./signed.ts";
import { everythingMissing } from "./signed_fetch.ts";
import { TREE_SKIP } from "./signed_files.ts";
import { releaseFloor } from "./signed_state.ts";

/**
 * How the tree at `current` (null: none yet) differs from the source's
 * signed release, and that release's version.
 *
 * @throws {ReleaseRefusal} when the source's release is not as signed (a
 * sync would refuse it too); {@linkcode TransferError} when the source
 * cannot be read.
 *
 * @example
 * ```ts
 * const { drift, version } = await releaseDrift(job, await layout.current());
 * console.log(driftCount(drift) ? `differs from seq ${version.seq}` : "in sync");
 * ```
 */
export async function releaseDrift(
  job: ClientJob,
  current: string | null,
): Promise<{ drift: Drift; version: VersionMarker }> {
  const c = await fetchRelease(job, await releaseFloor(job, current));
  const plan = current
    ? await planTree(current, c.manifest, { skip: TREE_SKIP })
    : everythingMissing(c.manifest);
  return {
    drift: planDrift(plan, serverOf(job.source), c.manifest.entries.length),
    version: c.marker,
  };
}

/**
 * A tree plan as the drift `--check` prints: a listed path absent is
 * missing, one of another type, content or mode is changed (with why), and
 * what the manifest does not list is extra.
 *
 * @example
 * ```ts
 * planDrift({ wrong: [], extra: [], walked: [] }, "rsync2", 0).changed; // []
 * ```
 */
export function planDrift(plan: TreePlan, server: string, listed: number): Drift {
  const item = (path: string, kind: TreeEntry["kind"], what?: string[]): DriftItem => ({
    path: kind === "dir" ? `${path}/` : path,
    kind: kind === "symlink" ? "link" : kind,
    ...(what ? { what } : {}),
  });
  const wrong = (missing: boolean) =>
    plan.wrong.filter((w) => (w.why === "missing") === missing).map((w) =>
      item(w.path, w.want.type, missing ? undefined : [w.why])
    );
  return {
    changed: wrong(false),
    missing: wrong(true),
    extra: plan.extra.map((e) => item(e.path, e.kind)),
    sourceEntries: listed + 1,
    server,
    escaped: false,
  };
}
