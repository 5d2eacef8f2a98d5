/**
 * `--atomic`: readers never see a half-updated tree. Each new version is
 * built in a directory of its own next to the current one
 * (`<parent>/.<name>.trees/<time>`), hard-linking every unchanged file from
 * the current tree (`--link-dest`, so it costs no copy and no transfer), and
 * goes live by replacing the `dest` symlink in one `rename(2)`. The last
 * `client.keep` trees stay for an instant `--rollback`.
 *
 * ```
 * /apps/dat/plugins -> .plugins.trees/2026-11-25T21-42-55.004Z
 * /apps/dat/.plugins.trees/2026-11-25T21-40-12.310Z/   (previous, kept)
 * /apps/dat/.plugins.trees/2026-11-25T21-42-55.004Z/   (live)
 * ```
 *
 * Files are shared between trees by hard links: a file edited in place in
 * one tree changes in every tree that shares it (rsync itself always writes
 * a new file and renames it, so syncs never do this).
 *
 * @module
 */

import { SafetyError, UsageError } from "../core/mod.ts";
import { readPin, writePin } from "./client.ts";
import type { ApplyContext, CheckedRelease, ReleaseApplied, TreeLayout } from "./layout.ts";
import type { Drift } from "./drift.ts";
import { type RsyncResult, unescapeName } from "../rsync/mod.ts";
import { baseJob, type ClientJob, stamp } from "./job.ts";
import { clearDirty, markDirty, transfer } from "./transfer.ts";
import { tooManyDeletions, writeDestMarker } from "./safety.ts";
import { planTree, type TreePlan } from "../release/mod.ts";
import {
  confirmKept,
  keptByRecord,
  offence,
  ReleaseRefusal,
  treeSkip,
  writeControl,
} from "./signed_files.ts";
import { recordIsWhole, recordRelease, recordVouches, vouching } from "./signed_state.ts";
import { basisFor, everythingMissing, fetchPaths, toFetch } from "./signed_fetch.ts";
import { describeVersion, readMarker, type VersionMarker } from "../version/mod.ts";

const PARTIAL = ".partial";

/**
 * The first directory of a transfer's itemized `items` that is, in the
 * `live` tree, a symlink to somewhere outside it; null when none is.
 *
 * @example
 * ```ts
 * leavingLink("/apps/.plugins.trees/2026-11-25T21-40-12.310Z", ["cd+++++++++ lnk/"]); // "lnk"
 * ```
 */
export function leavingLink(live: string, items: string[]): string | null {
  let root: string;
  try {
    root = Deno.realPathSync(live);
  } catch {
    return null;
  }
  for (const line of items) {
    if (line[1] !== "d") continue;
    const dir = unescapeName(line.slice(12)).replace(/\/$/, "");
    if (!dir || dir === ".") continue;
    try {
      if (!Deno.lstatSync(`${live}/${dir}`).isSymlink) continue;
      const to = Deno.realPathSync(`${live}/${dir}`);
      if (to === root || to.startsWith(`${root}/`)) continue;
    } catch {
      /* a dangling or looping link: nothing linked through it */
      continue;
    }
    return dir;
  }
  return null;
}

/** Where the trees of `dest` live: `<parent>/.<name>.trees`. */
export function treesDir(dest: string): string {
  const i = dest.lastIndexOf("/");
  return `${dest.slice(0, i) || ""}/.${dest.slice(i + 1)}.trees`;
}

/**
 * The atomic layout of `job.dest` (see the module doc).
 *
 * @example
 * ```ts
 * const result = await runClient(job, prev, atomicLayout(job));
 * ```
 */
