/**
 * What the primary and every replica share: the rsync daemon, the health
 * endpoint, and (when the host has downstream replicas) the push engine.
 *
 * @module
 */

import type { CommonOptions } from "../lib/cli.ts";
import { downstreamsOf, selectServer, type ServerHost, writersOf } from "../lib/config.ts";
import { formatHostPort } from "../lib/address.ts";
import { log } from "../lib/log.ts";
import { Registry } from "../lib/metrics.ts";
import { requireRsync } from "../lib/rsync.ts";
import { daemonIdentity, renderRsyncdConf, RsyncDaemon } from "../lib/rsync_daemon.ts";
import { checkSecretFiles } from "../lib/secrets.ts";
import { proxiedDaemon, proxiedProblem } from "../lib/proxied_daemon.ts";
import { aborted } from "../lib/signals.ts";
import { readMarker } from "../lib/version.ts";
import { fleetFor } from "./_fleet.ts";
import { ensureDir, startHealth, untilShutdown } from "./_lifecycle.ts";

/**
 * Runs a server host until SIGTERM/SIGINT; returns the exit code.
 *
 * @throws {ConfigError} / {EnvironmentError} before anything starts when the
 * fleet file, the secrets or rsync are not right.
 */
export async function runServer(opts: CommonOptions, kind: "primary" | "replica"): Promise<number> {
  const fleet = await fleetFor(opts, kind);
  const self = selectServer(fleet, kind, opts.name);
  const lg = log().child({ role: kind, name: self.name });
  await requireRsync(fleet.rsync.path);
  const downstreams = downstreamsOf(fleet, self.name);
  await checkSecretFiles(fleet, {
    daemon: writersOf(fleet, self).length > 0,
    pusher: downstreams.length > 0,
  });
  await ensureDir(self.stateDir);
  const id = await daemonIdentity(fleet, self);
  const confPath = `${self.stateDir}/rsyncd.conf`;
  await Deno.writeTextFile(confPath, renderRsyncdConf(fleet, self, id));

  const daemon = new RsyncDaemon({
    rsync: fleet.rsync.path,
    confPath,
    listen: self.listen,
    stateDir: self.stateDir,
    log: lg,
  });
  // Only behind a PROXY-protocol proxy: a second, read-only daemon.
  const proxied = await proxiedDaemon(fleet, self, id, lg);
  const registry = new Registry();
  registry.gauge(
    "fanout_daemon_up",
    "1 when the rsync daemon answers.",
    () => [[{}, daemon.state === "up" ? 1 : 0]],
  );
  registry.gauge(
    "fanout_daemon_restarts",
    "Restarts of the rsync daemon since start.",
    () => [[{}, daemon.restarts]],
  );
  let version = await readMarker(self.path);
  registry.gauge(
    "fanout_tree_version_seq",
    "seq of the version marker in this host's tree.",
    () => [[{}, version?.seq ?? -1]],
  );

  await untilShutdown(async (signal, onStop) => {
    onStop(() => daemon.stop());
    await daemon.start();
    onStop(() => proxied?.stop());
    await proxied?.start();
    const health = startHealth(self.health, {
      role: kind,
      name: self.name,
      registry,
      problem: () => daemonProblem(daemon) ?? proxiedProblem(proxied),
      status: () => ({
        tree: { path: self.path, version },
        daemon: {
          state: daemon.state,
          pid: daemon.pid,
          listen: formatHostPort(self.listen),
          restarts: daemon.restarts,
          last_error: daemon.lastError,
          since: new Date(daemon.since).toISOString(),
        },
        proxied_daemon: proxied && { state: proxied.state, pid: proxied.pid },
        modules: {
          read: fleet.modules.read,
          write: writersOf(fleet, self).length ? fleet.modules.write : null,
        },
        upstream: self.upstream,
        downstreams: downstreams.map((d) => d.name),
      }),
    });
    onStop(() => health.shutdown());
    // The marker changes when a push lands; refresh it for /status and /metrics.
    const refresh = setInterval(async () => version = await readMarker(self.path), 1000);
    onStop(() => clearInterval(refresh));
    lg.info("ready", describe(self, downstreams));
    await aborted(signal);
    lg.info("stopping", { signal: String(signal.reason) });
  });
  lg.info("stopped");
  return 0;
}

function daemonProblem(d: RsyncDaemon): string | null {
  if (d.state === "up") return null;
  return `rsync daemon ${d.state}${d.lastError ? `: ${d.lastError}` : ""}`;
}

function describe(self: ServerHost, downstreams: ServerHost[]): Record<string, unknown> {
  return {
    listen: formatHostPort(self.listen),
    health: formatHostPort(self.health),
    path: self.path,
    downstreams: downstreams.map((d) => d.name).join(",") || undefined,
  };
}
