/**
 * What this build of fanout is.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { BUILD } from "./_build.ts";

/**
 * The git commit a build was made from (`compile.sh` stamps it, with
 * `.dirty` when the work tree had changes), or null when running from source.
 */
export const COMMIT: string | null = BUILD.commit;

/**
 * fanout's version: deno.json's, plus the commit as semver build metadata in
 * builds made by `compile.sh`.
 *
 * @example
 * ```ts
 * VERSION; // "0.1.0" from source, "0.1.0+a32a7ca8bc02" from dist/fanout or dist/fanout.js
 * ```
 */
export const VERSION: string = COMMIT ? `${denoJson.version}+${COMMIT}` : denoJson.version;
