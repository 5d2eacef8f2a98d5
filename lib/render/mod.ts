/**
 * `fanout render <kind>`: config files for the tools around fanout, derived
 * from the fleet file. Each kind lives in its own module (`<kind>.ts`) and
 * is loaded only when asked for; every rendered file starts with
 * `renderedBy` (lib/config), saying which fanout version and fleet file
 * produced it.
 *
 * @module
 */

import { type CommonOptions, fleetFor, type Role } from "../config/mod.ts";
import { ExitCode, FanoutError, VERSION } from "../core/mod.ts";
import type { Renderer } from "./input.ts";

export type { Renderer, RenderInput } from "./input.ts";

const RENDERERS: Record<string, () => Promise<Renderer>> = {
  rsyncd: async () => (await import("./rsyncd.ts")).renderRsyncd,
  nginx: async () => (await import("./nginx.ts")).renderNginx,
  haproxy: async () => (await import("./haproxy.ts")).renderHaproxy,
  systemd: async () => (await import("./systemd.ts")).renderSystemd,
  "post-receive": async () => (await import("./post_receive.ts")).renderPostReceive,
  cron: async () => (await import("./cron.ts")).renderCron,
  "report-token": async () => (await import("./report_token.ts")).renderReportToken,
};

/**
 * The renderer of `kind` (`nginx`, `cron`, …), loaded on first use.
 *
 * @throws {FanoutError} (usage) for a kind this fanout does not render.
 *
 * @example
 * ```ts
 * const render = await renderer("nginx");
 * console.log(await render({ fleet, opts }));
 * ```
 */
export async function renderer(kind: string): Promise<Renderer> {
  const load = RENDERERS[kind];
  if (!load) {
    throw new FanoutError(`render ${kind} is not built yet in fanout ${VERSION}`, ExitCode.Usage);
  }
  return await load();
}

/**
 * Prints the rendered file; returns the exit code.
 *
 * @throws {UsageError} when the kind needs a role that was not given, or
 * does not render for the role given.
 */
export async function renderCommand(
  what: string,
  opts: CommonOptions,
  role?: Role,
): Promise<number> {
  const render = await renderer(what);
  render.checkRole?.(role);
  const fleet = await fleetFor(opts, role);
  const text = await render({ fleet, role, opts });
  console.log(text.trimEnd());
  return 0;
}
