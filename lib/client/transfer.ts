/**
 * Transfers that change dest, made safe to kill: a dirty flag and rsync's
 * pid go to the state dir first, so the next run can stop an rsync its killed
 * predecessor left running (two rsyncs must never write one dest) and remove
 * the `.~tmp~` staging dirs `--delay-updates` leaves behind (partial files
 * no reader should see).
 *
 * @module
 */

import { existsNow, readTextNow, SafetyError, sleep, TransferError } from "../core/mod.ts";
import type { RsyncJob, RsyncResult } from "../rsync/mod.ts";
import { type ClientJob, failUnlessOk, rsyncRun } from "./job.ts";

/** rsync's staging dir name for `--delay-updates`. */
export const DELAY_DIR = ".~tmp~";

const DIRTY_FILE = "client.dirty";
const RSYNC_PID_FILE = "client-rsync.pid";

/**
 * Runs a transfer that changes dest, with the dirty flag and rsync's pid
 * recorded, so a run killed in the middle is cleaned up by the next one.
 * `keepDirty` leaves the flag up for steps that follow the transfer
 * (removing deleted paths): {@linkcode clearDirty} takes it down.
 *
 * @throws {TransferError} when rsync fails; {@linkcode SafetyError} when the
 * `--max-delete` backstop stopped it.
 */
export async function transfer(
  job: ClientJob,
  rj: RsyncJob,
  opts: { keepDirty?: boolean } = {},
): Promise<RsyncResult> {
  await markDirty(job);
  const pidFile = `${job.stateDir}/${RSYNC_PID_FILE}`;
  const r = await rsyncRun(job, { ...rj, progress: job.verbose }, {
    // The dest argument identifies the process later, should the pid be reused.
    onSpawn: (pid) => Deno.writeTextFileSync(pidFile, `${pid}\n${rj.dest}\n`),
    onStdout: job.verbose ? showProgress : undefined,
  });
  await Deno.remove(pidFile).catch(() => {});
  if (job.verbose) writeErr("\n");
  if (r.code === 25) {
    throw new SafetyError(
      `stopped deleting in ${job.dest} at client.max_delete (${job.maxDelete}): the source ` +
        `changed during the sync; the next run compares again`,
    );
  }
  if (r.code !== 0 && /No space left on device|Disk quota exceeded/.test(r.stderr)) {
    const quota = /Disk quota exceeded/.test(r.stderr);
    throw new TransferError(
      `${quota ? "disk quota exceeded" : "no space left"} on ${filesystemOf(rj.dest)}: the ` +
        `sync into ${job.dest} stopped (rsync exit ${r.code}) and its partial files are removed; ` +
        `dest is unchanged ` +
        `(free some space; the next run completes the sync)`,
      r.code,
    );
  }
  failUnlessOk(job, r);
  if (!opts.keepDirty) await clearDirty(job);
  return r;
}

/**
 * The file system holding `path`: its mount point and type, from
 * /proc/self/mounts (`/apps (ext4)`); `path` itself when that cannot be read.
 *
 * @example
 * ```ts
 * filesystemOf("/apps/dat/plugins/"); // "/apps (ext4)"
 * ```
 */
export function filesystemOf(path: string): string {
  let real = path;
  for (let p = path.replace(/\/+$/, ""); p; p = p.slice(0, p.lastIndexOf("/"))) {
    try {
      real = Deno.realPathSync(p);
      break;
    } catch { /* not there yet: its parent */ }
  }
  let best: [string, string] | null = null;
  for (const line of (readTextNow("/proc/self/mounts") ?? "").split("\n")) {
    const [, at, type] = line.split(" ");
    if (!at || !type) continue;
    const mount = at.replace(/\\040/g, " ");
    const under = mount === "/" || real === mount || real.startsWith(`${mount}/`);
    if (under && (!best || mount.length >= best[0].length)) best = [mount, type];
  }
  return best ? `${best[0]} (${best[1]})` : path;
}

/** The dirty flag's file: up while a transfer, or the steps after it, run. */
export function dirtyFile(job: ClientJob): string {
  return `${job.stateDir}/${DIRTY_FILE}`;
}

/**
 * Raises the dirty flag for steps that change dest without a
 * {@linkcode transfer}: a run killed before {@linkcode clearDirty} leaves the
 * next one to recover and check the whole tree.
 *
 * @example
 * ```ts
 * await markDirty(job);
 * await placeFiles();
 * await clearDirty(job);
 * ```
 */
export async function markDirty(job: ClientJob): Promise<void> {
  await Deno.writeTextFile(`${job.stateDir}/${DIRTY_FILE}`, `${Date.now()}\n`);
}

/**
 * Clears the dirty flag a {@linkcode transfer} with `keepDirty` left: the
 * caller's steps after the transfer are done.
 */
export async function clearDirty(job: ClientJob): Promise<void> {
  await Deno.remove(`${job.stateDir}/${DIRTY_FILE}`).catch(() => {});
}

