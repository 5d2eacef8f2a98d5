/**
 * `fanout render <kind>`: config files for the tools around fanout, derived
 * from the fleet file. Each kind lives in its own module (`render_<kind>.ts`)
 * and is loaded only when asked for; every rendered file starts with
 * {@linkcode renderedBy}, saying which fanout version and fleet file produced it.
 *
 * @module
 */

import type { CommonOptions, Role } from "./cli.ts";
import type { Fleet } from "./config.ts";
import { ExitCode, FanoutError } from "./errors.ts";
import { fleetFor } from "../roles/_fleet.ts";
import { VERSION } from "./meta.ts";

/** What every renderer gets. */
export interface RenderInput {
  fleet: Fleet;
  role?: Role;
  opts: CommonOptions;
}

/**
 * A renderer: returns the file's text. It may carry `checkRole`, called
 * before the fleet file is read, so a role it does not render for is told
 * which renderer it needs rather than what its fleet section lacks.
 */
export type Renderer = ((input: RenderInput) => Promise<string> | string) & {
  checkRole?: (role?: Role) => void;
};

const RENDERERS: Record<string, () => Promise<Renderer>> = {
  rsyncd: async () => (await import("./render_rsyncd.ts")).renderRsyncd,
  nginx: async () => (await import("./render_nginx.ts")).renderNginx,
  haproxy: async () => (await import("./render_haproxy.ts")).renderHaproxy,
  systemd: async () => (await import("./render_systemd.ts")).renderSystemd,
  "post-receive": async () => (await import("./render_post_receive.ts")).renderPostReceive,
  cron: async () => (await import("./render_cron.ts")).renderCron,
  "report-token": async () => (await import("./render_report_token.ts")).renderReportToken,
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

/**
 * The first line of every rendered file: which fanout and fleet file made it.
 *
 * @example
 * ```ts
 * renderedBy(fleet, "#"); // "# Rendered by fanout 0.1.0 from /etc/fanout/fanout.yaml; do not edit, re-render."
 * ```
 */
export function renderedBy(fleet: Fleet, comment = "#"): string {
  return `${comment} Rendered by fanout ${VERSION} from ${
    fleet.file ?? "flags"
  }; do not edit, re-render.`;
}
