/**
 * What the primary and every replica share: the rsync daemon, the health
 * endpoint, and (when the host has downstream replicas) the push engine.
 *
 * @module
 */

import {
  checkSecretFiles,
  type CommonOptions,
  downstreamsOf,
  type Fleet,
  fleetFor,
  selectServer,
  type ServerHost,
  writersOf,
} from "../lib/config/mod.ts";
import {
  formatDuration,
  formatHostPort,
  formatRsyncUrl,
  log,
  type Logger,
  SERVER_TEMP_DIR,
  VERSION_MARKER,
} from "../lib/core/mod.ts";
import { Registry, VersionBoard } from "../lib/health/mod.ts";
import { requireRsync } from "../lib/rsync/mod.ts";
import {
  type DaemonIdentity,
  daemonIdentity,
  proxiedDaemon,
  proxiedProblem,
  renderRsyncdConf,
  RsyncDaemon,
} from "../lib/rsyncd/mod.ts";
import { PushEngine } from "../lib/push/mod.ts";
import { TreeWatcher } from "../lib/watch/mod.ts";
import { aborted } from "../lib/sys/mod.ts";
import { readMarker, type VersionMarker } from "../lib/version/mod.ts";
import { UNSIGNED_WARNING } from "../lib/release/mod.ts";
import { ensureDir, startHealth, untilShutdown, writeState } from "./_lifecycle.ts";

/**
 * Runs a server host until SIGTERM/SIGINT; returns the exit code.
 *
 * @throws {ConfigError} / {EnvironmentError} before anything starts when the
 * fleet file, the secrets or rsync are not right.
 */
export async function runServer(opts: CommonOptions, kind: "primary" | "replica"): Promise<number> {
  const host = await checkServer(opts, kind);
  const { fleet, self, lg } = host;
  await ensureTempDir(self.path);
  const current = readMarker(self.path);
  const tree: TreeVersion = { current, board: new VersionBoard(current) };
  const daemons = await makeDaemons(host, tree.current);
  const registry = serverRegistry(daemons.daemon, tree);
  // The fleet view (client reports, /fleet) is the primary's alone, and loaded only there.
  const fleetView = kind === "primary"
    ? await (await import("../lib/fleet/mod.ts")).openFleetView({
      fleet,
      self,
      registry,
      log: lg,
    })
    : null;

  await untilShutdown(async (signal, onStop) => {
    if (fleetView) onStop(() => fleetView.close());
    onStop(() => daemons.daemon.stop());
    await daemons.daemon.start();
    onStop(() => daemons.proxied?.stop());
    await daemons.proxied?.start();
    let relay: Relay | null = null;
    if (host.downstreams.length > 0) {
      relay = await startRelay(host, registry, opts.allowMassDelete);
      onStop(() => relay!.stop());
      fleetView?.setReplicaSource(() => relay!.engine.status());
    }
    const health = startHealth(
      self.health,
      {
        role: kind,
        name: self.name,
        registry,
        versions: tree.board,
        problem: () => serverProblem(host, daemons, relay),
        status: () => serverStatus(host, daemons, relay),
      },
      fleetView?.routes,
    );
    onStop(() => health.shutdown());
    onStop(followMarker(self.path, () => refreshVersion(self.path, daemons, tree)));
    // Once a start: the server serves what it is given, signed or not; its clients check.
    if (fleet.release.publicKeys.length === 0) lg.warn(UNSIGNED_WARNING);
    lg.info("ready", describe(self, host.downstreams));
    await aborted(signal);
    lg.info("stopping", { signal: String(signal.reason) });
  });
  lg.info("stopped");
  return 0;
}

/** A server host, checked and ready to start. */
interface ServerSetup {
  fleet: Fleet;
  self: ServerHost;
  lg: Logger;
  /** `rsync --version`'s version. */
  rsyncVersion: string;
  /** The replicas this host pushes to. */
  downstreams: ServerHost[];
  /** Who the daemons run as. */
  id: DaemonIdentity;
}

/** The rsync daemons of a server host. */
interface Daemons {
  daemon: RsyncDaemon;
  /** The read-only twin behind a PROXY-protocol proxy, or null. */
  proxied: RsyncDaemon | null;
}

