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

import type { Change } from "../version/mod.ts";

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
 * directory is copied whole and a removed one is deleted whole. With
 * `collapse: false` no rule takes a whole directory (while deletions are held,
 * a `/dir/*` rule would delete them with the rest).
 *
 * @example
 * ```ts
 * filterRules([{ path: "a/b.txt", deep: false }]);
 * // ["+ /a/", "+ /a/b.txt"]
 * ```
 */
export function filterRules(changes: Change[], opts: { collapse?: boolean } = {}): string[] {
  const rules: string[] = [];
  const parents = new Set<string>();
  const addParents = (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (parents.has(dir)) continue;
      parents.add(dir);
      rules.push(`+ /${literal(dir)}/`);
    }
  };
  // rsync tries every rule on every file it meets: a burst of 500 new files
  // in a few directories would cost 500 rules per file. Past a handful of
  // changed entries in one directory, one rule takes all its entries instead
  // (without descending into its subdirectories).
  const byDir = new Map<string, Change[]>();
  for (const c of changes) {
    const slash = c.path.lastIndexOf("/");
    const dir = slash < 0 ? "" : c.path.slice(0, slash);
    let list = byDir.get(dir);
    if (!list) byDir.set(dir, list = []);
    list.push(c);
  }
  for (const [dir, list] of byDir) {
    const shallow = list.filter((c) => !c.deep);
    const collapse = opts.collapse !== false && shallow.length > COLLAPSE_AT;
    if (collapse) {
      addParents(dir ? `${dir}/x` : "x");
      rules.push(dir ? `+ /${escaped(dir)}/*` : "+ /*");
    }
    for (const { path, deep } of list) {
      if (collapse && !deep) continue;
      addParents(path);
      rules.push(`+ /${literal(path)}`);
      if (deep) rules.push(`+ /${escaped(path)}/${"*".repeat(3)}`);
    }
  }
  return rules;
}

/** Changed entries in one directory past which a single rule covers them all. */
const COLLAPSE_AT = 16;

/** True when a path cannot be written as a filter rule (fall back to a full push). */
export function unfilterable(path: string): boolean {
  return /[\n\r\0]/.test(path);
}
