/**
 * `fanout render nginx`: an nginx `stream` config that balances the fleet's
 * rsync servers as `fanout --role proxy` does (one server per client address, passive failure
 * marking, retry on the next server, idle timeout, connection limit, optional
 * PROXY protocol), for operators who prefer nginx.
 *
 * @module
 */

import template from "./templates/nginx.conf" with { type: "text" };
import type { RenderInput } from "./input.ts";
import { renderTemplate } from "../core/mod.ts";
import { lbDuration, lbView, proxyOf } from "./_lb.ts";

/**
 * Renders a complete nginx.conf for a dedicated nginx instance.
 *
 * @throws {ConfigError} when the fleet file has no proxy section.
 *
 * @example
 * ```ts
 * const text = renderNginx({ fleet, opts });
 * ```
 */
export function renderNginx(input: RenderInput): string {
  const proxy = proxyOf(input, "nginx");
  const view = lbView(
    input,
    proxy,
    (h, p) => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`),
  );
  return renderTemplate(template, {
    ...view,
    // Each client takes two connections (its own and the upstream one).
    worker_connections: Math.max(1024, proxy.maxConnections * 2 + 64),
    nofile: Math.max(4096, proxy.maxConnections * 4 + 256),
    // nginx forgets failures after fail_timeout; a check interval is fanout's equivalent.
    fail_timeout: lbDuration(Math.max(1000, proxy.interval)),
  });
}
