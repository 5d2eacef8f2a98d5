/**
 * The proxy's byte movers: one interface, three engines (`copy` and `splice`
 * on FFI sockets and an epoll loop, `deno` on Deno's sockets), and the
 * choice between them.
 *
 * @module
 */

export { openProxyNet } from "./engine.ts";
export { type ProxyConn, type ProxyListener, type ProxyNet } from "./net.ts";
