/**
 * The version-aware TCP proxy: the backend pool with its health checks and
 * version routing, and the accept loop that balances client connections.
 *
 * @module
 */

export { Backend, BackendPool, readStatusVersion } from "./backends.ts";
export { TcpProxy } from "./proxy.ts";
