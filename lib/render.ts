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

/** A renderer: returns the file's text. */
export type Renderer = (input: RenderInput) => Promise<string> | string;

const RENDERERS: Record<string, () => Promise<Renderer>> = {
  rsyncd: async () => (await import("./render_rsyncd.ts")).renderRsyncd,
  nginx: async () => (await import("./render_nginx.ts")).renderNginx,
  haproxy: async () => (await import("./render_haproxy.ts")).renderHaproxy,
};

/**
 * Prints the rendered file; returns the exit code.
 *
 * @throws {UsageError} when the kind needs a role that was not given.
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
  const fleet = await fleetFor(opts, role);
  const text = await (await load())({ fleet, role, opts });
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
