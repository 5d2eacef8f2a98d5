/**
 * A server's repair of its own tree from its upstream's read module, when
 * the tree is not the version its marker names: the tree first, compared by
 * content (a damaged file may keep its size and time), then the version
 * files together, as a push sends them. The check that follows decides
 * whether the version is announced.
 *
 * @module
 */

import {
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  VERSION_MARKER,
} from "../core/mod.ts";
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

/** The files that name and vouch for a version: fetched last, together. */
const VERSION_FILES = [VERSION_MARKER, RELEASE_MANIFEST, RELEASE_ENVELOPE];

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

/** As root, `--chown` to the tree root's owner; else nothing (files are ours, as the tree is). */
async function ownerOf(root: string): Promise<string[]> {
  if (Deno.uid() !== 0) return [];
  const st = await Deno.lstat(root);
  return st.uid === null || st.gid === null ? [] : [`--chown=${st.uid}:${st.gid}`];
}
