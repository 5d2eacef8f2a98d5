/**
 * A server's repair of its own tree from its upstream's read module, when
 * the tree is not the version its marker names: the tree first, compared by
 * content (a damaged file may keep its size and time), then the version
 * files together, as a push sends them. The check that follows decides
 * whether the version is announced.
 *
 * @module
 */

import { SERVER_TEMP_DIR, VERSION_FILES } from "../core/mod.ts";
import {
  describeRsyncFailure,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  runRsync,
} from "../rsync/mod.ts";

/** Where a repair comes from and how it runs. */
export interface RepairOptions {
  /** The upstream's read module, an rsync:// URL ending in `/`. */
  source: string;
  /** The tree to repair. */
  root: string;
  /** `push.exclude`: what no push brings nor deletes here. */
  excludes: string[];
  rsync: { path: string; timeout: number; connectTimeout: number };
  /** Local address to connect from (`--address`). */
  address?: string;
  signal?: AbortSignal;
}

/**
 * How often a replica's tree is repaired from upstream while refused: the
 * waits between repairs double from the first to the last. A tree that holds
 * its version for a moment between refusals (edited again and again) does
 * not bring the next repair sooner: the waits start again from the first
 * only once the tree has held its version for the longest since the last
 * repair was due, so an upstream is never asked for its whole tree, compared
 * by content, in a loop.
 *
 * @example
 * ```ts
 * const pace = new RepairPace();
 * if (refusedLongEnough && pace.start(Date.now())) void repairFrom(opts);
 * if (verified) pace.held(Date.now());
 * ```
 */
export class RepairPace {
  #at = 0;
  #failures = 0;
  /** `waits`: the first and the longest wait between two repairs (ms). */
  constructor(readonly waits: readonly [number, number] = REPAIR_WAITS_MS) {}

  /** Whether a repair may start at `now` (ms); if it may, the next waits longer. */
  start(now: number): boolean {
    if (now < this.#at) return false;
    const [first, last] = this.waits;
    this.#at = now + Math.min(last, first * 2 ** this.#failures++);
    return true;
  }

  /** The tree holds its version at `now` (ms). */
  held(now: number): void {
    if (now >= this.#at + this.waits[1]) this.#failures = 0;
  }
}

/** The first and the longest wait between two repairs by default (ms). */
const REPAIR_WAITS_MS = [10_000, 300_000] as const;

/**
 * Brings the tree at `root` to what the upstream serves; returns null, or
 * why it failed (one line). Files it writes are owned like the tree's root,
 * so the daemon that receives pushes can replace them.
 *
 * @example
 * ```ts
 * const failed = await repairFrom({ source: "rsync://10.0.0.10:873/plugins/", root: "/srv/plugins",
 *   excludes: [".git"], rsync: fleet.rsync });
 * if (failed) log.warn("repair failed", { error: failed });
 * ```
 */
export async function repairFrom(o: RepairOptions): Promise<string | null> {
  const owner = await ownerOf(o.root);
  const tree = await run(o, {
    delete: true,
    deleteDelay: true,
    delayUpdates: true,
    checksum: true,
    excludes: [
      ...VERSION_FILES.map((f) => `/${f}`),
      ".~tmp~/",
      `/${SERVER_TEMP_DIR}/`,
      ...o.excludes,
    ],
    extra: owner,
  });
  if (tree) return tree;
  return await run(o, {
    delete: true,
    checksum: true,
    extra: [
      ...owner,
      ...VERSION_FILES.map((f) => `--include=/${f}`),
      "--exclude=*",
    ],
  });
}

async function run(o: RepairOptions, over: Partial<RsyncJob>): Promise<string | null> {
  // rsync's temp files go there: through a symlink, they would land outside the tree.
  const temp = await ensureTempDir(o.root);
  if (temp) return temp;
  const job: RsyncJob = {
    source: o.source,
    dest: `${o.root}/`,
    address: o.address,
    tempDir: SERVER_TEMP_DIR,
    sparse: true,
    timeout: o.rsync.timeout,
    connectTimeout: o.rsync.connectTimeout,
    ...over,
  };
  const r: RsyncResult = await runRsync(rsyncArgs(job), {
    rsync: o.rsync.path,
    signal: o.signal,
    keepItems: false,
  });
  return r.code === 0 || r.code === 24 ? null : describeRsyncFailure(r);
}

/**
 * Makes the tree's temp dir (rsync `--temp-dir` of pushes, publishes and
 * repairs into the tree), owned like the tree so the daemon can write to it
 * after dropping root; puts it back if someone removed it, and removes what
 * is there instead of a directory (a symlink planted there, by a push into
 * the tree or on its disk, would take rsync's temp files where it points).
 * Returns null, or why the dir cannot be made (the tree gone, say).
 *
 * @example
 * ```ts
 * const failed = await ensureTempDir("/srv/plugins");
 * if (failed) log.warn(failed);
 * ```
 */
export async function ensureTempDir(tree: string): Promise<string | null> {
  const dir = `${tree}/${SERVER_TEMP_DIR}`;
  try {
    if ((await Deno.lstat(dir)).isDirectory) return null;
    await Deno.remove(dir); // a symlink goes, not what it points at
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return `${dir}: ${(e as Error).message}`;
  }
  try {
    const st = await Deno.stat(tree);
    await Deno.mkdir(dir, { mode: 0o700 });
    if (Deno.uid() === 0 && st.uid !== null && st.gid !== null) {
      await Deno.chown(dir, st.uid, st.gid);
    }
    return null;
  } catch (e) {
    return `cannot make ${dir}: ${(e as Error).message}`;
  }
}

/** As root, `--chown` to the tree root's owner; else nothing (files are ours, as the tree is). */
async function ownerOf(root: string): Promise<string[]> {
  if (Deno.uid() !== 0) return [];
  const st = await Deno.lstat(root);
  return st.uid === null || st.gid === null ? [] : [`--chown=${st.uid}:${st.gid}`];
}
