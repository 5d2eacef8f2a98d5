/**
 * The health endpoint of every long-running role, as a small Hono app:
 * `GET /healthz` (200 `ok`, or 503 with the reason), `GET /status` (JSON),
 * `GET /metrics` (Prometheus text), and on roles that announce a version
 * `GET /version` (see version_board.ts). Read-only: any other method gets 405.
 *
 * @module
 */

import { Hono } from "hono";
import { EnvironmentError, formatHostPort, type HostPort, VERSION } from "../core/mod.ts";
import type { Registry } from "./metrics.ts";
import type { VersionBoard } from "./version_board.ts";

/** What a role exposes through its health endpoint. */
export interface HealthSource {
  role: string;
  name: string;
  /** null when healthy, else the reason (shown with 503). */
  problem(): string | null;
  /** Role-specific status fields, merged into `/status`. */
  status(): Record<string, unknown> | Promise<Record<string, unknown>>;
  registry: Registry;
  /** The version the role announces, served by `GET /version`; absent: no such route. */
  versions?: VersionBoard;
}

const started = Date.now();

/**
 * Builds the health app for `src`. `extend` may add routes (e.g. the fleet
 * view); the read-only rule applies to the built-in ones.
 *
 * @example
 * ```ts
 * const app = healthApp({ role: "replica", name: "rsync2", problem: () => null, status: () => ({}), registry });
 * const res = await app.request("/healthz"); // 200 "ok"
 * ```
 */
export function healthApp(src: HealthSource, extend?: (app: Hono) => void): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => {
    const problem = src.problem();
    return problem === null ? c.text("ok\n") : c.text(`${problem}\n`, 503);
  });
  app.get("/status", async (c) => {
    const problem = src.problem();
    return c.json({
      role: src.role,
      name: src.name,
      fanout_version: VERSION,
      healthy: problem === null,
      problem,
      started_at: new Date(started).toISOString(),
      uptime_s: Math.round((Date.now() - started) / 1000),
      ...(await src.status()),
    });
  });
  app.get("/metrics", (c) =>
    c.text(src.registry.render(), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));
  const paths = ["/", "/healthz", "/status", "/metrics"];
  if (src.versions) {
    const board = src.versions;
    board.register(src.registry);
    app.get("/version", (c) => board.handle(c.req.raw, peerOf(c.env)));
    paths.push("/version");
  }
  app.get("/", (c) => c.text(`fanout ${src.role} ${src.name}: ${paths.slice(1).join(" ")}\n`));
  extend?.(app);
  app.all("*", (c) => {
    const known = paths.includes(c.req.path);
    if (known) {
      return c.text("method not allowed: this endpoint is read-only\n", 405, {
        allow: "GET, HEAD",
      });
    }
    return c.text("not found\n", 404);
  });
  app.onError((_e, c) => c.text("internal error\n", 500));
  return app;
}

/** The peer's address as Deno.serve hands it to the app (`unknown` elsewhere, e.g. tests). */
function peerOf(env: unknown): string {
  const addr = (env as Partial<Deno.ServeHandlerInfo> | undefined)?.remoteAddr;
  return addr && "hostname" in addr ? addr.hostname : "unknown";
}

/** A running health server. */
export interface HealthServer {
  /** Where it listens. */
  addr: HostPort;
  /** Stops accepting and closes connections. */
  shutdown(): Promise<void>;
}

/**
 * Serves `app` on `at`.
 *
 * @throws {EnvironmentError} when the address is in use or cannot be bound.
 */
export function serveHealth(at: HostPort, app: Hono): HealthServer {
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname: at.host, port: at.port, onListen: () => {} }, app.fetch);
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse ? "address in use" : (e as Error).message;
    throw new EnvironmentError(`cannot serve health on ${formatHostPort(at)}: ${why}`);
  }
  return { addr: at, shutdown: () => server.shutdown() };
}
