/**
 * `fanout --role client --check`: what a sync would change, without changing
 * anything: changed, missing and extra entries, readable or as JSON. Exit 0
 * when dest is identical to the source, 1 when it has drifted (signed: to
 * the source's signed release; a release not as signed is exit 4, as for a
 * sync).
 *
 * @module
 */

import { fetchMarker } from "./client.ts";
import type { TreeLayout } from "./layout.ts";
import { compare, type Drift, driftCount, type DriftItem } from "./drift.ts";
import { type ClientJob, retrying } from "./job.ts";
import { checkDest } from "./safety.ts";
import { FanoutError } from "../core/mod.ts";
import { describeVersion, readMarker, type VersionMarker } from "../version/mod.ts";

/** What a check found. */
export interface CheckReport {
  in_sync: boolean;
  dest: string;
  source: string;
  /** The version in dest, and the source's. */
  dest_version: VersionMarker | null;
  source_version: VersionMarker | null;
  changed: DriftItem[];
  missing: DriftItem[];
  extra: DriftItem[];
  /** Why a sync would refuse this dest, when it would. */
  refusal: string | null;
}

/**
 * Compares dest with the source, changing nothing: a dry run, or in a
 * signed fleet the source's signed manifest (every file hashed).
 *
 * @throws {TransferError} when the source cannot be reached;
 * {@linkcode ReleaseRefusal} (signed) when its release is not as signed.
 *
 * @example
 * ```ts
 * const report = await checkDrift(job, inPlace(job));
 * Deno.exit(report.in_sync ? 0 : 1);
 * ```
 */
export async function checkDrift(job: ClientJob, layout: TreeLayout): Promise<CheckReport> {
  const current = await layout.current();
  let refusal: string | null = null;
  try {
    await checkDest(job.dest, { stateDir: job.stateDir, backupDir: job.backupDir });
  } catch (e) {
    if (!(e instanceof FanoutError)) throw e;
    refusal = e.message;
  }
  const { drift, version: sourceVersion } = (job.publicKeys?.length ?? 0) > 0
    ? await (await import("./signed_check.ts")).releaseDrift(job, current)
    : await retrying(job, "compare", async () => {
      const d: Drift = await compare(job, current ?? job.dest);
      return { drift: d, version: await fetchMarker(job) };
    });
  return {
    in_sync: driftCount(drift) === 0,
    dest: job.dest,
    source: job.source,
    dest_version: current ? readMarker(current) : null,
    source_version: sourceVersion,
    changed: drift.changed,
    missing: drift.missing,
    extra: drift.extra,
    refusal,
  };
}

/**
 * The report as text for a terminal.
 *
 * @example
 * ```ts
 * console.log(formatCheck(report));
 * // /apps/dat/plugins differs from rsync://lb:873/plugins/ in 2 entries (1 changed, 1 extra):
 * //   changed  a/b.txt (content, size, time)
 * //   extra    c.txt
 * // dest: seq 41 (1a2b3c4d main); source: seq 42 (5e6f7a8b main)
 * ```
 */
export function formatCheck(r: CheckReport): string {
  const lines: string[] = [];
  const n = r.changed.length + r.missing.length + r.extra.length;
  if (r.in_sync) {
    lines.push(`${r.dest} is in sync with ${r.source}`);
  } else {
    const parts = [
      [r.changed.length, "changed"],
      [r.missing.length, "missing"],
      [r.extra.length, "extra"],
    ].filter(([k]) => k).map(([k, w]) => `${k} ${w}`);
    lines.push(
      `${r.dest} differs from ${r.source} in ${n} ${n === 1 ? "entry" : "entries"} (${
        parts.join(", ")
      }):`,
    );
    const rows: [string, DriftItem][] = [
      ...r.changed.map((i) => ["changed", i] as [string, DriftItem]),
      ...r.missing.map((i) => ["missing", i] as [string, DriftItem]),
      ...r.extra.map((i) => ["extra", i] as [string, DriftItem]),
    ].sort((a, b) => a[1].path.localeCompare(b[1].path));
    for (const [what, item] of rows) {
      lines.push(
        `  ${what.padEnd(8)} ${printable(item.path)}${
          item.what ? ` (${item.what.join(", ")})` : ""
        }`,
      );
    }
  }
  lines.push(
    `dest: ${describeVersion(r.dest_version)}; source: ${describeVersion(r.source_version)}`,
  );
  if (r.refusal) lines.push(`note: a sync would refuse: ${r.refusal}`);
  return lines.join("\n");
}

/**
 * A name from a server as a terminal may show it: control characters (ESC
 * and the like) written `\#ooo`, their code in octal, as rsync writes them.
 *
 * @example
 * ```ts
 * printable("a\x1b[2Jb.txt"); // "a\\#033[2Jb.txt"
 * ```
 */
export function printable(name: string): string {
  return name.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f-\x9f]/g,
    (c) => `\\#${c.charCodeAt(0).toString(8).padStart(3, "0")}`,
  );
}
