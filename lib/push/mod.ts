/**
 * The primary's pushes to its replicas: a push engine per replica with
 * retries, storms and reconcile, the filter that turns a change set into
 * rsync arguments, and the guard that stops a mass deletion.
 *
 * @module
 */

export { filterRules, unfilterable } from "./filter.ts";
export { PushEngine } from "./push.ts";
