/**
 * The socket layer under the proxy, as an interface with three engines
 * (opened by lib/proxy/net/engine.ts):
 *
 * - `copy` and `splice` (lib/proxy/net/ffi.ts): sockets opened through FFI, one
 *   epoll loop, bytes moved with read(2)/write(2) through a buffer, or with
 *   splice(2) through a pipe. Linux only, needs `--allow-ffi`.
 * - `deno` (lib/proxy/net/deno.ts): `Deno.TcpConn` read/write loops. Works
 *   everywhere, at more CPU per byte (docs/benchmarks.md).
 *
 * `auto` (the default) takes `copy` when it can and `deno` otherwise, saying why.
 *
 * @module
 */

import type { HostPort } from "../../core/mod.ts";

/** A connected TCP socket, as the proxy uses it outside the byte relay. */
export interface ProxyConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  setNoDelay(noDelay?: boolean): void;
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  /** Closes the socket; idempotent, and ends a relay running on it. */
  close(): void;
}

/** A listening socket. */
export interface ProxyListener {
  readonly addr: Deno.NetAddr;
  /** @throws {Deno.errors.BadResource} once closed. */
  accept(): Promise<ProxyConn>;
  close(): void;
}

/** What a relay reports as bytes move: `toBackend` is the client → backend direction. */
export type ByteCounter = (toBackend: boolean, n: number) => void;

/** An engine: how the proxy listens, dials and relays. */
export interface ProxyNet {
  readonly engine: "copy" | "splice" | "deno";
  /**
   * @throws {Deno.errors.AddrInUse | Deno.errors.AddrNotAvailable} and other
   * `Deno.errors` when the address cannot be bound.
   */
  listen(at: HostPort): Promise<ProxyListener>;
  /**
   * @throws {Deno.errors.TimedOut} after `ms`;
   * {@linkcode Deno.errors.ConnectionRefused} when nothing listens.
   */
  connect(at: HostPort, ms: number): Promise<ProxyConn>;
  /**
   * Moves bytes both ways until both sides have finished (each EOF passed on
   * as a half-close) or either fails (then both are closed). Never throws.
   */
  relay(client: ProxyConn, upstream: ProxyConn, count: ByteCounter): Promise<void>;
  /** Releases what the engine holds; call after every socket is closed. */
  close(): Promise<void>;
}
