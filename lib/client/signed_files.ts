/**
 * A signed release's own files at a tree's root (marker, envelope,
 * manifest): reading them bounded, writing them in their order (the marker
 * last), and the refusal that names a path at fault (see
 * lib/client/signed.ts).
 *
 * @module
 */

import {
  DEST_MARKER,
  readSmallBytes,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  SERVER_TEMP_DIR,
  stripControl,
  VERSION_MARKER,
} from "../core/mod.ts";
import { manifestDigest, type TreeMismatch, type TreePlan } from "../release/mod.ts";
import { stampMarker } from "../version/mod.ts";
import { type ApplyContext, type CheckedRelease, KeptDiffers, type TreeLook } from "./layout.ts";
import { type ClientJob, serverOf } from "./job.ts";

/** The release's own files at a tree's root, fetched together. */
export const CONTROL = [VERSION_MARKER, RELEASE_ENVELOPE, RELEASE_MANIFEST];

/**
 * Where {@linkcode writeControl} writes each file before renaming it in: a
 * name no manifest may list (a publisher leaves its server temp dir out of
 * every manifest, and a client refuses one that lists it), so it is never a
 * file of the release's.
 */
export const CONTROL_TMP = SERVER_TEMP_DIR;

/**
 * What a walk of a tree leaves out: the release's own files (checked in
 * their own right) and fanout's destination marker. The version log is not
 * among them: it is not signed, so a verified tree does not keep one.
 */
export const TREE_SKIP: readonly string[] = [...CONTROL, DEST_MARKER];

/**
 * What a walk of the tree leaves out for `ctx`: {@linkcode TREE_SKIP}, and
 * a checkout's `.git` when it is being adopted (adoption removes it).
 */
export function treeSkip(ctx: ApplyContext): string[] {
  return [...TREE_SKIP, ...(ctx.state === "adopt" ? [".git"] : [])];
}

/**
 * A version refused (exit 4). Its one line names the server, the path at
 * fault and why. `racy` when a version landing on the server during the run
 * causes the same (a manifest of one version beside the envelope of the
 * next, a fetched file of another version): the run looks again before it
 * blames the server.
 *
 * @example
 * ```ts
 * throw new ReleaseRefusal(job, "lib/a.ts", "SHA-256 differs", true);
 * ```
 */
export class ReleaseRefusal extends SafetyError {
  /** The path at fault, relative to the tree. */
  readonly path: string;
  readonly racy: boolean;
  /**
   * The path was not sent at all (rather than sent wrong): behind a proxy,
   * the connection for the files may reach a server still at another
   * version than the one that gave the manifest.
   */
  readonly withheld: boolean;
  constructor(
    job: Pick<ClientJob, "source" | "dest">,
    path: string,
    why: string,
    racy = false,
    withheld = false,
  ) {
    super(
      `refusing the version from ${serverOf(job.source)} for ${job.dest}: ` +
        `${stripControl(path, { oneLine: true })}: ${why}; nothing changed`,
    );
    this.name = "ReleaseRefusal";
    this.path = path;
    this.racy = racy;
    this.withheld = withheld;
  }
}

/**
 * The bytes of the regular file at `path`, or why not: none there, another
 * kind, too large. The file read is the one its `lstat` saw (its inode
 * checked once opened): a symlink swapped in between is never followed.
 *
 * @example
 * ```ts
 * const got = readBounded("/srv/plugins/.fanout-release", 64 * 1024);
 * if (typeof got === "string") console.log(`not read: ${got}`);
 * ```
 */
export function readBounded(path: string, max: number): Uint8Array<ArrayBuffer> | string {
  const why = unreadable(path, max);
  if (why !== null) return why;
  return readSmallBytes(path, max) ?? unreadable(path, max) ?? "changed while it was read";
}

/**
 * Why {@linkcode readBounded} would not read `path` (none there, another
 * kind, too large), or null when it would: its `lstat` alone.
 */
export function unreadable(path: string, max: number): string | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    return "the source has none";
  }
  if (!st.isFile) return "not a regular file";
  if (st.size > max) return `more than ${max} bytes`;
  return null;
}

/**
 * Why a path is not as the manifest of `c` lists it, in words.
 *
 * @example
 * ```ts
 * offence({ path: "a", why: "content", detail: "SHA-256 differs" }, c); // "SHA-256 differs from the signed manifest of seq 4"
 * ```
 */
export function offence(m: TreeMismatch, c: CheckedRelease): string {
  const of = `the signed manifest of seq ${c.release.seq}`;
  switch (m.why) {
    case "missing":
      return `not sent by the server (not there, or larger than ${of} says)`;
    case "extra":
      return `sent, but not in ${of}`;
    case "content":
      return /SHA-256/.test(m.detail)
        ? `SHA-256 differs from ${of}`
        : `${m.detail}, as ${of} lists it`;
    default:
      return `${m.detail}, as ${of} lists it`;
  }
}

