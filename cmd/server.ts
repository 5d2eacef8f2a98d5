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
import { readMarker, sameVersion, type VersionMarker } from "../lib/version/mod.ts";
import { parsePublicKey, UNSIGNED_WARNING } from "../lib/release/mod.ts";
import { ensureTempDir, repairFrom, RepairPace, type Vouch, Voucher } from "../lib/vouch/mod.ts";
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
  const tree = treeVersionOf(host);
  const daemons = await makeDaemons(host, null);
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
    onStop(followMarker(self.path, () => refreshVersion(host, daemons, tree), lg));
    onStop(() => tree.repair.stop.abort());
    onStop(() => tree.voucher.settled());
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
 * `/version` tells watching clients: the one the voucher vouches for;
 * {@linkcode refreshVersion} is its one writer.
 */
interface TreeVersion {
  current: VersionMarker | null;
  board: VersionBoard;
  voucher: Voucher;
  /** Whether a watcher reports every change of the tree now. */
  watched: () => boolean;
  /** When the tree is next checked whole, whatever its marker says (ms since the epoch). */
  fullCheckAt: number;
  /** The watcher of the tree, once started (a relay's, or a signed replica's own); null before. */
  watcher: TreeWatcher | null;
  /**
   * Where the tree is repaired from (null on the primary), how often, whether
   * now, since when the tree has been refused, and the stop of a repair.
   */
  repair: {
    source: string | null;
    pace: RepairPace;
    running: boolean;
    refusedSince: number | null;
    stop: AbortController;
  };
}

