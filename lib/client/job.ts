/**
 * What every step of a client run shares: the job (source, dest, limits),
 * the rsync options every client transfer starts from, and running rsync for
 * it, with connection failures retried on a new connection each time.
 *
 * @module
 */

import {
  DEST_MARKER,
  formatHostPort,
  type HostPort,
  type Logger,
  parseRsyncUrl,
  sleep,
  TransferError,
} from "../core/mod.ts";
import {
  describeRsyncFailure,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  runRsync,
} from "../rsync/mod.ts";
import type { PublicKey } from "../release/mod.ts";

/** Everything one run needs; built by cmd/client.ts from the fleet file. */
export interface ClientJob {
  /** This host's name (splay, status). */
  host: string;
  /** rsync URL of the read module, ending in `/`. */
  source: string;
  /** The directory kept identical. */
  dest: string;
  /** `<state_dir>/<name>`: lock, status, recovery files. */
  stateDir: string;
  /** The rsync binary. */
  rsync: string;
  /** I/O timeout, ms. */
  timeout: number;
  /** Connect timeout, ms. */
  connectTimeout: number;
  /** Retries after connection failures. */
  retries: number;
  /** Refuse a sync that would delete more entries than this. */
  maxDelete: number;
  /** Skip the tree walk while the version is unchanged and the last full
   * verification is younger than this (ms); 0: walk every run. */
  verifyEvery: number;
  /** Keep overwritten and deleted files under `<backupDir>/<time>/`. */
  backupDir: string | null;
  /** Swap whole trees through a symlink (lib/client/atomic.ts). */
  atomic: boolean;
  /** Trees kept with `atomic`. */
  keep: number;
  /** Take over a non-empty unmarked dest once. */
  adopt: boolean;
  /**
   * The keys a version must be signed with (`release.public_keys`); none:
   * an unsigned fleet, whose versions are taken as the server sends them.
   */
  publicKeys?: readonly PublicKey[];
  /** Keep the owners and groups the server's files have (`client.keep_owners`). */
  keepOwners?: boolean;
  /**
   * The health endpoint that announces the source's version
   * (`client.notify`): a run asks it first whether anything is new
   * (lib/client/announced.ts); null or absent: the module listing only.
   */
  notify?: HostPort | null;
  /** Show progress and a summary line. */
  verbose: boolean;
  log: Logger;
  /** Aborting stops the transfer. */
  signal?: AbortSignal;
  /** Backoff before retry `n` (1-based), ms; default 1 s doubling, at most 30 s. */
  backoff?: (n: number) => number;
}

/**
 * What a client takes from its server besides names, bytes and times: no
 * setuid or setgid bit and nothing writable by all (a server must not plant
 * a setuid-root binary on a host whose client runs as root), and no owner or
 * group unless `client.keep_owners` says so (the client's user owns the
 * files). Holes stay holes: a sparse file takes the disk space of its data.
 * The comparison gets the same options, so a mode or owner the client does
 * not take is no drift.
 *
 * @example
 * ```ts
 * safeAttrs(job); // ["--no-owner", "--no-group", "--chmod=ugo-s,o-w", "--sparse"]
 * ```
 */
export function safeAttrs(job: Pick<ClientJob, "keepOwners">): string[] {
  return [
    ...(job.keepOwners ? [] : ["--no-owner", "--no-group"]),
    "--chmod=ugo-s,o-w",
    "--sparse",
  ];
}

/** The rsync job every client transfer starts from. */
export function baseJob(job: ClientJob, dest: string): RsyncJob {
  return {
    source: job.source,
    dest: dest + "/",
    timeout: job.timeout,
    connectTimeout: job.connectTimeout,
    itemize: true,
    // The destination marker is fanout's, never the source's: excluded, so
    // --delete leaves it alone and no server can supply or remove it.
    excludes: [`/${DEST_MARKER}`],
    extra: safeAttrs(job),
  };
}

/**
 * Runs rsync for `job`; an abort of `job.signal` stops it.
 *
 * @throws {TransferError} when the run was interrupted.
 */
export async function rsyncRun(
  job: ClientJob,
  rj: RsyncJob,
  extra: { onSpawn?: (pid: number) => void; onStdout?: (line: string) => void } = {},
): Promise<RsyncResult> {
  if (job.signal?.aborted) throw interrupted(job);
  const r = await runRsync(rsyncArgs(rj), { rsync: job.rsync, signal: job.signal, ...extra });
  if (job.signal?.aborted) throw interrupted(job);
  return r;
}

