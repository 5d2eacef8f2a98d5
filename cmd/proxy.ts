/**
 * `fanout --role proxy`: the TCP balancer in front of every rsync server.
 * Wires the backend pool (health and version checks), the data plane, the
 * health endpoint, SIGHUP (re-read the backend list) and SIGTERM (drain).
 *
 * @module
 */

import {
  backendSpecs,
  type CommonOptions,
  type Fleet,
  fleetFor,
  type ProxyConfig,
  referenceSpec,
} from "../lib/config/mod.ts";
import { formatDuration, formatHostPort, log, type Logger } from "../lib/core/mod.ts";
import { Registry, VersionBoard } from "../lib/health/mod.ts";
import { type Backend, BackendNotices, BackendPool, TcpProxy } from "../lib/proxy/mod.ts";
import { openProxyNet } from "../lib/proxy/net/mod.ts";
import { aborted } from "../lib/sys/mod.ts";
import { startHealth, untilShutdown } from "./_lifecycle.ts";

/**
 * Runs the proxy until SIGTERM/SIGINT (then drains); returns the exit code.
 *
 * @throws {ConfigError} when the fleet file has no valid proxy section.
 * @throws {EnvironmentError} when the listen or health address cannot be bound.
 */
export async function run(opts: CommonOptions): Promise<number> {
  const fleet = await fleetFor(opts, "proxy");
  const cfg = fleet.proxy!;
  const lg = log().child({ role: "proxy", name: cfg.name });
  const pool = new BackendPool(backendSpecs(fleet), {
    fall: cfg.fall,
    rise: cfg.rise,
    versionGrace: cfg.versionGrace,
    affinity: cfg.affinity,
    checkTimeout: cfg.checkTimeout,
    module: fleet.modules.read,
    proxyProtocol: cfg.proxyProtocol,
    reference: referenceSpec(fleet),
    maxLead: cfg.versionMaxLead,
    log: lg,
  });
  const { net, fallback } = openProxyNet(cfg.engine);
  if (fallback) lg.warn("proxy engine: deno, not the native copy engine", { why: fallback });
  const tcp = new TcpProxy({
    listen: cfg.listen,
    pool,
    maxConnections: cfg.maxConnections,
    maxPerSource: cfg.maxConnectionsPerSource,
    handshakeTimeout: cfg.handshakeTimeout,
    idleTimeout: cfg.idleTimeout,
    connectTimeout: cfg.checkTimeout,
    proxyProtocol: cfg.proxyProtocol,
    modules: [fleet.modules.read],
    net,
    log: lg,
  });

  await untilShutdown(async (signal, onStop) => {
    // One round first, so the first clients find the healthy backends.
    await pool.checkAll();
    await tcp.start();
    onStop(() => tcp.close());
    // What every backend in rotation holds, announced to watching clients.
    const board = new VersionBoard(pool.served);
    const announce = () => board.announce(pool.served);
    const stopChecks = checkEvery(pool, cfg.interval, announce);
    onStop(stopChecks);
    const notices = new BackendNotices(pool, { log: lg, onChange: announce });
    notices.sync();
    onStop(() => notices.stop());
    const health = startHealth(cfg.health, {
      role: "proxy",
      name: cfg.name,
      registry: metrics(pool, tcp, cfg),
      versions: board,
      problem: () =>
        tcp.draining
          ? "draining: stopping"
          : pool.rotation.length === 0
          ? `no healthy rsync server (${pool.whyNone()})`
          : null,
      status: () => status(pool, tcp, cfg),
    });
    onStop(() => health.shutdown());
    onStop(reloadOnHup(opts, pool, lg, () => {
      notices.sync();
      announce();
    }));
    lg.info("ready", {
      listen: formatHostPort(tcp.addr),
      health: formatHostPort(cfg.health),
      backends: pool.backends.map((b) => `${b.name}=${formatHostPort(b.addr)}`).join(","),
      in_rotation: pool.rotation.map((b) => b.name).join(",") || "none",
      proxy_protocol: cfg.proxyProtocol,
      engine: net.engine,
    });
    await aborted(signal);
    lg.info("draining", {
      signal: String(signal.reason),
      active: tcp.active,
      timeout: formatDuration(cfg.drainTimeout),
    });
    const cut = await tcp.drain(cfg.drainTimeout);
    if (cut > 0) lg.warn("drain timed out; connections cut", { cut });
  });
  lg.info("stopped");
  return 0;
}