/** The tree's version before its first check: nothing announced, a voucher ready. */
function treeVersionOf(host: ServerSetup): TreeVersion {
  const { fleet, self } = host;
  const watched = () => tree.watcher?.mode === "events";
  const tree: TreeVersion = {
    current: null,
    board: new VersionBoard(null),
    voucher: new Voucher({
      root: self.path,
      stateDir: `${self.stateDir}/vouch`,
      trusted: fleet.release.publicKeys.map(parsePublicKey),
      excludes: fleet.push.exclude,
      watched,
    }),
    watched,
    fullCheckAt: 0,
    watcher: null,
    repair: {
      source: upstreamSource(fleet, self),
      pace: new RepairPace(),
      running: false,
      refusedSince: null,
      stop: new AbortController(),
    },
  };
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
  tree: TreeVersion,
  allowMassDelete: boolean,
  onStop: (stop: () => Promise<void> | void) => void,
): Promise<Relay | null> {
  if (host.downstreams.length > 0) {
    const relay = await startRelay(host, registry, allowMassDelete, tree.voucher);
    onStop(() => relay.stop());
    tree.watcher = relay.watcher;
    return relay;
  }
  if (host.fleet.release.publicKeys.length > 0) {
    // Signed, a replica watches its tree too: what changes under its marker is checked.
    const watcher = await startWatcher(host, registry, tree.voucher, null);
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
function serverProblem(
  host: ServerSetup,
  daemons: Daemons,
  relay: Relay | null,
  tree: TreeVersion,
): string | null {
  return daemonProblem(daemons.daemon) ?? proxiedProblem(daemons.proxied) ??
    vouchProblem(tree.voucher.last) ?? relay?.engine.problem() ??
    watchProblem(relay, host.fleet.push.pollInterval);
}

/** Unhealthy while the tree is not the version its marker names: it announces none. */
function vouchProblem(v: Vouch | null): string | null {
  if (v?.state !== "refused") return null;
  return `announcing no version: ${v.why}`;
}

/** The role's fields of `/status`; reads, changes nothing. */
function serverStatus(
  host: ServerSetup,
  daemons: Daemons,
  relay: Relay | null,
  tree: TreeVersion,
): Record<string, unknown> {
  const { fleet, self } = host;
  const { daemon, proxied } = daemons;
  return {
    tree: {
      path: self.path,
      version: tree.current,
      marker: readMarker(self.path),
      check: checkStatus(tree.voucher.last),
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

/** What `/status` says of the last check of the tree. */
function checkStatus(v: Vouch | null): Record<string, unknown> | null {
  if (v === null) return { state: "pending" };
  switch (v.state) {
    case "verified":
      return { state: v.state, by: v.by, hashed: v.hashed };
    case "unchecked":
      return { state: v.state, why: v.why };
    case "refused":
      return { state: v.state, why: v.why, path: v.path };
  }
}

/**
 * Checks the tree's version again and hands the version it holds to the
 * daemons (the module comment) and the metrics, then to `/version`: a
 * client that hears of it reads the module comment next, so that is
 * rewritten first. A marker the tree does not hold announces no version.
 * Puts back a temp dir removed or replaced (a symlink is never written through).
 */
async function refreshVersion(
  host: ServerSetup,
  daemons: Daemons,
  version: TreeVersion,
): Promise<void> {
  await ensureTempDir(host.self.path);
  const first = version.voucher.last === null;
  const v = await checkTree(host, version);
  if (refusedFor(version, v) >= REFUSED_RECHECK_MS) repairSoon(host, daemons, version);
  const held = v.state === "refused" ? null : v.marker;
  if (sameVersion(held, version.current) && !first) return;
  version.current = held;
  await daemons.daemon.setVersion(version.current);
  await daemons.proxied?.setVersion(version.current);
  version.board.announce(version.current);
}

/** How often a tree refused is checked whole again, and how long a refusal lasts before a repair. */
const REFUSED_RECHECK_MS = 5_000;

/**
 * The voucher's check: whole every `push.reconcile`, every
 * `push.poll_interval` while no watcher reports changes (nothing else
 * would see an edit under the marker; the push engine pushes whole as
 * often then), and every {@linkcode REFUSED_RECHECK_MS} while refused (a
 * repair seldom changes the marker); else only when the marker changed.
 * Logs a change of verdict.
 */
async function checkTree(host: ServerSetup, version: TreeVersion): Promise<Vouch> {
  const now = Date.now();
  const whole = now >= version.fullCheckAt;
  const before = version.voucher.last;
  const v = await version.voucher.check(whole);
  if (whole) {
    version.fullCheckAt = now + wholeCheckEvery(host, version, v);
  }
  if (v.state === "refused" && before?.state !== "refused") {
    host.lg.warn("announcing no version: the tree is not the version its marker names", {
      why: v.why,
      path: v.path ?? undefined,
    });
  } else if (v.state !== "refused" && before?.state === "refused") {
    host.lg.info("the tree holds its version again", { seq: v.marker?.seq });
  }
  return v;
}

/** How long after a whole check that found `v` the next one is made (ms). */
function wholeCheckEvery(host: ServerSetup, version: TreeVersion, v: Vouch): number {
  if (v.state === "refused") return REFUSED_RECHECK_MS;
  const { reconcile, pollInterval } = host.fleet.push;
  return version.watched() ? reconcile : Math.min(pollInterval, reconcile);
}

/**
 * How long the tree has been refused (ms; 0 when it is not): a push or
 * publish landing can leave it so for a moment, which is no reason to repair.
 */
function refusedFor(version: TreeVersion, v: Vouch): number {
  const r = version.repair;
  r.refusedSince = v.state === "refused" ? r.refusedSince ?? Date.now() : null;
  if (r.refusedSince === null) r.pace.held(Date.now());
  return r.refusedSince === null ? 0 : Date.now() - r.refusedSince;
}

/**
 * Repairs a refused tree from upstream in the background (stopped with the
 * server), at the pace of {@linkcode RepairPace}; checks it whole after.
 */
function repairSoon(host: ServerSetup, daemons: Daemons, version: TreeVersion): void {
  const r = version.repair;
  if (r.source === null || r.running || r.stop.signal.aborted) return;
  if (!r.pace.start(Date.now())) return;
  const { self, fleet, lg } = host;
  r.running = true;
  lg.info("repairing the tree from upstream", { upstream: self.upstream });
  repairFrom({
    source: r.source,
    root: self.path,
    excludes: fleet.push.exclude,
    rsync: fleet.rsync,
    address: self.address,
    signal: r.stop.signal,
  }).then((failed) => {
    if (failed && !r.stop.signal.aborted) lg.warn("repair from upstream failed", { error: failed });
  }).finally(() => {
    r.running = false;
    version.fullCheckAt = 0;
    if (!r.stop.signal.aborted) refreshVersion(host, daemons, version).catch(() => {});
  });
}

/**
 * Calls `refresh` when a push lands (the marker changes), so /status,
 * /metrics and the module comment follow at once: on a watch of the tree's
 * root, with a timer in case an event is missed. Returns the stop.
 */
function followMarker(tree: string, refresh: () => Promise<void>, lg: Logger): () => void {
  const run = () =>
    refresh().catch((e) => lg.warn("version not refreshed", { error: (e as Error).message }));
  run();
  const timer = setInterval(run, 1000);
  const markerWatch = watchMarker(tree, run);
  return () => {
    markerWatch.close();
    clearInterval(timer);
  };
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

/**
 * Starts the watcher of the tree, which tells the push engine (on a host
 * with downstream replicas) and the voucher what changed.
 */
async function startWatcher(
  host: ServerSetup,
  registry: Registry,
  voucher: Voucher,
  engine: PushEngine | null,
): Promise<TreeWatcher> {
  const { fleet, self, lg } = host;
  const watcher = new TreeWatcher({
    root: self.path,
    excludes: fleet.push.exclude,
    stormEvents: fleet.push.stormEvents,
    onChanges: (c) => {
      engine?.notify(c);
      voucher.changed(c);
    },
    onFull: (why) => {
      engine?.requestFull(why);
      voucher.lost();
    },
    onTempNamed: (c) => voucher.changed(c),
    onLost: () => voucher.lost(),
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
  voucher: Voucher,
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
  const watcher = await startWatcher(host, registry, voucher, engine);
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
