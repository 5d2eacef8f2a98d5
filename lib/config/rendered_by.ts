/**
 * The first line of every file fanout renders (the rsync daemon's config
 * included): which fanout and which fleet file made it.
 *
 * @module
 */

import { VERSION } from "../core/mod.ts";
import type { Fleet } from "./config.ts";

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
