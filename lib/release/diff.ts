/**
 * Manifests compared: what one version adds, changes and removes against
 * another, and whether a tree on disk is the one a manifest lists, and if
 * not, the first path that is not and why.
 *
 * @module
 */

import { type Hashers, hashersOf } from "./_hash.ts";
import type { EntryType, Manifest, ManifestEntry } from "./manifest.ts";
import { comparePaths, mergePaths, type TreeEntry, TreeError, walkTree } from "./tree.ts";

/** What changed from one manifest to another; each list sorted by {@linkcode comparePaths}. */
export interface ManifestDiff {
  /** Paths only the new manifest lists. */
  added: string[];
  /** Paths only the old manifest lists. */
  removed: string[];
  /** Paths of the same type in both, with another mode, size or hash. */
  changed: string[];
  /** Paths listed in both with another type (a file that became a directory…). */
  typeChanged: string[];
}

/**
 * What `to` adds, removes and changes against `from`.
 *
 * @example
 * ```ts
 * const d = diffManifests(parseManifest(oldBytes), parseManifest(newBytes));
 * console.log(`${d.added.length} added, ${d.changed.length} changed, ${d.removed.length} removed`);
 * ```
 */
export function diffManifests(from: Manifest, to: Manifest): ManifestDiff {
  const d: ManifestDiff = { added: [], removed: [], changed: [], typeChanged: [] };
  mergePaths(from.entries, to.entries, (x, y) => {
    if (!y) d.removed.push(x!.path);
    else if (!x) d.added.push(y.path);
    else if (x.type !== y.type) d.typeChanged.push(y.path);
    else if (x.mode !== y.mode || x.size !== y.size || x.sha256 !== y.sha256) {
      d.changed.push(y.path);
    }
  });
  return d;
}

/** Why a path of a tree is not as its manifest lists it. */
export type Offence = "content" | "mode" | "type" | "missing" | "extra";

/** The first path of a tree that is not as its manifest lists it. */
export interface TreeMismatch {
  /** Relative to the tree's root. */
  path: string;
  why: Offence;
  /** In words, e.g. `mode 0644, expected 0755`. */
  detail: string;
}

const ARTICLE: Record<EntryType | TreeEntry["kind"], string> = {
  file: "a file",
  dir: "a directory",
  symlink: "a symlink",
  other: "a FIFO, socket or device",
};

const octal = (mode: number) => mode.toString(8).padStart(4, "0");

/**
 * What is wrong with the shape of `got`, the tree's entry for `want.path`
 * (or undefined): its type, a file's size. Null when nothing is. Reads
 * nothing: a symlink's target is its content ({@linkcode contentOffence}).
 */
function shapeOffence(want: ManifestEntry, got: TreeEntry | undefined): TreeMismatch | null {
  const at = (why: Offence, detail: string) => ({ path: want.path, why, detail });
  if (!got) return at("missing", `missing, expected ${ARTICLE[want.type]}`);
  if (got.kind !== want.type) {
    return at("type", `${ARTICLE[got.kind]}, expected ${ARTICLE[want.type]}`);
  }
  if (want.type === "file" && got.size !== want.size) {
    return at("content", `size ${got.size}, expected ${want.size}`);
  }
  return null;
}

/**
 * What is wrong with the content of `got`, of `want`'s type and size: a
 * symlink's target, a file's bytes. Null when nothing is.
 */
function contentOffence(
  root: string,
  want: ManifestEntry,
  got: TreeEntry,
  hash: Hashers,
): TreeMismatch | null {
  if (want.type !== "symlink") return bytesOffence(root, want, got, hash);
  let target: Uint8Array;
  try {
    target = new TextEncoder().encode(Deno.readLinkSync(`${root}/${want.path}`));
  } catch {
    return {
      path: want.path,
      why: "content",
      detail: "a symlink whose target cannot be read as UTF-8",
    };
  }
  try {
    return hash.bytes(target) === want.sha256
      ? null
      : { path: want.path, why: "content", detail: "a symlink to another target" };
  } catch (e) {
    if (!(e instanceof TreeError)) throw e;
    return { path: want.path, why: "content", detail: e.message };
  }
}

/** A mode other than `want`'s, or null. */
function modeOffence(want: ManifestEntry, got: TreeEntry): TreeMismatch | null {
  return got.mode === want.mode ? null : {
    path: want.path,
    why: "mode",
    detail: `mode ${octal(got.mode)}, expected ${octal(want.mode)}`,
  };
}

/** Bytes of a file (of the listed size) other than `want`'s, or null. */
function bytesOffence(
  root: string,
  want: ManifestEntry,
  got: TreeEntry,
  hash: Hashers,
): TreeMismatch | null {
  if (want.type !== "file") return null;
  try {
    return hash.file(root, got) === want.sha256
      ? null
      : { path: want.path, why: "content", detail: "SHA-256 differs" };
  } catch (e) {
    if (!(e instanceof TreeError)) throw e;
    return { path: want.path, why: "content", detail: e.message };
  }
}

/**
 * Checks the tree at `root` against manifest `m`: every path listed is there
 * with its type, mode, size and content, and nothing else is (but `skip`,
 * the files the client keeps beside the tree). Returns the first offending
 * path in the manifest's order with why, or null when the tree is the
 * manifest's. Walks only what the manifest lists (memory stays bounded by
 * it whatever the tree holds), never through a symlink, and hashes the
 * files in order up to the first offence.
 *
 * @example
 * ```ts
 * const bad = await verifyTree("/srv/plugins", manifest, { skip: [".fanout-version"] });
 * if (bad) console.log(`${bad.path}: ${bad.why} (${bad.detail})`);
 * ```
 */
