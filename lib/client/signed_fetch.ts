/**
 * The paths a tree has wrong, fetched from the source and checked against
 * the signed manifest before any of them goes live (see
 * lib/client/signed.ts).
 *
 * @module
 */

import {
  comparePaths,
  type Manifest,
  type ManifestEntry,
  type PlannedFix,
  type TreePlan,
  verifyTree,
} from "../release/mod.ts";
import { type RsyncResult, writeFileList } from "../rsync/mod.ts";
import type { CheckedRelease } from "./layout.ts";
import { type ClientJob, RsyncFailure, safeAttrs } from "./job.ts";
import { transfer } from "./transfer.ts";
import { firstDetour } from "./dest_paths.ts";
import { offence, ReleaseRefusal } from "./signed_files.ts";

/** The list of paths to fetch, in the state dir. */
const PATHS_LIST = "release-paths.list";

/**
 * The plan for a tree not there yet: every path of `m` missing.
 *
 * @example
 * ```ts
 * const plan = live ? await planTree(live, m) : everythingMissing(m);
 * ```
 */
export function everythingMissing(m: Manifest): TreePlan {
  return {
    wrong: m.entries.map((want) => ({
      path: want.path,
      why: "missing",
      detail: "missing",
      want,
      got: null,
    })),
    extra: [],
    walked: [],
  };
}

/** The planned fixes that need bytes from the server: files and symlinks not as listed. */
export function toFetch(plan: TreePlan): PlannedFix[] {
  return plan.wrong.filter((w) => w.want.type !== "dir" && w.why !== "mode");
}

/**
 * `tree` when rsync may read its files as the delta basis of the `fetch`
 * paths: each is a regular file there or absent, and none leads through a
 * symlink (rsync would read, and send the checksums of, a file outside it).
 */
export function basisFor(tree: string | null, fetch: readonly PlannedFix[]): string | null {
  if (!tree || fetch.some((w) => w.got && w.got.kind !== "file")) return null;
  return firstDetour(tree, fetch.map((w) => w.path), () => false) ? null : tree;
}

/**
 * Creates the directories above `entries` in `root` (mode 0700), for a
 * transfer that does not send them (`--no-implied-dirs`).
 */
export async function makeParents(
  root: string,
  entries: readonly { path: string }[],
): Promise<string[]> {
  const dirs = new Set<string>();
  for (const e of entries) {
    const parts = e.path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  const sorted = [...dirs].sort(comparePaths);
  for (const d of sorted) await Deno.mkdir(`${root}/${d}`, { recursive: true, mode: 0o700 });
  return sorted;
}

/**
 * The bytes a fetch may take beyond twice what it lists: a fetch of many
 * small files is one transfer.
 */
const FETCH_SLACK = 16 << 20;

/**
 * `entries` split into transfers that each bound what a server can make a
 * client store. rsync's one `--max-size` per run lets every file of a run be
 * as large as its largest: each group here, largest first, holds files that
 * together list at least half of (count × largest), or fit
 * {@linkcode FETCH_SLACK}, so a fetch stores at most about twice the bytes
 * the manifest lists for it, plus that slack per group.
 *
 * @example
 * ```ts
 * fetchGroups([{ size: 1e9 }, { size: 10 }, { size: 20 }] as ManifestEntry[]).length; // 2
 * ```
 */
export function fetchGroups<T extends { size: number }>(entries: readonly T[]): T[][] {
  const bySize = [...entries].sort((a, b) => b.size - a.size);
  const groups: T[][] = [];
  let group: T[] = [];
  let sum = 0;
  for (const e of bySize) {
    const largest = group[0]?.size ?? e.size;
    if (group.length && (group.length + 1) * largest > Math.max(2 * (sum + e.size), FETCH_SLACK)) {
      groups.push(group);
      group = [];
      sum = 0;
    }
    group.push(e);
    sum += e.size;
  }
  if (group.length) groups.push(group);
  return groups;
}

/**
 * Fetches the `entries` of the source into `into` (each parent there
 * already), and nothing else: no directory is entered, no file larger than
 * the largest of its group ({@linkcode fetchGroups}) is taken, and `basis`
 * (dest's tree) serves as rsync's delta basis. Null when rsync could not
 * send them all (a path gone or never there on the server): the check that
 * follows names the path.
 *
 * @throws {TransferError} for any other failure.
 */
export async function fetchPaths(
  job: ClientJob,
  into: string,
  entries: readonly ManifestEntry[],
  basis: string | null,
): Promise<RsyncResult | null> {
  let sum: RsyncResult | null = null;
  for (const group of fetchGroups(entries)) {
    const r = await fetchGroup(job, into, group, basis);
    if (!r) return null;
    sum = sum ? addResults(sum, r) : r;
  }
  return sum;
}

/** One transfer of {@linkcode fetchPaths}. */
async function fetchGroup(
  job: ClientJob,
  into: string,
  entries: readonly ManifestEntry[],
  basis: string | null,
): Promise<RsyncResult | null> {
  const list = `${job.stateDir}/${PATHS_LIST}`;
  await writeFileList(list, entries.map((e) => e.path));
  const largest = entries.reduce((n, e) => Math.max(n, e.size), 1);
  try {
    return await transfer(job, {
      source: job.source,
      dest: `${into}/`,
      timeout: job.timeout,
      connectTimeout: job.connectTimeout,
      filesFrom: list,
      extra: [
        ...safeAttrs(job),
        "--no-recursive",
        "--no-implied-dirs",
        `--max-size=${largest}`,
        // --ignore-times: a basis file of the listed size and time is still
        // only a basis (rsync would copy it as it is otherwise), and the
        // listed paths are those dest has wrong.
        ...(basis ? ["--ignore-times", `--copy-dest=${basis}`] : []),
      ],
    }, { keepDirty: true });
  } catch (e) {
    if (e instanceof RsyncFailure && (e.rsyncCode === 23 || e.rsyncCode === 24)) return null;
    throw e;
  }
}

/** Two transfers' results as one: counts and times added, lines joined. */
function addResults(a: RsyncResult, b: RsyncResult): RsyncResult {
  const stats = a.stats && b.stats
    ? Object.fromEntries(
      Object.entries(a.stats).map(([k, v]) => [k, v + b.stats![k as keyof typeof a.stats]]),
    ) as unknown as RsyncResult["stats"]
    : a.stats ?? b.stats;
  return {
    code: b.code,
    stats,
    items: [...a.items, ...b.items],
    deleted: a.deleted + b.deleted,
    created: a.created + b.created,
    stderr: [a.stderr, b.stderr].filter(Boolean).join("\n"),
    ms: a.ms + b.ms,
  };
}

/**
 * Checks what {@linkcode fetchPaths} put in `root`: each of `entries` as the
 * manifest lists it, the `parents` made for them (mode 0700), nothing else.
 *
 * @throws {ReleaseRefusal} (`staged`) naming the first path that is not.
 */
export async function checkFetched(
  job: ClientJob,
  c: CheckedRelease,
  root: string,
  entries: readonly ManifestEntry[],
  parents: readonly string[],
): Promise<void> {
  const dirs: ManifestEntry[] = parents.map((path) => ({
    path,
    type: "dir",
    mode: 0o700,
    size: 0,
    sha256: null,
  }));
  const all = [...dirs, ...entries].sort((a, b) => comparePaths(a.path, b.path));
  const bad = await verifyTree(root, { entries: all });
  if (bad) throw new ReleaseRefusal(job, bad.path, offence(bad, c), true, bad.why === "missing");
}
