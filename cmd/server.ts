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
  sweepTemps,
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
import { parsePublicKey, UNSIGNED_WARNING } from "../lib/release/mod.ts";
import { ensureTempDir, guardTree, type TreeGuard, watchMarker } from "../lib/vouch/mod.ts";
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
  // What a killed server left mid-write.
  for (const dir of [self.stateDir, `${self.stateDir}/vouch`]) await sweepTemps(dir);
  const daemons = await makeDaemons(host, null);
  const tree = treeOf(host, daemons);
  const registry = serverRegistry(daemons.daemon, tree.guard);
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
    const relay = await startWatching(host, registry, tree, opts.allowMassDelete, onStop);
    if (relay) fleetView?.setReplicaSource(() => relay.engine.status());
    const health = startHealth(
      self.health,
      {
        role: kind,
        name: self.name,
        registry,
        versions: tree.board,
        problem: () => serverProblem(host, daemons, relay, tree),
        status: () => serverStatus(host, daemons, relay, tree),
      },
      fleetView?.routes,
    );
    onStop(() => health.shutdown());
    tree.guard.start();
    const marker = watchMarker(self.path, () => tree.guard.markerChanged());
    onStop(() => marker.close());
    onStop(() => tree.guard.stop());
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
 * The tree's guard, which decides the version announced, the board that
 * tells `/version` of it, and the watcher of the tree once started (a
 * relay's, or a signed replica's own; null before and on an unsigned leaf).
 */
interface Tree {
  guard: TreeGuard;
  board: VersionBoard;
  watcher: TreeWatcher | null;
}

/**
 * The tree's guard, announcing to the daemons (the module comment) and
 * then to `/version`: a client that hears of a version reads the module
 * comment next, so that is rewritten first.
 */
function treeOf(host: ServerSetup, daemons: Daemons): Tree {
  const { fleet, self, lg } = host;
  const board = new VersionBoard(null);
  const source = upstreamSource(fleet, self);
  const guard = guardTree({
    root: self.path,
    stateDir: `${self.stateDir}/vouch`,
    trusted: fleet.release.publicKeys.map(parsePublicKey),
    excludes: fleet.push.exclude,
    upstream: source === null ? null : { source, name: self.upstream },
    rsync: fleet.rsync,
    address: self.address,
    watched: () => tree.watcher?.mode === "events",
    reconcileMs: fleet.push.reconcile,
    pollMs: fleet.push.pollInterval,
    announce: async (version) => {
      await daemons.daemon.setVersion(version);
      await daemons.proxied?.setVersion(version);
      board.announce(version);
    },
    log: lg,
  });
  const tree: Tree = { guard, board, watcher: null };
  return tree;
}

/**
 * Starts what watches the tree: on a host with downstream replicas the
 * watcher and the push engine (returned), on a signed replica a watcher
 * for its own checks alone; nothing on an unsigned leaf replica.
 */
async function startWatching(
  host: ServerSetup,
  registry: Registry,
  tree: Tree,
  allowMassDelete: boolean,
  onStop: (stop: () => Promise<void> | void) => void,
): Promise<Relay | null> {
  if (host.downstreams.length > 0) {
    const relay = await startRelay(host, registry, allowMassDelete, tree.guard);
    onStop(() => relay.stop());
    tree.watcher = relay.watcher;
    return relay;
  }
  if (host.fleet.release.publicKeys.length > 0) {
    // Signed, a replica watches its tree too: what changes under its marker is checked.
    const watcher = await startWatcher(host, registry, tree.guard, null);
    onStop(() => watcher.close());
    tree.watcher = watcher;
  }
  return null;
}

/** The upstream's read module, which a replica repairs its tree from; null for the primary. */
function upstreamSource(fleet: Fleet, self: ServerHost): string | null {
  const up = [fleet.primary, ...fleet.replicas].find((s) => s.name === self.upstream);
  return up ? formatRsyncUrl({ ...up.listen, module: fleet.modules.read }) : null;
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
function serverRegistry(daemon: RsyncDaemon, guard: TreeGuard): Registry {
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
    () => [[{}, guard.version?.seq ?? -1]],
  );
  return registry;
}

/** Why the host is not healthy, or null. */
function serverProblem(
  host: ServerSetup,
  daemons: Daemons,
  relay: Relay | null,
  tree: Tree,
): string | null {
  return daemonProblem(daemons.daemon) ?? proxiedProblem(daemons.proxied) ??
    tree.guard.problem() ?? relay?.engine.problem() ??
    watchProblem(relay, host.fleet.push.pollInterval);
}

/** The role's fields of `/status`; reads, changes nothing. */
function serverStatus(
  host: ServerSetup,
  daemons: Daemons,
  relay: Relay | null,
  tree: Tree,
): Record<string, unknown> {
  const { fleet, self } = host;
  const { daemon, proxied } = daemons;
  return {
    tree: {
      path: self.path,
      version: tree.guard.version,
      marker: readMarker(self.path),
      check: tree.guard.checkStatus(),
    },
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
    watch: tree.watcher
      ? {
        mode: tree.watcher.mode,
        backend: tree.watcher.backend,
        dirs: tree.watcher.dirs,
        setup_ms: Math.round(tree.watcher.setupMs),
      }
      : null,
    push_guard: relay?.engine.guardStatus() ?? null,
    replicas: relay?.engine.status() ?? [],
  };
}

/** The watcher and the push engine of a host with downstream replicas. */
interface Relay {
  engine: PushEngine;
  watcher: TreeWatcher;
  stop(): Promise<void>;
}

/**
 * Starts the watcher of the tree, which tells the push engine (on a host
 * with downstream replicas) and the tree's guard what changed.
 */
async function startWatcher(
  host: ServerSetup,
  registry: Registry,
  guard: TreeGuard,
  engine: PushEngine | null,
): Promise<TreeWatcher> {
  const { fleet, self, lg } = host;
  const watcher = new TreeWatcher({
    root: self.path,
    excludes: fleet.push.exclude,
    stormEvents: fleet.push.stormEvents,
    onChanges: (c) => {
      engine?.notify(c);
      guard.changed(c);
    },
    onFull: (why) => {
      engine?.requestFull(why);
      guard.lost();
    },
    onTempNamed: (c) => guard.changed(c),
    onLost: () => guard.lost(),
    log: lg,
    registry,
  });
  await watcher.start();
  lg.info("watching", {
    root: self.path,
    mode: watcher.mode,
    backend: watcher.backend,
    setup_ms: Math.round(watcher.setupMs),
  });
  return watcher;
}

/** Starts the watcher and the push engine (a first push of everything). */
async function startRelay(
  host: ServerSetup,
  registry: Registry,
  allowMassDelete: boolean,
  guard: TreeGuard,
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
  // Watch first, then push everything: nothing changed in between is lost.
  const watcher = await startWatcher(host, registry, guard, engine);
  engine.start();
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