export function atomicLayout(job: ClientJob): TreeLayout {
  const trees = treesDir(job.dest);
  const swapLink = `${trees}.swap`;
  return {
    current: () => liveTree(job.dest),
    recover: async () => {
      if (!(await isOwnDir(trees))) return;
      for (const g of await entries(trees)) {
        if (g.endsWith(PARTIAL)) await Deno.remove(`${trees}/${g}`, { recursive: true });
      }
      await Deno.remove(swapLink).catch(() => {});
    },
    apply: async (_drift: Drift, _ctx: ApplyContext): Promise<RsyncResult> => {
      await ownTreesDir(trees);
      const live = await liveTree(job.dest);
      const t0 = Date.now();
      const name = stamp(new Date(t0));
      const building = `${trees}/${name}${PARTIAL}`;
      let r = await transfer(job, {
        ...baseJob(job, building),
        // Unchanged files become hard links to the live tree's.
        linkDest: live ?? undefined,
      });
      const out = live ? leavingLink(live, r.items) : null;
      if (out) {
        // rsync looked up <live>/<dir>/<file> through a symlink there (both
        // 3.2 and 3.5 follow it), so the new tree may hold hard links to
        // files outside the live one: built again, without links.
        job.log.warn(
          "the live tree has a symlink leading out of it where the source has a directory; " +
            "building the new tree without hard links to it",
          { symlink: `${live}/${out}` },
        );
        await Deno.remove(building, { recursive: true });
        r = await transfer(job, baseJob(job, building));
      }
      await writeDestMarker(building, "created");
      await Deno.rename(building, `${trees}/${name}`);
      // A plain dir switching to --atomic is kept as the tree before this one.
      await swap(job.dest, `${trees}/${name}`, live, `${stamp(new Date(t0 - 1))}-before-atomic`);
      await prune(job, trees);
      return r;
    },
    applyRelease: (c: CheckedRelease, ctx: ApplyContext) => applyReleaseTree(job, c, ctx),
  };
}

/**
 * A signed release as a new tree (see lib/client/signed.ts): every file the
 * live tree has right is hard-linked from it, the rest is fetched into the
 * new tree with the live one as rsync's delta basis, and the new tree is
 * checked against the manifest (the linked files by their inode, the rest
 * by their bytes) before it goes live. A new tree that is not the
 * manifest's is removed, and dest stays as it was.
 */
async function applyReleaseTree(
  job: ClientJob,
  c: CheckedRelease,
  ctx: ApplyContext,
): Promise<ReleaseApplied> {
  const trees = treesDir(job.dest);
  await ownTreesDir(trees);
  const live = await liveTree(job.dest);
  const look = live && ctx.look?.tree === live ? ctx.look : null;
  // A kept release whose live tree is its stat record whole: nothing to
  // compare with the manifest, which is then never parsed (see
  // applyInPlace).
  if (live && await keptByRecord(job, ctx, look, c)) {
    return { changed: 0, deleted: 0, control: false, r: null, tree: live };
  }
  const vouch = vouching(
    live && !ctx.forced ? await (look ? look.vouches(c) : recordVouches(job, live, c)) : null,
  );
  const at = look?.at ?? Date.now();
  const plan = live
    ? await planTree(live, c.manifest, {
      skip: treeSkip(ctx),
      known: vouch.known,
      walked: await look?.walked,
    })
    : everythingMissing(c.manifest);
  await confirmKept(ctx, live, c, plan);
  if (plan.extra.length > job.maxDelete) {
    throw tooManyDeletions(job.dest, plan.extra.length, job.maxDelete);
  }
  if (live && !plan.wrong.length && !plan.extra.length) {
    // The live tree is the release's: at most its files are new.
    // A kept release's own files were found held already (confirmKept): not
    // read and hashed a second time.
    const control = ctx.keptOnly ? false : await writeControl(live, c);
    if (control || vouch.hashed() || !recordIsWhole(job, live)) {
      await recordRelease(job, c, live, { entries: plan.walked, at, whole: true });
    }
    return { changed: 0, deleted: 0, control, r: null, tree: live };
  }
  const t0 = Date.now();
  const name = stamp(new Date(t0));
  const building = `${trees}/${name}${PARTIAL}`;
  await markDirty(job);
  let r: RsyncResult | null = null;
  try {
    await Deno.mkdir(building, { mode: 0o700 });
    const fetch = toFetch(plan);
    const linked = await linkRight(live, building, c, plan);
    if (fetch.length) {
      r = await fetchPaths(job, building, fetch.map((w) => w.want), basisFor(live, fetch));
    }
    for (const e of c.manifest.entries.toReversed()) {
      if (e.type === "dir") await Deno.chmod(`${building}/${e.path}`, e.mode);
    }
    await Deno.chmod(building, 0o755);
    const built = await planTree(building, c.manifest, {
      known: (got) => linked.get(got.path) === got.ino,
    });
    const bad = built.wrong[0] ??
      (built.extra[0] && { path: built.extra[0].path, why: "extra" as const, detail: "" });
    if (bad) {
      throw new ReleaseRefusal(job, bad.path, offence(bad, c), true, bad.why === "missing");
    }
    await writeControl(building, c);
    await writeDestMarker(building, "created");
    await Deno.rename(building, `${trees}/${name}`);
  } catch (e) {
    await Deno.remove(building, { recursive: true }).catch(() => {});
    // Up still when a killed run left dest unfinished before this one (a
    // plain dir switching to --atomic is the live tree).
    if (!ctx.forced) await clearDirty(job);
    throw e;
  }
  // A plain dir switching to --atomic is kept as the tree before this one.
  await swap(job.dest, `${trees}/${name}`, live, `${stamp(new Date(t0 - 1))}-before-atomic`);
  await prune(job, trees);
  const now = (await liveTree(job.dest))!;
  await recordRelease(job, c, now, null);
  await clearDirty(job);
  return { changed: plan.wrong.length, deleted: plan.extra.length, control: true, r, tree: now };
}