/** The error of a run stopped by a signal. */
export function interrupted(job: ClientJob): TransferError {
  return new TransferError(
    `interrupted (${String(job.signal?.reason ?? "aborted")}); the next run completes the sync`,
    20,
  );
}

/** A failed rsync run; keeps rsync's stderr to tell connection failures apart. */
export class RsyncFailure extends TransferError {
  readonly stderr: string;
  readonly detail: string;
  constructor(source: string, r: Pick<RsyncResult, "code" | "stderr">) {
    const detail = describeRsyncFailure(r);
    super(`${source}: ${detail}`, r.code);
    this.stderr = r.stderr;
    this.detail = detail;
  }
}

/**
 * Throws unless rsync succeeded.
 *
 * @throws {RsyncFailure} carrying rsync's code, words and stderr.
 */
export function failUnlessOk(job: ClientJob, r: Pick<RsyncResult, "code" | "stderr">): void {
  if (r.code !== 0) throw new RsyncFailure(job.source, r);
}

/**
 * True for failures a new connection may fix: refused or reset connections,
 * timeouts, a server at its connection limit or one that hung up.
 *
 * @example
 * ```ts
 * isConnectionFailure(10, "failed to connect to 10.0.0.3: Connection refused"); // true
 * isConnectionFailure(5, "@ERROR: fanout proxy: no healthy rsync server (…)"); // true
 * isConnectionFailure(5, "@ERROR: Unknown module 'plugns'"); // false
 * ```
 */
export function isConnectionFailure(code: number | null, stderr: string): boolean {
  if (code === 10 || code === 12 || code === 30 || code === 35) return true;
  // "no healthy rsync server": fanout's proxy between a server's return and
  // its next passed checks, or after its own connect timeouts under a flood.
  // "didn't get server startup line": the server died between the greeting
  // and the transfer (a replica killed while clients pull through the proxy).
  return code === 5 &&
    /max connections|try again later|did not see server greeting|didn't get server startup line|connection unexpectedly closed|Connection reset|no healthy rsync server/i
      .test(stderr);
}

/**
 * True when files vanished from the source while rsync read them (exit 24):
 * a push landed during the run (a new version deletes files; an rsync
 * writing into the tree without a temp dir leaves temp files that come and
 * go), so the tree read was mid-change. Comparing again, once the
 * push is done, gives a consistent one.
 */
export function sourceChanged(code: number | null): boolean {
  return code === 24;
}

/** The default backoff: 1 s, 2 s, 4 s… at most 30 s, with ±20% jitter. */
export function defaultBackoff(n: number): number {
  const base = Math.min(1000 * 2 ** (n - 1), 30_000);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Runs `fn`, retrying connection failures (see {@linkcode isConnectionFailure})
 * and a source that changed under the transfer (see {@linkcode sourceChanged})
 * up to `job.retries` times with backoff; `what` names the step in the error.
 *
 * @throws {TransferError} when the last attempt fails too, or at once for
 * any other failure.
 */
export async function retrying<T>(job: ClientJob, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (
        !(e instanceof RsyncFailure) || job.signal?.aborted ||
        !(isConnectionFailure(e.rsyncCode, e.stderr) || sourceChanged(e.rsyncCode))
      ) throw e;
      if (attempt >= job.retries) {
        throw new TransferError(
          `cannot ${what} from ${job.source} (${attempt + 1} attempt${attempt ? "s" : ""}): ${
            sourceChanged(e.rsyncCode)
              ? `${e.detail}: the source kept changing (a push in progress?); the next run completes the sync`
              : `${e.detail}; dest unchanged`
          }`,
          e.rsyncCode,
        );
      }
      const wait = (job.backoff ?? defaultBackoff)(attempt + 1);
      job.log.debug("connection failed; retrying", { error: e.message, in_ms: wait });
      if (!(await sleep(wait, job.signal))) throw interrupted(job);
    }
  }
}

/** `host:port` of an rsync URL (rsync's port when it names none); the text itself when not one. */
export function serverOf(url: string): string {
  const u = parseRsyncUrl(url);
  return u ? formatHostPort(u) : url;
}

/** `2026-11-25T21-42-55.004Z`: a sortable time usable in a path. */
export function stamp(d: Date): string {
  return d.toISOString().replaceAll(":", "-");
}
