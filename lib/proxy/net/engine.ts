/**
 * Opens the proxy's socket engine the fleet file asks for (the interface is
 * lib/proxy/net/net.ts; the engines lib/proxy/net/ffi.ts and lib/proxy/net/deno.ts).
 *
 * @module
 */

import { EnvironmentError } from "../../core/mod.ts";
import { denoNet } from "./deno.ts";
import { openFfiNet } from "./ffi.ts";
import type { ProxyNet } from "./net.ts";

/** Which engine the fleet file asks for. */
export type ProxyEngine = "auto" | "copy" | "splice" | "deno";

/**
 * Opens the engine asked for. `auto` falls back to `deno`, returning why in
 * `fallback`; `copy` or `splice` where FFI cannot work throws.
 *
 * @throws {EnvironmentError} when a native engine is asked for and cannot be used here.
 *
 * @example
 * ```ts
 * const { net, fallback } = openProxyNet("auto");
 * if (fallback) log.warn("proxy engine: deno", { why: fallback });
 * const listener = await net.listen({ host: "0.0.0.0", port: 873 });
 * ```
 */
export function openProxyNet(engine: ProxyEngine): { net: ProxyNet; fallback: string | null } {
  if (engine === "deno") return { net: denoNet(), fallback: null };
  const got = openFfiNet(engine === "auto" ? "copy" : engine);
  if (typeof got !== "string") return { net: got, fallback: null };
  if (engine !== "auto") throw new EnvironmentError(`proxy.engine is ${engine}, but ${got}`);
  return { net: denoNet(), fallback: got };
}
