/**
 * What the source tree holds, read as a push needs it: whether the tree
 * may be pushed at all (an unmounted disk looks like an empty tree), and
 * the release files that go with a version's marker. Kept apart from the
 * engine because it only reads files, bounded, and decides nothing about
 * replicas.
 *
 * @module
 */

import type { VersionMarker } from "../version/mod.ts";
import {
  readSmallFile,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import {
  ENVELOPE_MAX_BYTES,
  MANIFEST_LIMITS,
  manifestDigest,
  markerMismatch,
  readEnvelope,
} from "../release/mod.ts";

/**
 * What an empty tree that never had a version is waiting for: a
 * {@linkcode sourceProblem} naming it is no trouble.
 *
 * @example
 * ```ts
 * if (problem.includes(WAITING)) log.info("not pushing yet", { reason: problem });
 * ```
 */
export const WAITING = "waiting for the first publish";

/**
 * The most of a marker read, the source's or a replica's: a marker is a few
 * hundred bytes.
 *
 * @example
 * ```ts
 * readSmallFile(`${source}/${VERSION_MARKER}`, MARKER_READ_MAX_BYTES);
 * ```
 */
export const MARKER_READ_MAX_BYTES = 4096;

/** fanout's own files at a tree's root: never content (a tree of only these is empty). */
const OWN_FILES = new Set([
  VERSION_MARKER,
  VERSION_LOG,
  RELEASE_MANIFEST,
  RELEASE_ENVELOPE,
  ".~tmp~",
  SERVER_TEMP_DIR,
]);

/**
 * Why the tree at `root` must not be pushed, or null: missing, not a
 * directory, or empty (an unmounted disk looks like an empty mount point).
 * fanout's own files never count as content. An empty tree that never had a
 * version (`versioned` false) is a fresh host waiting for its first publish.
 *
 * @example
 * ```ts
 * await sourceProblem("/srv/plugins", true); // null, or "source tree /srv/plugins is empty …"
 * ```
 */
export async function sourceProblem(root: string, versioned = true): Promise<string | null> {
  try {
    const st = await Deno.stat(root);
    if (!st.isDirectory) return `source tree ${root} is not a directory`;
  } catch {
    return `source tree ${root} is missing (unmounted disk?); not pushing, replicas keep their files`;
  }
  for await (const e of Deno.readDir(root)) {
    if (!OWN_FILES.has(e.name)) return null;
    if (e.name === VERSION_MARKER) versioned = true;
  }
  if (!versioned) return `source tree ${root} is empty: ${WAITING}`;
  return `source tree ${root} is empty (unmounted disk?); not pushing, replicas keep their files`;
}

/**
 * Copies the source's manifest and envelope into `dir` when both belong to
 * `marker`'s version (the envelope, read but not verified: a server relays
 * it, its clients verify it; and the copied manifest's SHA-256);
 * "unsettled" when they are of another version (a publish landing), "none"
 * when the source has neither (an unsigned fleet).
 *
 * @example
 * ```ts
 * await snapshotRelease("/srv/plugins", `${workDir}/web1.marker`, parseMarker(text));
 * // "copied", "none" or "unsettled"
 * ```
 */
export async function snapshotRelease(
  source: string,
  dir: string,
  marker: VersionMarker | null,
): Promise<"copied" | "none" | "unsettled"> {
  const envelope = readSmallFile(`${source}/${RELEASE_ENVELOPE}`, ENVELOPE_MAX_BYTES);
  const manifest = await Deno.lstat(`${source}/${RELEASE_MANIFEST}`).catch(() => null);
  if (envelope === null && manifest === null) return "none";
  // Only regular files are copied: a link here is not the publisher's.
  if (envelope === null || !manifest?.isFile || manifest.size > MANIFEST_LIMITS.maxBytes) {
    return "unsettled";
  }
  await Deno.copyFile(`${source}/${RELEASE_MANIFEST}`, `${dir}/${RELEASE_MANIFEST}`);
  const release = readEnvelope(new TextEncoder().encode(envelope));
  const copied = await Deno.readFile(`${dir}/${RELEASE_MANIFEST}`);
  if (
    marker === null || release === null || markerMismatch(release, marker) !== null ||
    release.manifest_sha256 !== await manifestDigest(copied)
  ) {
    return "unsettled";
  }
  await Deno.writeTextFile(`${dir}/${RELEASE_ENVELOPE}`, envelope);
  return "copied";
}
