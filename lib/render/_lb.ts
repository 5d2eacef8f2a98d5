// What the nginx and HAProxy renderers share: the proxy section as a view.
import type { RenderInput } from "./input.ts";
import { backendSpecs, type ProxyConfig, renderedBy } from "../config/mod.ts";
import { ConfigError } from "../core/mod.ts";

/** The proxy section, or a ConfigError saying the kind needs one. */
export function proxyOf({ fleet }: RenderInput, kind: string): ProxyConfig {
  if (!fleet.proxy) {
    throw new ConfigError(fleet.file ?? "flags", [{
      path: "proxy",
      message:
        `missing: render ${kind} needs a proxy section (listen, backends) to say what to balance`,
    }]);
  }
  return fleet.proxy;
}

/** A duration both nginx and HAProxy read: whole seconds when exact, else ms. */
export function lbDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** View keys both templates use. */
export function lbView(
  input: RenderInput,
  proxy: ProxyConfig,
  hostPort: (h: string, p: number) => string,
) {
  return {
    rendered_by: renderedBy(input.fleet, "#"),
    module: input.fleet.modules.read,
    listen: hostPort(proxy.listen.host, proxy.listen.port),
    servers: backendSpecs(input.fleet).map((b) => ({
      name: b.name,
      addr: hostPort(b.addr.host, b.addr.port),
    })),
    fall: proxy.fall,
    rise: proxy.rise,
    interval: lbDuration(proxy.interval),
    connect_timeout: lbDuration(proxy.checkTimeout),
    check_timeout: lbDuration(proxy.checkTimeout),
    idle_timeout: lbDuration(proxy.idleTimeout),
    max_connections: proxy.maxConnections,
    proxy_protocol: proxy.proxyProtocol,
    tries: proxy.backends.length,
  };
}
