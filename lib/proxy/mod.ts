/**
 * The version-aware TCP proxy: the backend pool with its health checks and
 * version routing, the long-polls that hear of the backends' new versions at
 * once, and the accept loop that balances client connections (holding each
 * client address to one backend for the affinity window).
 *
 * @module
 */

export { Backend, BackendPool, readStatusVersion } from "./backends.ts";
export { BackendNotices } from "./notices.ts";
export { TcpProxy } from "./proxy.ts";