/**
 * Lays out the new tree `building` of release `c`: every directory (mode
 * 0700 until the files are in), and from the `live` tree every file and
 * symlink the plan found right there: a file as a hard link, or as a copy
 * when only its mode is wrong (a hard link shares the mode of the live
 * one). Returns the inode of each linked file by path.
 */
async function linkRight(
  live: string | null,
  building: string,
  c: CheckedRelease,
  plan: TreePlan,
): Promise<Map<string, number>> {
  const wrong = new Map(plan.wrong.map((w) => [w.path, w]));
  const walked = new Map(plan.walked.map((e) => [e.path, e]));
  const linked = new Map<string, number>();
  for (const e of c.manifest.entries) {
    const to = `${building}/${e.path}`;
    const w = wrong.get(e.path);
    if (e.type === "dir") await Deno.mkdir(to, { mode: 0o700 });
    else if (!live || (w && w.why !== "mode")) continue;
    else if (e.type === "symlink") await Deno.symlink(await Deno.readLink(`${live}/${e.path}`), to);
    else if (w) {
      await Deno.copyFile(`${live}/${e.path}`, to);
      await Deno.chmod(to, e.mode);
    } else {
      await Deno.link(`${live}/${e.path}`, to);
      linked.set(e.path, walked.get(e.path)!.ino);
    }
  }
  return linked;
}

/** The tree `dest` shows now: the symlink's target, dest itself when it is a plain directory, or null. */
export async function liveTree(dest: string): Promise<string | null> {
  try {
    const st = await Deno.lstat(dest);
    if (st.isSymlink) return await Deno.realPath(dest);
    return st.isDirectory ? dest : null;
  } catch {
    return null;
  }
}

/**
 * Points `dest` at `tree` in one rename. A plain directory at `dest` (a host
 * switching to `--atomic`) first becomes one of the kept trees.
 */
async function swap(
  dest: string,
  tree: string,
  live: string | null,
  asideName = `${stamp(new Date())}-before-atomic`,
): Promise<void> {
  const trees = treesDir(dest);
  const link = `${trees}.swap`;
  await Deno.remove(link).catch(() => {});
  await Deno.symlink(tree.slice(trees.lastIndexOf("/") + 1), link);
  if (live === dest) {
    // rename(2) cannot replace a directory with a symlink: move the old tree
    // aside first (dest is missing for the microseconds in between, once).
    await Deno.rename(dest, `${trees}/${asideName}`);
  }
  await Deno.rename(link, dest);
}

