/**
 * An exclusive lock on a file (`flock`), held for the life of one run, that
 * a second run waits for up to a timeout. The kernel drops the lock when the
 * holder dies, so a killed run never leaves a stale lock behind; the file
 * keeps the holder's pid only to name it in messages.
 *
 * @module
 */

import { formatDuration, LockedError } from "../core/mod.ts";

/** A held lock. */
export interface FileLock {
  /** The lock file. */
  readonly path: string;
  /** How long acquiring it waited, in ms. */
  readonly waitedMs: number;
  /** Releases the lock (idempotent). */
  release(): void;
}

/** Options of {@linkcode acquireLock}. */
export interface LockOptions {
  /** Give up after this many ms (0: do not wait at all). */
  timeout: number;
  /** What holds such a lock, for the message: `"publish"` → "another publish holds …". */
  what: string;
  /** Called once when the lock is busy and the wait begins. */
  onWait?: (holderPid: number | null) => void;
}

/**
 * Takes the exclusive lock on `path` (created when missing, with its parent
 * directory), waiting up to `opts.timeout` for the current holder.
 *
 * @throws {LockedError} when the lock is still held after the timeout.
 *
 * @example
 * ```ts
 * const lock = await acquireLock("/var/lib/fanout/git1/publish.lock", { timeout: 60_000, what: "publish" });
 * try {
 *   // … the one run at a time …
 * } finally {
 *   lock.release();
 * }
 * ```
 */
export async function acquireLock(path: string, opts: LockOptions): Promise<FileLock> {
  // Sync calls where nothing is waited for: each async one costs a thread
  // hop, and a cron client takes this lock every minute.
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
  const file = Deno.openSync(path, { read: true, write: true, create: true });
  const started = performance.now();
  try {
    let pause = 10;
    let waiting = false;
    while (!file.tryLockSync(true)) {
      const waited = performance.now() - started;
      if (waited >= opts.timeout) {
        const pid = await holderPid(path);
        throw new LockedError(
          `another ${opts.what} holds ${path}${pid ? ` (pid ${pid})` : ""}` +
            (opts.timeout > 0 ? `; gave up after ${formatDuration(opts.timeout)}` : ""),
        );
      }
      if (!waiting) {
        waiting = true;
        opts.onWait?.(await holderPid(path));
      }
      await new Promise((r) => setTimeout(r, Math.min(pause, opts.timeout - waited)));
      pause = Math.min(pause * 2, 100);
    }
  } catch (e) {
    file.close();
    throw e;
  }
  const waitedMs = performance.now() - started;
  file.truncateSync(0);
  file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
  let held = true;
  return {
    path,
    waitedMs,
    release() {
      if (!held) return;
      held = false;
      // Closing the descriptor drops the flock.
      file.close();
    },
  };
}

/** The pid on the lock file's first line (what follows it is another writer's leftover), or null. */
async function holderPid(path: string): Promise<number | null> {
  try {
    const pid = Number((await Deno.readTextFile(path)).split("\n")[0].trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