/**
 * The tree's version as the daemons announce it, the metrics show it and
 * `/version` tells watching clients; {@linkcode refreshVersion} is its one
 * writer.
 */
interface TreeVersion {
  current: VersionMarker | null;
  board: VersionBoard;
}

/**
 * Reads the fleet file and this host's entry in it, and checks what the
 * server needs before anything starts: rsync, the secret files, the tree.
 */
async function checkServer(opts: CommonOptions, kind: "primary" | "replica"): Promise<ServerSetup> {
  const fleet = await fleetFor(opts, kind);
  const self = selectServer(fleet, kind, opts.name);
  const lg = log().child({ role: kind, name: self.name });
  const rsyncVersion = await requireRsync(fleet.rsync.path);
  const downstreams = downstreamsOf(fleet, self.name);
  await checkSecretFiles(fleet, {
    daemon: writersOf(fleet, self).length > 0,
    pusher: downstreams.length > 0,
  });
  const id = await daemonIdentity(fleet, self);
  return { fleet, self, lg, rsyncVersion, downstreams, id };
}

/**
 * The daemons, their rsyncd.conf written, not started yet. The read module's
 * comment announces the tree's version, so clients can check it with a
 * module listing (no rsync process on either side).
 */
async function makeDaemons(host: ServerSetup, version: VersionMarker | null): Promise<Daemons> {
  const { fleet, self, id, lg } = host;
  const render = (v: VersionMarker | null) => renderRsyncdConf(fleet, self, id, { version: v });
  const confPath = await writeState(self.stateDir, "rsyncd.conf", render(version));
  const daemon = new RsyncDaemon({
    rsync: fleet.rsync.path,
    confPath,
    listen: self.listen,
    stateDir: self.stateDir,
    log: lg,
    render,
  });
  // Only behind a PROXY-protocol proxy: a second, read-only daemon.
  const proxied = await proxiedDaemon(fleet, self, id, lg, {
    rsyncVersion: host.rsyncVersion,
    version,
  });
  return { daemon, proxied };
}

/** The metrics of the daemon and the tree's version. */
function serverRegistry(daemon: RsyncDaemon, tree: TreeVersion): Registry {
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
  registry.gauge(
    "fanout_tree_version_seq",
    "seq of the version marker in this host's tree.",
    () => [[{}, tree.current?.seq ?? -1]],
  );
  return registry;
}

/** Why the host is not healthy, or null. */
function serverProblem(host: ServerSetup, daemons: Daemons, relay: Relay | null): string | null {
  return daemonProblem(daemons.daemon) ?? proxiedProblem(daemons.proxied) ??
    relay?.engine.problem() ?? watchProblem(relay, host.fleet.push.pollInterval);
}

/** The role's fields of `/status`; reads, changes nothing. */
function serverStatus(
  host: ServerSetup,
  daemons: Daemons,
  relay: Relay | null,
): Record<string, unknown> {
  const { fleet, self } = host;
  const { daemon, proxied } = daemons;
  return {
    tree: { path: self.path, version: readMarker(self.path) },
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
    downstreams: host.downstreams.map((d) => d.name),
    watch: relay
      ? {
        mode: relay.watcher.mode,
        backend: relay.watcher.backend,
        dirs: relay.watcher.dirs,
        setup_ms: Math.round(relay.watcher.setupMs),
      }
      : null,
    push_guard: relay?.engine.guardStatus() ?? null,
    replicas: relay?.engine.status() ?? [],
  };
}

/**
 * Reads the tree's version again and hands it to the daemons (the module
 * comment) and the metrics, then to `/version`: a client that hears of it
 * reads the module comment next, so that is rewritten first. Puts back a
 * removed temp dir.
 */
async function refreshVersion(
  tree: string,
  daemons: Daemons,
  version: TreeVersion,
): Promise<void> {
  await ensureTempDir(tree);
  version.current = readMarker(tree);
  await daemons.daemon.setVersion(version.current);
  await daemons.proxied?.setVersion(version.current);
  version.board.announce(version.current);
}

