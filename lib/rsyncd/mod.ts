/**
 * The rsync daemons a server renders and supervises: the daemon of the read
 * and write modules, and its PROXY-protocol twin behind the proxy; their
 * rsyncd.conf, start, restart and version comment.
 *
 * @module
 */

export {
  type DaemonIdentity,
  daemonIdentity,
  knowsProxyProtocolHosts,
  renderRsyncdConf,
  RsyncDaemon,
} from "./daemon.ts";
export {
  proxiedDaemon,
  proxiedProblem,
  proxyProtocolPeers,
  renderProxiedConf,
} from "./proxied_daemon.ts";
