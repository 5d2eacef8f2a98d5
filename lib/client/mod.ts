/**
 * The client's sync: the job, the transfer, both layouts (in place and
 * `--atomic`), catch-up by the version log, drift checks, signed releases
 * (a fleet with `release.public_keys` applies a version only as signed),
 * the safety rules for dest, and the status it reports. `--atomic`'s,
 * `--check`'s and signed releases' code loads only when asked for.
 *
 * @module
 */

export { fetchMarker, runClient } from "./client.ts";
export { inPlace } from "./inplace.ts";
export { type ClientJob } from "./job.ts";
export { type TreeLayout } from "./layout.ts";
export { type ClientRunResult, readStatus, writeStatus } from "./status.ts";
export { filesystemOf } from "./transfer.ts";

/**
 * The `--atomic` layout and `--rollback`, loaded on first use: a cron client
 * in place never reads their code.
 *
 * @example
 * ```ts
 * const layout = job.atomic ? (await loadAtomic()).atomicLayout(job) : inPlace(job);
 * ```
 */
export const loadAtomic = (): Promise<typeof import("./atomic.ts")> => import("./atomic.ts");

/**
 * `--check`'s comparison and report, loaded on first use.
 *
 * @example
 * ```ts
 * const { checkDrift, formatCheck } = await loadCheck();
 * console.log(formatCheck(await checkDrift(job, layout)));
 * ```
 */
export const loadCheck = (): Promise<typeof import("./check.ts")> => import("./check.ts");
