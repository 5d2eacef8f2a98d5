/**
 * What this build of fanout is.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** fanout's version, from deno.json (stamped into compiled binaries). */
export const VERSION: string = denoJson.version;