/**
 * Writes the release's files into `dir`: the manifest, the envelope and,
 * last, the marker (with its publish time as its mtime, as every server's
 * has). Each replaces the old one in one rename, from {@linkcode CONTROL_TMP}.
 * Returns whether any of them differed from what `dir` held. With
 * `rewrite`, for a tree the caller has just changed, each is written
 * without reading what `dir` held (a manifest of megabytes), and the answer
 * is true.
 */
export async function writeControl(
  dir: string,
  c: CheckedRelease,
  opts: { rewrite?: boolean } = {},
): Promise<boolean> {
  let changed = false;
  for (const [name, bytes] of controlFiles(c)) {
    const digest = name === RELEASE_MANIFEST ? c.release.manifest_sha256 : null;
    if (!opts.rewrite && await holds(`${dir}/${name}`, bytes, digest)) continue;
    changed = true;
    const tmp = `${dir}/${CONTROL_TMP}`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.writeFile(tmp, bytes, { createNew: true, mode: 0o644 });
    if (name === VERSION_MARKER) stampMarker(tmp);
    await Deno.rename(tmp, `${dir}/${name}`);
  }
  return changed;
}

/**
 * For a kept release ({@linkcode ApplyContext.keptOnly}): returns when
 * `tree`, a marked tree planned against `c` as `plan`, is the release
 * already, its own files included; else throws, before anything changes.
 *
 * @throws {KeptDiffers} when anything is to change.
 *
 * @example
 * ```ts
 * await confirmKept(ctx, live, c, plan);
 * ```
 */
export async function confirmKept(
  ctx: ApplyContext,
  tree: string | null,
  c: CheckedRelease,
  plan: TreePlan,
): Promise<void> {
  if (!ctx.keptOnly) return;
  if (!tree || ctx.state !== "marked" || plan.wrong.length || plan.extra.length) {
    throw new KeptDiffers();
  }
  await confirmControl(tree, c);
}

/**
 * For a kept release ({@linkcode ApplyContext.keptOnly}): true when the
 * marked tree `look` walked is its stat record, made whole of `c`'s
 * manifest (see recordIsRelease), and holds `c`'s own files: it is the
 * release, and the manifest need not be parsed. False sends the caller to
 * compare the tree with the manifest as always.
 *
 * @throws {KeptDiffers} when the tree is its record but one of its own
 * files is not the release's.
 *
 * @example
 * ```ts
 * if (await keptByRecord(job, ctx, look, c)) return nothingChanged;
 * ```
 */
export async function keptByRecord(
  job: ClientJob,
  ctx: ApplyContext,
  look: TreeLook | null,
  c: CheckedRelease,
): Promise<boolean> {
  if (!ctx.keptOnly || ctx.state !== "marked" || ctx.forced || !look) return false;
  if (!await look.isRelease(c)) return false;
  await confirmControl(look.tree, c);
  job.log.debug("dest is its stat record, made whole of this manifest: the manifest is not read");
  return true;
}

/**
 * Returns when `tree` holds release `c`'s own files (manifest, envelope,
 * marker) as they are; else throws, before anything changes.
 *
 * @throws {KeptDiffers} when one of them differs or is missing.
 *
 * @example
 * ```ts
 * await confirmControl(dest, c);
 * ```
 */
async function confirmControl(tree: string, c: CheckedRelease): Promise<void> {
  for (const [name, bytes] of controlFiles(c)) {
    const digest = name === RELEASE_MANIFEST ? c.release.manifest_sha256 : null;
    if (!await holds(`${tree}/${name}`, bytes, digest)) throw new KeptDiffers();
  }
}

/** The release's own files and their bytes, in the order they are written (the marker last). */
function controlFiles(c: CheckedRelease): [string, Uint8Array][] {
  return [
    [RELEASE_MANIFEST, c.bytes.manifest],
    [RELEASE_ENVELOPE, c.bytes.envelope],
    [VERSION_MARKER, c.bytes.marker],
  ];
}

/**
 * True when the regular file at `path` holds `bytes`; compared by `digest`
 * (their SHA-256) when given, for a manifest of megabytes.
 */
async function holds(path: string, bytes: Uint8Array, digest: string | null): Promise<boolean> {
  const got = readBounded(path, bytes.length);
  if (typeof got === "string" || got.length !== bytes.length) return false;
  if (digest) return await manifestDigest(got) === digest;
  for (let i = 0; i < got.length; i++) if (got[i] !== bytes[i]) return false;
  return true;
}
