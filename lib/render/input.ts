/**
 * What every renderer of `fanout render` gets and returns, and the first line
 * of every rendered file. Apart from lib/render.ts, which loads the
 * renderers, so that a renderer depends on nothing that depends on it.
 *
 * @module
 */

import type { CommonOptions, Role } from "../cli/cli.ts";
import type { Fleet } from "../config/config.ts";
import { VERSION } from "../core/meta.ts";

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
