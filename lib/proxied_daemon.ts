/**
 * The second rsync daemon of a server behind a PROXY-protocol proxy.
 *
 * rsyncd's `proxy protocol = yes` is a global setting: a daemon with it
 * refuses every connection that does not start with a PROXY header, pushes
 * from other servers included. So when `proxy.proxy_protocol` is on, each
 * backend server runs a second daemon on its `proxy_listen` address, with the
 * read module only and `proxy protocol = yes`; the proxy connects there, and
 * that daemon's logs and `hosts allow` see the real client.
 *
 * @module
 */

import type { Fleet, ServerHost } from "./config.ts";
import type { Logger } from "./log.ts";
import { type DaemonIdentity, renderRsyncdConf, RsyncDaemon } from "./rsync_daemon.ts";
import type { VersionMarker } from "./version.ts";

/**
 * The daemon behind the proxy for `self`, with its rsyncd.conf written under
 * `<state dir>/proxied/`; null when this host needs none (no PROXY protocol,
 * or not a backend of the proxy). Not started: call `start()` and `stop()`.
 *
 * @example
 * ```ts
 * const proxied = await proxiedDaemon(fleet, self, id, log);
 * await proxied?.start();
 * ```
 */
export async function proxiedDaemon(
  fleet: Fleet,
  self: ServerHost,
  id: DaemonIdentity,
  log: Logger,
  version: VersionMarker | null = null,
): Promise<RsyncDaemon | null> {
  const proxy = fleet.proxy;
  if (!proxy?.proxyProtocol || !proxy.backends.includes(self.name)) return null;
  const stateDir = `${self.stateDir}/proxied`;
  await Deno.mkdir(stateDir, { recursive: true });
  const confPath = `${stateDir}/rsyncd.conf`;
  const render = (version: VersionMarker | null) =>
    renderRsyncdConf(fleet, self, id, {
      proxyProtocol: true,
      listen: self.proxyListen,
      readOnly: true,
      stateDir,
      version,
    });
  await Deno.writeTextFile(confPath, render(version));
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