/**
 * Recovers from a killed run; returns true when one was found (the next sync
 * must then walk the whole tree). `cleanup` removes what the layout leaves
 * behind (staging dirs, half-built trees). The dirty flag stays up: dest is
 * as unfinished as the killed run left it until a run completes it
 * ({@linkcode clearDirty}), and a run killed after this recovery, before it
 * changes anything, must leave it marked so too.
 */
export async function recoverInterrupted(
  job: ClientJob,
  cleanup: () => Promise<void>,
): Promise<boolean> {
  // Sync calls: the usual answer is "nothing to recover", and each async
  // call would cost a no-op cron run a thread hop (see existsNow).
  Deno.mkdirSync(job.stateDir, { recursive: true });
  const pidFile = `${job.stateDir}/${RSYNC_PID_FILE}`;
  let found = false;
  const [pidText, destArg] = (readTextNow(pidFile) ?? "").split("\n");
  const pid = Number(pidText);
  if (pid > 1 && destArg && await isRsyncInto(pid, destArg)) {
    // Its fanout was killed (SIGKILL, OOM) but the transfer runs on: two
    // rsyncs into one dest must never overlap.
    job.log.warn("stopping an rsync left running by a killed run", { pid });
    await stopGroup(pid, destArg);
    found = true;
  }
  if (pidText) {
    try {
      Deno.removeSync(pidFile);
    } catch { /* gone already */ }
  }
  if (existsNow(`${job.stateDir}/${DIRTY_FILE}`)) {
    job.log.debug("cleaning up after an interrupted run", { dest: job.dest });
    await cleanup();
    found = true;
  }
  return found;
}

async function isRsyncInto(pid: number, destArg: string): Promise<boolean> {
  try {
    const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    // setsid(1) for the moment before it executes rsync (lib/rsync/rsync.ts).
    const cmd = /(^|\/)setsid$/.test(argv[0]) ? argv.slice(1) : argv;
    return /(^|\/)rsync$/.test(cmd[0]) && cmd.includes(destArg);
  } catch {
    return false;
  }
}

async function stopGroup(pid: number, destArg: string): Promise<void> {
  const isRsync = (p: number) => isRsyncInto(p, destArg);
  const kill = (sig: Deno.Signal) => {
    try {
      Deno.kill(-pid, sig);
    } catch { /* gone */ }
  };
  kill("SIGTERM");
  kill("SIGCONT"); // a stopped process acts on SIGTERM only once continued
  for (let i = 0; i < 40 && await isRsync(pid); i++) await sleep(50);
  kill("SIGKILL");
  for (let i = 0; i < 40 && await isRsync(pid); i++) await sleep(50);
}

/**
 * Where a signed release's fetched paths wait for their check (see
 * lib/client/signed.ts), by preference: beside dest, on its file system and
 * out of its readers' sight, else in the state dir.
 *
 * @example
 * ```ts
 * stagingDirs(job); // ["/apps/dat/.plugins.staging", "/var/lib/fanout/web1/release-staging"]
 * ```
 */
export function stagingDirs(job: Pick<ClientJob, "dest" | "stateDir">): string[] {
  const dest = job.dest.replace(/\/+$/, "");
  const i = dest.lastIndexOf("/");
  return [
    `${dest.slice(0, i)}/.${dest.slice(i + 1)}.staging`,
    `${job.stateDir}/release-staging`,
  ];
}

/**
 * Removes the staging dirs of {@linkcode stagingDirs} (a symlink there
 * itself, never what it points at): what a killed run may leave of a signed
 * release's fetch.
 *
 * @example
 * ```ts
 * await removeStaging(job);
 * ```
 */
export async function removeStaging(job: Pick<ClientJob, "dest" | "stateDir">): Promise<void> {
  for (const dir of stagingDirs(job)) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Removes every `.~tmp~` staging dir under `dir` (what a killed
 * `--delay-updates` transfer leaves: partial files no reader should see).
 */
export async function removeDelayDirs(dir: string): Promise<number> {
  let removed = 0;
  const walk = async (d: string): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory) continue;
      const p = `${d}/${e.name}`;
      if (e.name === DELAY_DIR) {
        await Deno.remove(p, { recursive: true }).catch(() => {});
        removed++;
      } else {
        await walk(p);
      }
    }
  };
  await walk(dir);
  return removed;
}

const enc = new TextEncoder();

function writeErr(s: string): void {
  try {
    Deno.stderr.writeSync(enc.encode(s));
  } catch { /* stderr gone */ }
}

const PROGRESS = /[\d,]+\s+\d+%\s+\S+\s+\S+(?:\s+\(xfr#\d+, \w+-chk=\d+\/\d+\))?/;

function showProgress(line: string): void {
  const m = PROGRESS.exec(line);
  if (m) writeErr(`\r${m[0]}   `);
}
