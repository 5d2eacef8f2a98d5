/**
 * A manifest kept from one build to the next: each build walks the tree
 * once, takes its stat record from that walk, and hashes only the paths whose
 * `lstat` differs from the record kept with the previous manifest (or that
 * it did not have). A one-file change in a tree of tens of thousands of files
 * hashes one file.
 *
 * The pair is kept in two files, the manifest written before the record: a
 * record never describes a newer tree than the manifest kept with it, so a
 * run stopped between the two writes costs hashes, never a wrong entry. A
 * path is taken from the previous manifest only when its record is
 * unchanged and the entry still agrees with what the walk found (type, mode,
 * size); anything else is hashed again.
 *
 * @module
 */

import { hashers } from "./_hash.ts";
import { readKept } from "./_read.ts";
import { writePrivate } from "../core/mod.ts";
import {
  type BuildOptions,
  formatManifest,
  type Manifest,
  MANIFEST_LIMITS,
  type ManifestEntry,
  manifestEntry,
  ManifestError,
  type ManifestLimits,
  parseManifest,
} from "./manifest.ts";
import { compareRecord, readRecord, recordOf, type TreeRecord, writeRecord } from "./record.ts";
import { mergePaths, type TreeEntry, walkTree } from "./tree.ts";

/** A manifest and the stat record of the walk it was built from. */
export interface ManifestState {
  manifest: Manifest;
  record: TreeRecord;
}

/** What {@linkcode updateManifest} built. */
export interface UpdatedManifest extends ManifestState {
  /** Files and symlinks whose content was read and hashed. */
  hashed: number;
}

/** Where a {@linkcode ManifestState} is kept. */
export interface StateFiles {
  /** The manifest's text, as {@linkcode formatManifest} writes it. */
  manifest: string;
  /** The stat record (lib/release/record.ts). */
  record: string;
}

/**
 * The manifest of the tree at `root` now, hashing only what changed since
 * `before` (null: everything). Takes the same options as
 * {@linkcode buildManifest}, and gives the same manifest as it would.
 *
 * @throws {ManifestError} / {TreeError} as {@linkcode buildManifest} does.
 *
 * @example
 * ```ts
 * const files = { manifest: `${state}/staging.manifest`, record: `${state}/staging.record` };
 * const next = await updateManifest(staging, readManifestState(files), { skip: RELEASE_SKIP });
 * await writeManifestState(files, next);
 * console.log(`${next.hashed} files hashed`);
 * ```
 */
export async function updateManifest(
  root: string,
  before: ManifestState | null,
  opts: BuildOptions = {},
): Promise<UpdatedManifest> {
  const limits = opts.limits ?? MANIFEST_LIMITS;
  const tree = await walkTree(root, {
    skip: opts.skip,
    filter: opts.filter,
    maxPaths: limits.maxPaths,
  });
  const record = recordOf(tree);
  const hash = await hashers();
  let hashed = 0;
  const fresh = (e: TreeEntry) => {
    if (e.kind !== "dir") hashed++;
    return manifestEntry(root, e, hash);
  };
  if (!before) return { manifest: { entries: tree.map(fresh) }, record, hashed };
  const c = compareRecord(before.record, record);
  const stale = new Set([...c.changed, ...c.added]);
  const entries: ManifestEntry[] = [];
  mergePaths(before.manifest.entries, tree, (old, e) => {
    if (!e) return;
    entries.push(old && !stale.has(e.path) && agrees(old, e) ? old : fresh(e));
  });
  return { manifest: { entries }, record, hashed };
}

/** Whether a kept entry still says what the walk found of its path. */
function agrees(old: ManifestEntry, e: TreeEntry): boolean {
  return old.type === e.kind && old.mode === e.mode && (e.kind === "dir" || old.size === e.size);
}

/**
 * Reads a kept manifest and its record; null when either file is missing
 * (a first build). Both are read as hostile: bounded, parsed strictly, not
 * through a symlink.
 *
 * @throws {ManifestError} / {RecordError} for a file that cannot be used: the
 * caller builds from nothing instead.
 *
 * @example
 * ```ts
 * let before = null;
 * try {
 *   before = readManifestState(files);
 * } catch (e) {
 *   log.warn(`${(e as Error).message}; hashing the whole tree`);
 * }
 * ```
 */
export function readManifestState(
  files: StateFiles,
  limits: ManifestLimits = MANIFEST_LIMITS,
): ManifestState | null {
  const record = readRecord(files.record);
  if (!record) return null;
  const bytes = readKept(files.manifest, limits.maxBytes, (m) => new ManifestError(m));
  if (!bytes) return null;
  return { manifest: parseManifest(bytes, limits), record };
}

/**
 * Keeps `state` in `files`: the manifest first, then the record, each whole
 * or not at all (a temporary file renamed over it), readable by its owner
 * only. Returns the manifest's bytes, as written.
 *
 * @example
 * ```ts
 * const bytes = await writeManifestState(files, await updateManifest(root, before));
 * ```
 */
export async function writeManifestState(
  files: StateFiles,
  state: ManifestState,
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = formatManifest(state.manifest);
  await writePrivate(files.manifest, bytes);
  await writeRecord(files.record, state.record);
  return bytes;
}
