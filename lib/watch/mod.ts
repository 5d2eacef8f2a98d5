/**
 * The primary's eye on its tree: inotify (in a worker, so a busy event
 * loop never overflows the kernel queue), coalesced into change sets.
 *
 * @module
 */

export { TreeWatcher } from "./watch.ts";
