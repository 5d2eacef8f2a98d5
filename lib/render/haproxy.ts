/**
 * `fanout render haproxy`: a HAProxy `mode tcp` config that balances the
 * fleet's rsync servers as `fanout --role proxy` does (one server per client address, active
 * checks that read the `@RSYNCD:` greeting and the module list, fall/rise,
 * redispatch on a failed connect, idle timeout, connection limit, optional
 * PROXY protocol), for operators who prefer HAProxy.
 *
 * @module
 */

import template from "./templates/haproxy.cfg" with { type: "text" };
import type { RenderInput } from "./input.ts";
import { renderTemplate } from "../core/mod.ts";
import { lbView, proxyOf } from "./_lb.ts";

/**
 * Renders a complete haproxy.cfg for a dedicated HAProxy instance.
 *
 * @throws {ConfigError} when the fleet file has no proxy section.
 *
 * @example
 * ```ts
 * const text = renderHaproxy({ fleet, opts });
 * ```
 */
export function renderHaproxy(input: RenderInput): string {
  const proxy = proxyOf(input, "haproxy");
  // HAProxy splits host and port at the last colon, IPv6 included.
  const view = lbView(input, proxy, (h, p) => `${h}:${p}`);
  return renderTemplate(template, {
    ...view,
    global_maxconn: proxy.maxConnections * 2 + 64,
    retries: Math.max(1, proxy.backends.length - 1),
    module_re: input.fleet.modules.read.replaceAll(".", "\\."),
  });
}