export async function verifyTree(
  root: string,
  m: Manifest,
  opts: { skip?: Iterable<string> } = {},
): Promise<TreeMismatch | null> {
  const listed = new Set(m.entries.map((e) => e.path));
  // Paths the manifest does not list are neither lstat'ed nor entered: the
  // first of them (in the manifest's order) is all that is kept.
  const extra = { path: null as string | null };
  let tree: TreeEntry[];
  try {
    tree = await walkTree(root, {
      skip: opts.skip,
      filter: (path) => {
        if (listed.has(path)) return true;
        if (extra.path === null || comparePaths(path, extra.path) < 0) extra.path = path;
        return false;
      },
    });
  } catch (e) {
    if (!(e instanceof TreeError)) throw e;
    return { path: e.path, why: "extra", detail: e.message };
  }
  // The listed paths before the first extra, in order, each as far as its
  // first difference.
  const byPath = new Map(tree.map((e) => [e.path, e]));
  const hash = await hashersOf(root, tree);
  for (const want of m.entries) {
    if (extra.path !== null && comparePaths(want.path, extra.path) > 0) break;
    const got = byPath.get(want.path);
    // A symlink's target before its mode, a file's mode before its bytes.
    const x = shapeOffence(want, got) ??
      (want.type === "symlink"
        ? contentOffence(root, want, got!, hash) ?? modeOffence(want, got!)
        : modeOffence(want, got!) ?? contentOffence(root, want, got!, hash));
    if (x) return x;
  }
  return extra.path === null
    ? null
    : { path: extra.path, why: "extra", detail: "not in the manifest" };
}

/** A listed path of a tree that is not as its manifest lists it, with what the walk found there. */
export interface PlannedFix extends TreeMismatch {
  /** The manifest's entry. */
  want: ManifestEntry;
  /** The tree's entry at that path, or null. */
  got: TreeEntry | null;
}

/** What a tree lacks to be the one a manifest lists. */
export interface TreePlan {
  /**
   * Listed paths that are not as listed, in the manifest's order: "mode"
   * only when type and content are right.
   */
  wrong: PlannedFix[];
  /** Paths the tree holds that the manifest does not list, in order, each with what is below it. */
  extra: TreeEntry[];
  /** Every path the walk found (for a stat record), in order. */
  walked: TreeEntry[];
}

/** Options of {@linkcode planTree}. */
export interface PlanOptions {
  /** Relative paths left out, with what is below them (the files kept beside the tree). */
  skip?: Iterable<string>;
  /** The most paths walked. */
  maxPaths?: number;
  /**
   * A walk of `root` with these options, made beforehand (begun while what
   * it is compared with was still being fetched): taken instead of a walk.
   */
  walked?: TreeEntry[];
  /**
   * True when the file or symlink walked as `got` is known to hold `want`'s
   * bytes (or target) without reading them: a stat record says it has not
   * changed since it was checked against a manifest that listed the same.
   */
  known?: (got: TreeEntry, want: ManifestEntry) => boolean;
}

/**
 * Compares the tree at `root` with manifest `m`, every path of it: what is
 * missing, of another type, content or mode, and what the manifest does not
 * list. One `lstat` walk (never through a symlink); every file of the listed
 * size, and every symlink's target, is hashed unless `known` vouches for it.
 * Nothing loads to hash when nothing is left to, nor node:crypto for a few
 * files (lib/release/_hash.ts).
 *
 * @throws {TreeError} for a name in the tree that is not valid UTF-8, or
 * past `maxPaths`.
 *
 * @example
 * ```ts
 * const plan = await planTree(dest, manifest, { skip: [".fanout-version"] });
 * const fetch = plan.wrong.filter((w) => w.why !== "mode").map((w) => w.path);
 * ```
 */
export async function planTree(
  root: string,
  m: Manifest,
  opts: PlanOptions = {},
): Promise<TreePlan> {
  const walked = opts.walked ??
    await walkTree(root, { skip: opts.skip, maxPaths: opts.maxPaths });
  const plan: TreePlan = { wrong: [], extra: [], walked };
  // In the manifest's order: each listed path's offence found without
  // reading, or the entries whose content is still to be read.
  const found: (PlannedFix | { want: ManifestEntry; got: TreeEntry })[] = [];
  let toRead = 0;
  mergePaths(m.entries, walked, (want, got) => {
    if (!want) {
      plan.extra.push(got!);
      return;
    }
    const x = shapeOffence(want, got);
    if (x) found.push({ ...x, want, got: got ?? null });
    else if (want.type === "dir" || opts.known?.(got!, want)) {
      const mode = modeOffence(want, got!);
      if (mode) found.push({ ...mode, want, got: got! });
    } else {
      found.push({ want, got: got! });
      toRead++;
    }
  });
  const hash = toRead
    ? await hashersOf(root, found.flatMap((f) => "why" in f ? [] : [f.got]))
    : null;
  for (const f of found) {
    if ("why" in f) {
      plan.wrong.push(f);
      continue;
    }
    const x = contentOffence(root, f.want, f.got, hash!) ?? modeOffence(f.want, f.got);
    if (x) plan.wrong.push({ ...x, want: f.want, got: f.got });
  }
  return plan;
}
