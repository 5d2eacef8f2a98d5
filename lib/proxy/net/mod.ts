/**
 * The proxy's byte movers: one interface, two engines (Deno streams, and
 * splice through epoll via FFI), and the choice between them.
 *
 * @module
 */

export { openProxyNet } from "./engine.ts";
export { type ProxyConn, type ProxyListener, type ProxyNet } from "./net.ts";
