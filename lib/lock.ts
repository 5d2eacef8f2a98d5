/**
 * Exclusive run locks on a file (`flock(2)` through `Deno.FsFile.tryLock`), so
 * two runs of a one-shot role never overlap. The kernel drops the lock when
 * the holder exits, however it exits (even SIGKILL), so a lock file left on
 * disk never blocks anyone. The holder writes its pid into the file, so the
 * refusal can say who holds it.
 *
 * @module
 */

import { EnvironmentError, LockedError } from "./errors.ts";

/** A held lock; release it (or let the process exit) to let others in. */
export interface Lock {
  /** The lock file. */
  readonly path: string;
  /** Drops the lock; safe to call twice. */
  release(): void;
  [Symbol.dispose](): void;
}

/**
 * Takes the exclusive lock on `path` at once, or throws.
 *
 * @throws {LockedError} when another process (or another open of the file in
 * this one) holds it; the message names the holder's pid when known.
 * @throws {EnvironmentError} when the lock file cannot be opened.
 *
 * @example
 * ```ts
 * using _lock = await tryLock("/var/lib/fanout/web1/client.lock");
 * // … exclusive work …
 * ```
 */
export async function tryLock(path: string): Promise<Lock> {
  const held = await attempt(path);
  if (held) return held;
  throw await lockedError(path);
}

/**
 * Takes the exclusive lock on `path`, waiting up to `timeoutMs` for its holder
 * to let go (polling; an abort of `signal` stops the wait).
 *
 * @throws {LockedError} when it is still held after `timeoutMs`.
 * @throws {EnvironmentError} when the lock file cannot be opened.
 *
 * @example
 * ```ts
 * const held = await lock("/var/lib/fanout/git1/publish.lock", 30_000);
 * try { … } finally { held.release(); }
 * ```
 */
export async function lock(
  path: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Lock> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 10;; wait = Math.min(wait * 2, 200)) {
    const held = await attempt(path);
    if (held) return held;
    const left = deadline - Date.now();
    if (left <= 0 || signal?.aborted) throw await lockedError(path, timeoutMs);
    await new Promise((r) => setTimeout(r, Math.min(wait, left)));
  }
}

/** The pid written in the lock file by its holder, or null. */
export async function lockHolder(path: string): Promise<number | null> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

async function attempt(path: string): Promise<Lock | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o644 });
  } catch (e) {
    throw new EnvironmentError(`cannot open lock file ${path}: ${(e as Error).message}`);
  }
  if (!(await file.tryLock(true))) {
    file.close();
    return null;
  }
  // Only the holder writes, so a reader sees either nothing or this pid.
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  let open = true;
  const release = () => {
    if (!open) return;
    open = false;
    try {
      file.close(); // closing drops the flock
    } catch { /* already closed */ }
  };
  return { path, release, [Symbol.dispose]: release };
}

async function lockedError(path: string, waitedMs?: number): Promise<LockedError> {
  const pid = await lockHolder(path);
  const who = pid ? `another run (pid ${pid})` : "another run";
  const waited = waitedMs !== undefined ? ` after waiting ${Math.round(waitedMs / 1000)}s` : "";
  return new LockedError(`${who} holds ${path}${waited}`);
}
