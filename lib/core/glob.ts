// Matching of rsync-style exclude patterns against relative paths, for the
// watcher's noise filter. rsync itself applies the patterns to transfers; this
// only keeps excluded paths out of change sets, so it errs on the side of
// matching less (a path it lets through costs one include rule, nothing more).

/** A compiled exclude list. */
export interface ExcludeMatcher {
  /** True when `rel` (no leading slash) or one of its parent dirs is excluded. */
  excluded(rel: string): boolean;
}

function globToRegExp(glob: string, prefix = "^"): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") {
      if (glob[i + 1] === "*") {
        re += ".*";
        i++;
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += "[" + glob.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\") + "]";
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`${prefix}${re}$`);
}

/**
 * Compiles rsync-style patterns: `name` matches a component anywhere,
 * `/name` only at the top, `a/b` the tail of a path; a trailing `/` is ignored
 * (directories and files are treated alike here).
 */
export function compileExcludes(patterns: string[]): ExcludeMatcher {
  const anywhere: RegExp[] = [];
  const anchored: RegExp[] = [];
  const tails: RegExp[] = [];
  for (const raw of patterns) {
    const p = raw.replace(/\/+$/, "");
    if (!p) continue;
    if (p.startsWith("/")) anchored.push(globToRegExp(p.slice(1)));
    else if (p.includes("/")) tails.push(globToRegExp(p, "(^|/)"));
    else anywhere.push(globToRegExp(p));
  }
  return {
    excluded(rel: string): boolean {
      const parts = rel.split("/");
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i];
        if (anywhere.some((r) => r.test(part))) return true;
        const prefix = parts.slice(0, i + 1).join("/");
        if (anchored.some((r) => r.test(prefix))) return true;
        if (tails.some((r) => r.test(prefix))) return true;
      }
      return false;
    },
  };
}