/** The kept trees of `dest`, oldest first. */
export async function listTrees(dest: string): Promise<string[]> {
  const trees = treesDir(dest);
  if (!(await isOwnDir(trees))) return [];
  return (await entries(trees)).filter((n) => TREE_NAME.test(n)).sort();
}

/** A tree's name: its build time (see `stamp`), "-before-atomic" for a plain dir taken over. */
const TREE_NAME = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z(-before-atomic)?$/;

/** True when `dir` is a directory (not a symlink) owned by this process's user. */
async function isOwnDir(dir: string): Promise<boolean> {
  try {
    const st = await Deno.lstat(dir);
    return st.isDirectory && st.uid === Deno.uid();
  } catch {
    return false;
  }
}

/**
 * Makes the trees dir, or checks the one there: trees are built, swapped and
 * pruned in it, so it must be this user's own directory. A symlink there
 * (planted by whoever may write dest's parent) would take all of that
 * elsewhere.
 *
 * @throws {SafetyError} when something else is at `trees`.
 */
async function ownTreesDir(trees: string): Promise<void> {
  await Deno.mkdir(trees.slice(0, trees.lastIndexOf("/")) || "/", { recursive: true });
  try {
    await Deno.mkdir(trees, { mode: 0o755 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
  if (!(await isOwnDir(trees))) {
    throw new SafetyError(
      `refusing --atomic: ${trees} is not a directory of this user's (a symlink, or another ` +
        `user's); nothing changed: remove it, and make ${
          trees.slice(0, trees.lastIndexOf("/"))
        } writable by this user only`,
    );
  }
}

async function prune(job: ClientJob, trees: string): Promise<void> {
  const live = basename(await liveTree(job.dest) ?? "");
  const all = await listTrees(job.dest);
  const extra = all.slice(0, Math.max(0, all.length - job.keep));
  for (const name of extra) {
    const path = `${trees}/${name}`;
    if (name === live) continue;
    await Deno.remove(path, { recursive: true });
    job.log.debug("removed an old tree", { tree: path });
  }
}

/** What {@linkcode rollback} did. */
export interface Rollback {
  from: string;
  to: string;
  fromVersion: VersionMarker | null;
  toVersion: VersionMarker | null;
}

/**
 * Points `dest` back at the tree before the live one, and pins the host
 * there: later runs leave it alone until the source publishes a version newer
 * than the one rolled back from.
 *
 * @throws {UsageError} when dest is not an `--atomic` symlink or no earlier
 * tree is kept.
 *
 * @example
 * ```ts
 * const rb = await rollback(job);
 * console.log(`now on ${describeVersion(rb.toVersion)}`);
 * ```
 */
export async function rollback(job: ClientJob): Promise<Rollback> {
  const trees = treesDir(job.dest);
  let st: Deno.FileInfo | null = null;
  try {
    st = await Deno.lstat(job.dest);
  } catch { /* absent */ }
  if (!st?.isSymlink) {
    throw new UsageError(
      `--rollback: ${job.dest} is not an --atomic tree (no symlink into ${trees}); ` +
        `nothing to roll back to`,
    );
  }
  const live = await Deno.realPath(job.dest);
  const names = await listTrees(job.dest);
  const i = names.indexOf(basename(live));
  const earlier = i > 0 ? names[i - 1] : i < 0 ? names[names.length - 1] : undefined;
  if (!earlier) {
    throw new UsageError(
      `--rollback: no tree older than the live one is kept in ${trees} (client.keep is ${job.keep})`,
    );
  }
  const to = `${trees}/${earlier}`;
  const fromVersion = readMarker(live);
  const toVersion = readMarker(to);
  await swap(job.dest, to, live);
  // Rolling back twice must not unpin the version the first rollback fled.
  const pinned = Math.max(fromVersion?.seq ?? -1, readPin(job.stateDir)?.seq ?? -1);
  if (pinned >= 0) await writePin(job.stateDir, pinned);
  job.log.info("rolled back", {
    dest: job.dest,
    from: describeVersion(fromVersion),
    to: describeVersion(toVersion),
  });
  return { from: live, to, fromVersion, toVersion };
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch {
    return [];
  }
}
