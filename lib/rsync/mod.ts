/**
 * rsync, run and read: the client invocation and its itemized output, the
 * version probe, and the daemons fanout renders and supervises (the read
 * daemon and its PROXY-protocol twin).
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
export { classifyItems, type Itemized, type ItemizedEntry, unescapeName } from "./itemize.ts";
export { describeConnectError, PROBE_MAX_BYTES, probeRsyncd } from "./probe.ts";
export {
  proxiedDaemon,
  proxiedProblem,
  proxyProtocolPeers,
  renderProxiedConf,
} from "./proxied_daemon.ts";
export { PROXY_V1_UNKNOWN, proxyV1Header } from "./proxy_protocol.ts";
export {
  describeRsyncFailure,
  requireRsync,
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  type RsyncStats,
  runRsync,
  writeFileList,
} from "./rsync.ts";
