/**
 * A signed release applied in place (see lib/client/signed.ts): the paths
 * dest has wrong are fetched beside it and checked, then put in place by
 * rename (directories first, then files and symlinks), what the manifest
 * does not list is removed, modes are set, and the release's files are
 * written, the marker last.
 *
 * The dirty flag is up from the first change in dest to the stat record of
 * the result: a run killed in between leaves dest marked unfinished, and
 * the next one checks every file and completes it before anything else.
 *
 * @module
 */

import { SafetyError } from "../core/mod.ts";
import { planTree, type TreeEntry, type TreePlan } from "../release/mod.ts";
import type { ApplyContext, CheckedRelease, ReleaseApplied } from "./layout.ts";
import type { ClientJob } from "./job.ts";
import { adoptDest, tooManyDeletions, writeDestMarker } from "./safety.ts";
import { clearDirty, markDirty, removeStaging, stagingDirs } from "./transfer.ts";
import { moveAside, removeExtras } from "./dest_paths.ts";
import { confirmKept, keptByRecord, treeSkip, writeControl } from "./signed_files.ts";
import {
  markApplying,
  recordIsWhole,
  recordRelease,
  recordVouches,
  vouching,
} from "./signed_state.ts";
import {
  basisFor,
  checkFetched,
  everythingMissing,
  fetchPaths,
  makeParents,
  toFetch,
} from "./signed_fetch.ts";

/**
 * Makes `job.dest` the checked release `c`, changing nothing in it until
 * every fetched path is checked.
 *
 * @throws {ReleaseRefusal} for a fetched path that is not the manifest's;
 * {@linkcode SafetyError} past `client.max_delete`.
 *
 * @example
 * ```ts
 * const done = await applyInPlace(job, checked, { state: "marked", backupDir: null });
 * ```
 */
export async function applyInPlace(
  job: ClientJob,
  c: CheckedRelease,
  ctx: ApplyContext,
): Promise<ReleaseApplied> {
  const dest = job.dest;
  const there = ctx.state !== "absent";
  const look = there && ctx.look?.tree === dest ? ctx.look : null;
  // A kept release whose tree is its stat record whole: nothing to compare
  // with the manifest, which is then never parsed (its bytes are the ones
  // the record was found to be, by their SHA-256).
  if (await keptByRecord(job, ctx, look, c)) {
    // As any run with nothing to fetch: a staging dir a killed run left goes.
    await removeStaging(job);
    return { changed: 0, deleted: 0, control: false, r: null, tree: dest };
  }
  const known = there && !ctx.forced
    ? await (look ? look.vouches(c) : recordVouches(job, dest, c))
    : null;
  const vouch = vouching(known);
  const at = look?.at ?? Date.now();
  const plan = there
    ? await planTree(dest, c.manifest, {
      skip: treeSkip(ctx),
      known: vouch.known,
      walked: await look?.walked,
    })
    : everythingMissing(c.manifest);
  await confirmKept(ctx, there ? dest : null, c, plan);
  if (plan.extra.length > job.maxDelete) {
    throw tooManyDeletions(dest, plan.extra.length, job.maxDelete);
  }
  const fetch = toFetch(plan);
  // With nothing to fetch, a staging dir there is one a killed run left
  // (recovery removes it only after a run that marked dest dirty): it goes.
  if (!fetch.length) await removeStaging(job);
  const staging = fetch.length ? await makeStaging(job) : null;
  let r = null;
  try {
    if (staging) {
      const wanted = fetch.map((w) => w.want);
      const parents = await makeParents(staging, wanted);
      r = await fetchPaths(job, staging, wanted, basisFor(there ? dest : null, fetch));
      await checkFetched(job, c, staging, wanted, parents);
    }
  } catch (e) {
    // Dest is as it was, and the staging dir goes. The dirty flag comes down
    // unless a killed run left dest unfinished before this one.
    if (!ctx.forced) await clearDirty(job);
    if (staging) await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw e;
  }
  try {
    if (ctx.state === "marked" && !plan.wrong.length && !plan.extra.length) {
      // The tree is the release's: at most its files are new (a version
      // with the same tree), and the record is kept fresh when files were read.
      // A kept release's own files were found held already (confirmKept): not
      // read and hashed a second time.
      const control = ctx.keptOnly ? false : await writeControl(dest, c);
      if (control || vouch.hashed() || !recordIsWhole(job, dest)) {
        await recordRelease(job, c, dest, { entries: plan.walked, at, whole: true });
      }
      return { changed: 0, deleted: 0, control, r, tree: dest };
    }
    await markDirty(job);
    await markApplying(job);
    if (ctx.state === "absent") await Deno.mkdir(dest, { recursive: true });
    if (ctx.state === "absent" || ctx.state === "empty") await writeDestMarker(dest, "created");
    if (ctx.state === "adopt") {
      const dropped = await adoptDest(dest);
      job.log.info("adopted dest", { dest, dropped_git: dropped });
    }
    await place(dest, plan, staging, ctx.backupDir);
    // Emptied by the renames: gone before the dirty flag comes down, so that
    // no kill leaves it beside dest for a run with nothing to fetch.
    if (staging) await Deno.remove(staging, { recursive: true });
    // A tree changed here takes the release's files as they are: nothing
    // is gained by reading a manifest of megabytes to compare first.
    const control = await writeControl(dest, c, {
      rewrite: plan.wrong.length + plan.extra.length > 0,
    });
    // A tree that was there keeps the record of what this run left as the
    // walk found it; what it changed is not in it, so the next run hashes
    // that once and records it. A new or adopted tree is walked anew.
    await recordRelease(job, c, dest, ctx.state === "marked" ? untouched(plan, at) : null);
    await clearDirty(job);
    return { changed: plan.wrong.length, deleted: plan.extra.length, control, r, tree: dest };
  } finally {
    if (staging) await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
}

/**
 * The walk of `plan`, begun at `at`, less every path the plan changes or
 * removes (what is below a removed directory is among them): a record of
 * the rest of the tree as it is once the plan is carried out.
 */
function untouched(plan: TreePlan, at: number): { entries: TreeEntry[]; at: number } {
  const changed = new Set([...plan.wrong, ...plan.extra].map((e) => e.path));
  return { entries: plan.walked.filter((e) => !changed.has(e.path)), at };
}

/**
 * A new, empty staging dir of this user's (see stagingDirs in
 * lib/client/transfer.ts): beside dest when its parent lets this user write
 * there, else in the state dir.
 *
 * @throws {SafetyError} when neither can be made.
 */
async function makeStaging(job: ClientJob): Promise<string> {
  for (const dir of stagingDirs(job)) {
    try {
      // A symlink or a stale dir there goes (a symlink itself, never what it points at).
      await Deno.remove(dir, { recursive: true }).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      });
      await Deno.mkdir(dir, { mode: 0o700 });
      const st = await Deno.lstat(dir);
      if (st.isDirectory && st.uid === Deno.uid()) return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotFound)) {
        throw e;
      }
    }
  }
  throw new SafetyError(
    `cannot make a staging dir for ${job.dest} (tried ${stagingDirs(job).join(", ")}); ` +
      `nothing changed`,
  );
}

