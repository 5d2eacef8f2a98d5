/**
 * `fanout render <kind>`: config files for the tools around fanout, derived
 * from the fleet file. Each kind lives in its own module (`render_<kind>.ts`)
 * and is loaded only when asked for; every rendered file starts with
 * `renderedBy` (lib/render_input.ts), saying which fanout version and fleet file produced it.
 *
 * @module
 */

import type { CommonOptions, Role } from "../config/options.ts";
import { ExitCode, FanoutError } from "../core/errors.ts";
import { fleetFor } from "../config/fleet_load.ts";
import type { Renderer } from "./input.ts";
import { VERSION } from "../core/meta.ts";

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
  const load = RENDERERS[what];
  if (!load) {
    throw new FanoutError(`render ${what} is not built yet in fanout ${VERSION}`, ExitCode.Usage);
  }
  const render = await load();
  render.checkRole?.(role);
  const fleet = await fleetFor(opts, role);
  const text = await render({ fleet, role, opts });
  console.log(text.trimEnd());
  return 0;
}
