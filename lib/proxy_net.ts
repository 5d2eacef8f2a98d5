/**
 * The socket layer under the proxy, as an interface with two engines:
 *
 * - `splice` (lib/splice_net.ts): sockets opened through FFI and bytes moved
 *   kernel-to-kernel with splice(2), never copied into the process. Linux only,
 *   needs `--allow-ffi`.
 * - `copy` (lib/copy_net.ts): `Deno.TcpConn` read/write loops with reused
 *   buffers. Works everywhere.
 *
 * `auto` (the default) takes splice when it can and says why when it cannot.
 *
 * @module
 */

import type { HostPort } from "./address.ts";
import { EnvironmentError } from "./errors.ts";
import { copyNet } from "./copy_net.ts";
import { openSpliceNet } from "./splice_net.ts";

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
  readonly engine: "splice" | "copy";
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

/** Which engine the fleet file asks for. */
export type ProxyEngine = "auto" | "splice" | "copy";

/**
 * Opens the engine asked for. `auto` falls back to `copy`, returning why in
 * `fallback`; `splice` where splice cannot work throws.
 *
 * @throws {EnvironmentError} when `splice` is asked for and cannot be used here.
 */
export function openProxyNet(engine: ProxyEngine): { net: ProxyNet; fallback: string | null } {
  if (engine === "copy") return { net: copyNet(), fallback: null };
  const got = openSpliceNet();
  if (typeof got !== "string") return { net: got, fallback: null };
  if (engine === "splice") throw new EnvironmentError(`proxy.engine is splice, but ${got}`);
  return { net: copyNet(), fallback: got };
}
