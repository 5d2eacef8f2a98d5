/**
 * Where the proxy finds its backends: each server's read daemon (or its
 * PROXY-protocol twin) and health endpoint, as the fleet file places them.
 * The proxy dials them; the nginx and HAProxy renderers write them.
 *
 * @module
 */

import { type HostPort, isWildcard } from "../core/mod.ts";
import { findServer, type Fleet } from "./config.ts";

/** Where one backend is. */
export interface BackendSpec {
  name: string;
  /** Where the proxy connects: the read daemon, or its PROXY-protocol twin. */
  addr: HostPort;
  /** The server's health endpoint (for its tree version), or null. */
  health: HostPort | null;
}

/**
 * The backends of `fleet.proxy`, in rotation order. Wildcard listen addresses
 * are dialled at the server's `address`.
 *
 * @throws {Error} when the fleet has no proxy section (the role checks first).
 *
 * @example
 * ```ts
 * const specs = backendSpecs(fleet); // [{ name: "rsync1", addr: {…}, health: {…} }, …]
 * ```
 */
export function backendSpecs(fleet: Fleet): BackendSpec[] {
  if (!fleet.proxy) throw new Error("the fleet has no proxy section");
  return fleet.proxy.backends.map((name) => specOf(fleet, name));
}

/**
 * The primary, whose `/status` version is the reference no backend may claim
 * to be far past (see {@linkcode PoolOptions.reference}).
 *
 * @throws {Error} when the fleet has no proxy section (the role checks first).
 *
 * @example
 * ```ts
 * const ref = referenceSpec(fleet); // { name: "rsync1", addr: {…}, health: {…} }
 * ```
 */
export function referenceSpec(fleet: Fleet): BackendSpec {
  if (!fleet.proxy) throw new Error("the fleet has no proxy section");
  return specOf(fleet, fleet.primary.name);
}

function specOf(fleet: Fleet, name: string): BackendSpec {
  const proxy = fleet.proxy!;
  const s = findServer(fleet, name)!;
  const dial = (hp: HostPort) => (isWildcard(hp.host) ? { host: s.address, port: hp.port } : hp);
  return {
    name,
    addr: dial(proxy.proxyProtocol ? s.proxyListen : s.listen),
    health: dial(s.health),
  };
}
