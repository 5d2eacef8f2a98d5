/**
 * Turns a change set into rsync filter rules that make one rsync run visit
 * only the changed paths — new, modified, deleted and renamed alike.
 *
 * `--files-from` cannot delete (rsync deletes only inside directories it
 * recurses into), so fanout does what lsyncd does: include each changed path
 * and its parent directories, exclude everything else, and run with
 * `--delete`. rsync then descends only into included directories, deletes
 * what the source no longer has among the included paths, and never touches
 * the excluded rest (excluded files are protected from deletion).
 *
 * @module
 */

import type { Change } from "./changes.ts";

/** rsync treats a pattern with any of these as a wildcard pattern. */
const WILD = /[*?[]/;

function literal(path: string): string {
  return WILD.test(path) ? path.replace(/[\\*?[]/g, "\\$&") : path;
}

function escaped(path: string): string {
  return path.replace(/[\\*?[]/g, "\\$&");
}

/**
 * The include rules for `changes`, in order, without the final `- *`.
 * Rules start with `+ /` (anchored at the tree root); a deep change also
 * includes everything below it (`/p/` followed by three stars), so a new
 * directory is copied whole and a removed one is deleted whole.
 *
 * @example
 * ```ts
 * filterRules([{ path: "a/b.txt", deep: false }]);
 * // ["+ /a/", "+ /a/b.txt"]
 * ```
 */
export function filterRules(changes: Change[]): string[] {
  const rules: string[] = [];
  const parents = new Set<string>();
  for (const { path, deep } of changes) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (parents.has(dir)) continue;
      parents.add(dir);
      rules.push(`+ /${literal(dir)}/`);
    }
    rules.push(`+ /${literal(path)}`);
    if (deep) rules.push(`+ /${escaped(path)}/${"*".repeat(3)}`);
  }
  return rules;
}

/** True when a path cannot be written as a filter rule (fall back to a full push). */
export function unfilterable(path: string): boolean {
  return /[\n\r\0]/.test(path);
}
