// What every long-running role shares: state dir, shutdown signal, health server.
import type { Hono } from "hono";
import { EnvironmentError, type HostPort } from "../lib/core/mod.ts";
import { healthApp, type HealthServer, type HealthSource, serveHealth } from "../lib/health/mod.ts";
import { shutdownSignal } from "../lib/sys/mod.ts";

/**
 * Creates `dir` (and parents) when missing.
 *
 * @throws {Deno.errors.PermissionDenied} when it cannot be created.
 */
export async function ensureDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
}

/**
 * Writes `text` to `<dir>/<file>` (creating `dir` when missing); returns the path.
 *
 * @throws {EnvironmentError} naming the state dir when it cannot be written:
 * a read-only file system, permissions, or (under systemd) a state dir the
 * unit does not list in ReadWritePaths=.
 *
 * @example
 * ```ts
 * const conf = await writeState("/var/lib/fanout/rsync2", "rsyncd.conf", text);
 * ```
 */
export async function writeState(dir: string, file: string, text: string): Promise<string> {
  const path = `${dir}/${file}`;
  try {
    await ensureDir(dir);
    await Deno.writeTextFile(path, text);
  } catch (e) {
    // "Read-only file system (os error 30): writefile '/x/rsyncd.conf'" -> "Read-only file system"
    const why = (e as Error).message.replace(/ \(os error \d+\)/, "").replace(/: \w+ '.*'$/, "");
    throw new EnvironmentError(
      `cannot write the state dir ${dir}: ${why} (state_dir must be writable by fanout)`,
    );
  }
  return path;
}

/**
 * Runs `body` until SIGTERM/SIGINT, then its cleanups in reverse order.
 * Cleanups also run when `body` or a start step throws.
 */
export async function untilShutdown(
  body: (signal: AbortSignal, onStop: (fn: () => Promise<void> | void) => void) => Promise<void>,
): Promise<void> {
  const { signal, dispose } = shutdownSignal();
  const stops: (() => Promise<void> | void)[] = [];
  try {
    await body(signal, (fn) => stops.push(fn));
  } finally {
    for (const fn of stops.reverse()) {
      try {
        await fn();
      } catch { /* keep stopping the rest */ }
    }
    dispose();
  }
}

/**
 * Serves the health app of `src` on `at` (see lib/health/health.ts). Its
 * shutdown first answers the held `/version` requests: a server's shutdown
 * waits for every open request to end.
 */
export function startHealth(
  at: HostPort,
  src: HealthSource,
  extend?: (app: Hono) => void,
): HealthServer {
  const server = serveHealth(at, healthApp(src, extend));
  return {
    addr: server.addr,
    shutdown() {
      src.versions?.close();
      return server.shutdown();
    },
  };
}
