/**
 * The second rsync daemon of a server behind a PROXY-protocol proxy.
 *
 * rsyncd's `proxy protocol = yes` is a global setting: a daemon with it
 * refuses every connection that does not start with a PROXY header, pushes
 * from other servers included. So when `proxy.proxy_protocol` is on, each
 * backend server runs a second daemon on its `proxy_listen` address, with the
 * read module only and `proxy protocol = yes`; the proxy connects there, and
 * that daemon's logs and `hosts allow` see the real client. rsync 3.5 and
 * later also need the peers allowed to send that header listed in
 * `proxy protocol hosts` (without it they refuse every connection); older
 * ones do not know the parameter.
 *
 * @module
 */

import type { Fleet, ServerHost } from "../config/mod.ts";
import { ConfigError, isWildcard, type Logger } from "../core/mod.ts";
import {
  type DaemonIdentity,
  knowsProxyProtocolHosts,
  renderRsyncdConf,
  RsyncDaemon,
} from "./daemon.ts";
import type { VersionMarker } from "../version/mod.ts";

/**
 * The peers whose PROXY header the daemon behind the proxy trusts (rsync
 * 3.5's `proxy protocol hosts`): the proxy's address, and this host's own
 * `proxy_listen` IP, which its readiness probe leaves from. A connection to
 * a loopback or wildcard address leaves from the loopback's own source
 * (127.0.0.1 or ::1, the kernel's choice), so that one is listed too.
 *
 * @throws {ConfigError} when the proxy's address is unknown (a wildcard
 * `proxy.listen` and no `proxy.address`): such a daemon would refuse the proxy.
 *
 * @example
 * ```ts
 * proxyProtocolPeers(fleet, fleet.replicas[0]); // ["10.0.0.9", "10.0.0.3"]
 * ```
 */
export function proxyProtocolPeers(fleet: Fleet, self: ServerHost): string[] {
  const proxy = fleet.proxy;
  const proxyIp = proxy?.address ??
    (proxy && !isWildcard(proxy.listen.host) ? proxy.listen.host : null);
  if (!proxyIp) {
    throw new ConfigError(fleet.file ?? "flags", [{
      path: "proxy.address",
      message: "missing: with proxy.proxy_protocol and rsync 3.5 or newer, each server's " +
        "second daemon trusts PROXY headers only from the proxy's IP: set proxy.address " +
        "(or a specific proxy.listen IP)",
    }]);
  }
  const peers = [proxyIp];
  const own = self.proxyListen.host;
  if (!isWildcard(own)) peers.push(own);
  for (const ip of [proxyIp, own]) {
    const v6 = ip.includes(":");
    if (isWildcard(ip) || isLoopback(ip)) peers.push(v6 ? "::1" : "127.0.0.1");
  }
  return [...new Set(peers)];
}

function isLoopback(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1";
}

/**
 * The rsyncd.conf of the daemon behind the proxy: read module only,
 * `proxy protocol = yes`, and, for an rsync that knows it (3.5+),
 * `proxy protocol hosts` listing {@linkcode proxyProtocolPeers}.
 *
 * @throws {ConfigError} see {@linkcode proxyProtocolPeers} (rsync 3.5+ only).
 *
 * @example
 * ```ts
 * const text = renderProxiedConf(fleet, self, id, { rsyncVersion: "3.5.0", stateDir });
 * ```
 */
export function renderProxiedConf(
  fleet: Fleet,
  self: ServerHost,
  id: DaemonIdentity,
  opts: { rsyncVersion: string; stateDir: string; version?: VersionMarker | null },
): string {
  return renderRsyncdConf(fleet, self, id, {
    proxyProtocol: true,
    proxyProtocolHosts: knowsProxyProtocolHosts(opts.rsyncVersion)
      ? proxyProtocolPeers(fleet, self)
      : [],
    listen: self.proxyListen,
    readOnly: true,
    stateDir: opts.stateDir,
    version: opts.version,
  });
}

/**
 * The daemon behind the proxy for `self`, with its rsyncd.conf written under
 * `<state dir>/proxied/`; null when this host needs none (no PROXY protocol,
 * or not a backend of the proxy). Not started: call `start()` and `stop()`.
 * `rsyncVersion` is the installed rsync's (`requireRsync` in lib/rsync/rsync.ts).
 *
 * @throws {ConfigError} see {@linkcode proxyProtocolPeers} (rsync 3.5+ only).
 *
 * @example
 * ```ts
 * const proxied = await proxiedDaemon(fleet, self, id, log, { rsyncVersion: "3.5.0" });
 * await proxied?.start();
 * ```
 */
export async function proxiedDaemon(
  fleet: Fleet,
  self: ServerHost,
  id: DaemonIdentity,
  log: Logger,
  opts: { rsyncVersion: string; version?: VersionMarker | null },
): Promise<RsyncDaemon | null> {
  const proxy = fleet.proxy;
  if (!proxy?.proxyProtocol || !proxy.backends.includes(self.name)) return null;
  const stateDir = `${self.stateDir}/proxied`;
  const render = (version: VersionMarker | null) =>
    renderProxiedConf(fleet, self, id, { rsyncVersion: opts.rsyncVersion, stateDir, version });
  // Rendered before anything is written: a missing proxy address stops the start.
  const text = render(opts.version ?? null);
  await Deno.mkdir(stateDir, { recursive: true });
  const confPath = `${stateDir}/rsyncd.conf`;
  await Deno.writeTextFile(confPath, text);
  return new RsyncDaemon({
    rsync: fleet.rsync.path,
    confPath,
    listen: self.proxyListen,
    stateDir,
    proxyProtocol: true,
    log: log.child({ daemon: "proxied" }),
    render,
  });
}

/**
 * What is wrong with the daemon behind the proxy, for `/healthz`; null when
 * it is up or there is none.
 *
 * @example
 * ```ts
 * proxiedProblem(proxied); // "proxied rsync daemon down: exited with code 10: …"
 * ```
 */
export function proxiedProblem(d: RsyncDaemon | null): string | null {
  if (!d || d.state === "up") return null;
  return `proxied rsync daemon ${d.state}${d.lastError ? `: ${d.lastError}` : ""}`;
}
