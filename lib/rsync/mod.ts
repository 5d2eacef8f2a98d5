/**
 * rsync, run and read: the invocation every role makes and its itemized
 * output, the version probe, the PROXY protocol header. The daemons a
 * server supervises are lib/rsyncd's, so a client never loads them.
 *
 * @module
 */

export { classifyItems, type Itemized, type ItemizedEntry, unescapeName } from "./itemize.ts";
export { describeConnectError, listedVersion, PROBE_MAX_BYTES, probeRsyncd } from "./probe.ts";
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