/**
 * Runs a check round every `ms` (from start to start), calling `after` when
 * each ends; returns a stopper.
 */
function checkEvery(pool: BackendPool, ms: number, after: () => void): () => Promise<void> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    const t0 = Date.now();
    running = pool.checkAll().then(after).finally(() => {
      if (!stopped) timer = setTimeout(tick, Math.max(0, t0 + ms - Date.now()));
    });
  };
  timer = setTimeout(tick, ms);
  return async () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    await running;
  };
}

/**
 * SIGHUP re-reads the backend list from the fleet file, then calls
 * `reloaded`; returns the remover.
 */
function reloadOnHup(
  opts: CommonOptions,
  pool: BackendPool,
  lg: Logger,
  reloaded: () => void,
): () => void {
  const onHup = async () => {
    let fleet: Fleet;
    try {
      fleet = await fleetFor(opts, "proxy");
    } catch (e) {
      lg.error("reload failed; keeping the current backends", {
        error: (e as Error).message.split("\n").join("; "),
      });
      return;
    }
    const { added, removed } = pool.update(backendSpecs(fleet));
    lg.info("backends reloaded", {
      backends: pool.backends.map((b) => b.name).join(","),
      added: added.join(",") || undefined,
      removed: removed.join(",") || undefined,
    });
    // New backends join after their first check: do it now, not at the next tick.
    if (added.length) await pool.checkAll();
    reloaded();
  };
  Deno.addSignalListener("SIGHUP", onHup);
  return () => Deno.removeSignalListener("SIGHUP", onHup);
}

function lagOf(pool: BackendPool, b: Backend): number | null {
  const newest = pool.newestSeq;
  if (newest === undefined || b.seq === undefined) return null;
  return Math.max(0, newest - b.seq);
}

function status(pool: BackendPool, tcp: TcpProxy, cfg: ProxyConfig): Record<string, unknown> {
  const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);
  return {
    listen: formatHostPort(tcp.addr),
    draining: tcp.draining,
    proxy_protocol: cfg.proxyProtocol,
    connections: {
      active: tcp.active,
      handshaking: tcp.handshaking,
      sources: tcp.sources,
      max: cfg.maxConnections,
      max_per_source: cfg.maxConnectionsPerSource,
      accepted: tcp.counters.accepted,
      refused_max_connections: tcp.counters.refusedMaxConnections,
      refused_max_connections_per_source: tcp.counters.refusedPerSource,
      refused_no_backend: tcp.counters.refusedNoBackend,
      handshake_timeouts: tcp.counters.handshakeTimeouts,
      bad_handshakes: tcp.counters.badHandshakes,
      idle_timeouts: tcp.counters.idleTimeouts,
      connect_failures: tcp.counters.connectFailures,
    },
    newest_seq: pool.newestSeq ?? null,
    served_version: pool.served,
    reference: pool.reference,
    version_max_lead: cfg.versionMaxLead,
    affinity: {
      window: pool.affinity.window ? formatDuration(pool.affinity.window) : "off",
      clients: pool.affinity.clients,
    },
    degraded: pool.degraded,
    rotation: pool.rotation.map((b) => b.name),
    backends: pool.backends.map((b) => ({
      name: b.name,
      addr: formatHostPort(b.addr),
      state: b.state,
      in_rotation: b.inRotation,
      since: iso(b.since),
      reason: b.reason,
      last_check: b.lastCheck && {
        at: iso(b.lastCheck.at),
        ok: b.lastCheck.ok,
        ms: b.lastCheck.ms,
        error: b.lastCheck.error,
      },
      version: b.version ?? null,
      version_known: b.version !== undefined,
      version_error: b.versionError,
      lag: lagOf(pool, b),
      behind_since: iso(b.behindSince),
      lagging: b.lagging,
      distrusted: b.distrusted,
      active_connections: b.active,
      connections: b.connections,
      bytes_to_backend: b.bytesToBackend,
      bytes_to_client: b.bytesToClient,
      failures: { checks: b.checkFailures, connects: b.connectFailures },
    })),
  };
}