/**
 * Puts the plan's fixes in place: directories first (parents before
 * children), then the fetched files and symlinks, each over the old one in
 * one rename, then removes what the manifest does not list; modes last,
 * deepest first, so a directory made read-only takes no new entry after.
 * With `backupDir`, what is overwritten or removed is kept there.
 */
async function place(
  dest: string,
  plan: TreePlan,
  staging: string | null,
  backupDir: string | null,
): Promise<void> {
  const aside = (path: string) =>
    backupDir
      ? moveInto(`${dest}/${path}`, `${backupDir}/${path}`)
      : Deno.remove(`${dest}/${path}`, { recursive: true });
  for (const w of plan.wrong) {
    if (w.want.type !== "dir" || w.why === "mode") continue;
    if (w.got) await aside(w.path);
    await Deno.mkdir(`${dest}/${w.path}`, { mode: 0o700 });
  }
  for (const w of plan.wrong) {
    if (w.want.type === "dir" || w.why === "mode") continue;
    const to = `${dest}/${w.path}`;
    if (w.got && (w.got.kind === "dir" || w.got.kind === "other")) await aside(w.path);
    else if (w.got && backupDir) await keepCopy(to, `${backupDir}/${w.path}`);
    await put(`${staging}/${w.path}`, to);
  }
  const refused = await removeExtras(
    dest,
    plan.wrong.map((w) => ({ path: w.path, kind: w.want.type === "dir" ? "dir" : "file" })),
    plan.extra.map((e) => ({ path: e.path, kind: e.kind === "dir" ? "dir" : "other" })),
    backupDir,
  );
  if (refused) {
    throw new SafetyError(
      `cannot remove ${refused.path} from ${dest}: its way leads through the symlink ` +
        `${refused.via}; the next run completes the sync`,
    );
  }
  for (const w of plan.wrong.toReversed()) {
    if (w.want.type === "symlink" || (w.want.type === "file" && w.why !== "mode")) continue;
    const path = `${dest}/${w.path}`;
    if (!(await Deno.lstat(path)).isSymlink) await Deno.chmod(path, w.want.mode);
  }
}

/** Moves `from` to `to`, making `to`'s parent. */
async function moveInto(from: string, to: string): Promise<void> {
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
  await moveAside(from, to);
}

/** Keeps a copy of the file or symlink `from` at `to`: a hard link, or a copy on another file system. */
async function keepCopy(from: string, to: string): Promise<void> {
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
  try {
    await Deno.link(from, to);
  } catch (e) {
    if (!crossDevice(e)) throw e;
    await copyEntry(from, to);
  }
}

/**
 * Renames `from` over `to`; on another file system, copies it beside `to`
 * first and renames that, so `to` changes in one step either way.
 */
async function put(from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, to);
  } catch (e) {
    if (!crossDevice(e)) throw e;
    const tmp = `${to}.fanout-tmp`;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await copyEntry(from, tmp);
    await Deno.rename(tmp, to);
  }
}

/** Copies the file or symlink `from` (never followed) to the new path `to`. */
async function copyEntry(from: string, to: string): Promise<void> {
  const st = await Deno.lstat(from);
  if (st.isSymlink) return await Deno.symlink(await Deno.readLink(from), to);
  await Deno.copyFile(from, to);
  await Deno.chmod(to, st.mode! & 0o7777);
}

function crossDevice(e: unknown): boolean {
  return e instanceof Error && /EXDEV|cross-device/i.test(e.message);
}