/**
 * Calls `refresh` when a push lands (the marker changes), so /status,
 * /metrics and the module comment follow at once: on a watch of the tree's
 * root, with a timer in case an event is missed. Returns the stop.
 */
function followMarker(tree: string, refresh: () => Promise<void>): () => void {
  const timer = setInterval(refresh, 1000);
  const markerWatch = watchMarker(tree, refresh);
  return () => {
    markerWatch.close();
    clearInterval(timer);
  };
}

/**
 * Makes the tree's temp dir (rsync `--temp-dir` of pushes and publishes
 * into this host), owned like the tree so the daemon can write to it after
 * dropping root; puts it back if someone removed it.
 */
async function ensureTempDir(tree: string): Promise<void> {
  const dir = `${tree}/${SERVER_TEMP_DIR}`;
  try {
    await Deno.lstat(dir);
    return;
  } catch { /* missing: make it */ }
  try {
    const st = await Deno.stat(tree);
    await Deno.mkdir(dir, { mode: 0o700 });
    if (Deno.uid() === 0 && st.uid !== null && st.gid !== null) {
      await Deno.chown(dir, st.uid, st.gid);
    }
  } catch { /* the tree is gone: the push guard reports it */ }
}

/**
 * Calls `changed` when the version marker at the root of `tree` changes. A
 * watch of the root alone (not recursive): one inotify watch, whatever the
 * tree's size.
 */
function watchMarker(tree: string, changed: () => Promise<void>): { close(): void } {
  let w: Deno.FsWatcher;
  try {
    w = Deno.watchFs(tree, { recursive: false });
  } catch {
    return { close() {} }; // the timer still refreshes
  }
  (async () => {
    try {
      for await (const ev of w) {
        if (ev.paths.some((p) => p.endsWith(`/${VERSION_MARKER}`))) await changed();
      }
    } catch { /* closed, or the tree went away: the timer still refreshes */ }
  })();
  return {
    close() {
      try {
        w.close();
      } catch { /* closed */ }
    },
  };
}

/** The watcher and the push engine of a host with downstream replicas. */
interface Relay {
  engine: PushEngine;
  watcher: TreeWatcher;
  stop(): Promise<void>;
}

/** Starts the watcher and the push engine (a first push of everything). */
async function startRelay(
  host: ServerSetup,
  registry: Registry,
  allowMassDelete: boolean,
): Promise<Relay> {
  const { fleet, self, downstreams, lg } = host;
  const workDir = `${self.stateDir}/push`;
  await ensureDir(workDir);
  const engine = new PushEngine({
    source: self.path,
    targets: downstreams.map((d) => ({
      name: d.name,
      url: formatRsyncUrl({ ...d.listen, module: fleet.modules.write, user: fleet.auth.user }),
    })),
    push: fleet.push,
    rsync: fleet.rsync,
    address: self.address,
    passwordFile: fleet.auth.passwordFile,
    workDir,
    log: lg,
    registry,
    allowMassDelete,
  });
  const watcher = new TreeWatcher({
    root: self.path,
    excludes: fleet.push.exclude,
    stormEvents: fleet.push.stormEvents,
    onChanges: (c) => engine.notify(c),
    onFull: (why) => engine.requestFull(why),
    log: lg,
    registry,
  });
  // Watch first, then push everything: nothing changed in between is lost.
  await watcher.start();
  engine.start();
  lg.info("watching", {
    root: self.path,
    mode: watcher.mode,
    backend: watcher.backend,
    setup_ms: Math.round(watcher.setupMs),
  });
  const poll = setInterval(() => {
    if (watcher.mode === "polling") engine.requestFull("no watcher: periodic full push");
  }, fleet.push.pollInterval);
  return {
    engine,
    watcher,
    async stop() {
      clearInterval(poll);
      await watcher.close();
      await engine.stop();
    },
  };
}

/** Degraded while the watcher is down: changes then wait for the next periodic whole push. */
function watchProblem(relay: Relay | null, pollInterval: number): string | null {
  if (relay?.watcher.mode !== "polling") return null;
  return `degraded: not watching the tree (${relay.watcher.lastError ?? "watcher unavailable"}); ` +
    `pushing the whole tree every ${formatDuration(pollInterval)} until the watcher is back`;
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