function metrics(pool: BackendPool, tcp: TcpProxy, cfg: ProxyConfig): Registry {
  const r = new Registry();
  const per = (f: (b: Backend) => number) => () =>
    pool.backends.map((b) => [{ backend: b.name }, f(b)] as [Record<string, string>, number]);
  r.gauge(
    "fanout_proxy_backend_up",
    "1 when the backend passes its checks.",
    per((b) => b.state === "up" ? 1 : 0),
  );
  r.gauge(
    "fanout_proxy_backend_in_rotation",
    "1 when clients are sent to the backend.",
    per((b) => (b.inRotation ? 1 : 0)),
  );
  r.gauge(
    "fanout_proxy_backend_version_seq",
    "seq of the backend's tree version (-1: none or unknown).",
    per((b) => b.seq ?? -1),
  );
  r.gauge(
    "fanout_proxy_backend_distrusted",
    "1 when the backend's version is not believed (too far past the primary's, or unverified).",
    per((b) => (b.distrusted ? 1 : 0)),
  );
  r.gauge(
    "fanout_proxy_backend_version_lag",
    "How many versions the backend is behind the newest up backend.",
    per((b) => lagOf(pool, b) ?? 0),
  );
  r.gauge(
    "fanout_proxy_backend_check_seconds",
    "Round trip of the last rsync health check.",
    per((b) => (b.lastCheck ? b.lastCheck.ms / 1000 : 0)),
  );
  r.gauge(
    "fanout_proxy_backend_active_connections",
    "Clients connected to the backend now.",
    per((b) => b.active),
  );
  r.counter(
    "fanout_proxy_backend_connections_total",
    "Clients sent to the backend.",
    per((b) => b.connections),
  );
  r.counter(
    "fanout_proxy_backend_bytes_total",
    "Bytes copied, by direction.",
    () =>
      pool.backends.flatMap((b) =>
        [
          [{ backend: b.name, direction: "to_backend" }, b.bytesToBackend],
          [{ backend: b.name, direction: "to_client" }, b.bytesToClient],
        ] as [Record<string, string>, number][]
      ),
  );
  r.counter(
    "fanout_proxy_backend_failures_total",
    "Failed health checks and connects.",
    () =>
      pool.backends.flatMap((b) =>
        [
          [{ backend: b.name, kind: "check" }, b.checkFailures],
          [{ backend: b.name, kind: "connect" }, b.connectFailures],
        ] as [Record<string, string>, number][]
      ),
  );
  r.gauge("fanout_proxy_connections_active", "Clients connected now.", () => [[{}, tcp.active]]);
  r.gauge("fanout_proxy_connections_max", "proxy.max_connections.", () => [[
    {},
    cfg.maxConnections,
  ]]);
  r.counter("fanout_proxy_connections_total", "Clients accepted.", () => [[
    {},
    tcp.counters.accepted,
  ]]);
  r.counter("fanout_proxy_refused_total", "Clients turned away with an @ERROR line.", () => [
    [{ reason: "max_connections" }, tcp.counters.refusedMaxConnections],
    [{ reason: "max_connections_per_source" }, tcp.counters.refusedPerSource],
    [{ reason: "no_backend" }, tcp.counters.refusedNoBackend],
  ]);
  r.counter(
    "fanout_proxy_handshake_failures_total",
    "Clients closed before the relay: no greeting and module request in time, or not rsync.",
    () => [
      [{ reason: "timeout" }, tcp.counters.handshakeTimeouts],
      [{ reason: "bad" }, tcp.counters.badHandshakes],
    ],
  );
  r.counter("fanout_proxy_idle_timeouts_total", "Connections closed for idleness.", () => [[
    {},
    tcp.counters.idleTimeouts,
  ]]);
  return r;
}
