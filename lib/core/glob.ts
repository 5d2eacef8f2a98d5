// Matching of rsync-style exclude patterns against relative paths, for the
// watcher's noise filter. rsync itself applies the patterns to transfers; this
// only keeps excluded paths out of change sets, so it errs on the side of
// matching less (a path it lets through costs one include rule, nothing more).
//
// Patterns come from the fleet file and names from the tree, both untrusted:
// a pattern is read into steps and run as a set of states over the path
// (Thompson's construction), so a check costs path length × pattern length
// whatever the two hold; a backtracking regex tries every split of the name
// among the stars of `*a*a*a*a*b`, a power of the name's length. Nothing in a pattern makes the
// matcher throw; globProblem says what the fleet file must refuse.

/** The longest pattern the fleet file accepts (a check costs its length per path character). */
export const GLOB_MAX = 1024;

/** One step of a pattern. */
type Step =
  /** One character, itself. */
  | { kind: "char"; c: string }
  /** `?`: one character but `/`. */
  | { kind: "one" }
  /** `*`: a run of characters but `/`; `**` (or more stars): any run. */
  | { kind: "star"; slash: boolean }
  /** `[..]`, `[!..]` or `[^..]`: one character of (or not of) the ranges, never `/`. */
  | { kind: "class"; negated: boolean; ranges: [number, number][] };

/** A range of a class as written, from `lo` to `hi`. */
type Written = [lo: string, hi: string];

/** A pattern's steps, and the backwards ranges (`z-a`) among its classes. */
function parseGlob(glob: string): { steps: Step[]; backwards: Written[] } {
  const chars = Array.from(glob);
  const steps: Step[] = [];
  const backwards: Written[] = [];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === "*") {
      let end = i;
      while (chars[end + 1] === "*") end++;
      steps.push({ kind: "star", slash: end > i });
      i = end;
    } else if (c === "?") steps.push({ kind: "one" });
    else if (c === "[") {
      const cls = parseClass(chars, i);
      if (!cls) steps.push({ kind: "char", c });
      else {
        steps.push(cls.step);
        backwards.push(...cls.backwards);
        i = cls.end;
      }
    } else steps.push({ kind: "char", c });
  }
  return { steps, backwards };
}

/**
 * The class that opens at `chars[open]`, or null when no `]` closes it (the
 * `[` is then a plain character). A `]` first in the class is a member, and so
 * is a `-` first or last.
 */
function parseClass(
  chars: string[],
  open: number,
): { step: Step; end: number; backwards: Written[] } | null {
  let j = open + 1;
  const negated = chars[j] === "!" || chars[j] === "^";
  if (negated) j++;
  const ranges: [number, number][] = [];
  const backwards: Written[] = [];
  for (let first = true; j < chars.length && (first || chars[j] !== "]"); first = false) {
    const lo = chars[j];
    if (chars[j + 1] === "-" && j + 2 < chars.length && chars[j + 2] !== "]") {
      const hi = chars[j + 2];
      const range: [number, number] = [lo.codePointAt(0)!, hi.codePointAt(0)!];
      ranges.push(range);
      if (range[0] > range[1]) backwards.push([lo, hi]);
      j += 3;
    } else {
      ranges.push([lo.codePointAt(0)!, lo.codePointAt(0)!]);
      j++;
    }
  }
  if (j >= chars.length) return null;
  return { step: { kind: "class", negated, ranges }, end: j, backwards };
}

/** The state after state `j` (before `step`) takes `c`; -1 when it cannot. */
function stepOver(step: Step, j: number, c: string): number {
  switch (step.kind) {
    case "char":
      return step.c === c ? j + 1 : -1;
    case "one":
      return c !== "/" ? j + 1 : -1;
    case "class": {
      if (c === "/") return -1;
      const code = c.codePointAt(0)!;
      // A backwards range holds nothing, as in rsync.
      const inside = step.ranges.some(([lo, hi]) => lo <= code && code <= hi);
      return inside !== step.negated ? j + 1 : -1;
    }
    case "star":
      return step.slash || c !== "/" ? j : -1;
  }
}

/** Marks the states a star lets through without taking a character. */
function closeOverStars(steps: Step[], states: Uint8Array): void {
  for (let j = 0; j < steps.length; j++) {
    if (states[j] && steps[j].kind === "star") states[j + 1] = 1;
  }
}

/**
 * True when `steps` match `chars` from a component's start (only the first
 * one when `anchored`) to a component's end: the path or one of its parents
 * is the match, or ends with it.
 */
function matchesPrefix(steps: Step[], anchored: boolean, chars: string[]): boolean {
  const m = steps.length;
  let cur = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  cur[0] = 1;
  closeOverStars(steps, cur);
  for (const c of chars) {
    if (c === "/" && cur[m]) return true;
    next.fill(0);
    let live = false;
    for (let j = 0; j < m; j++) {
      if (!cur[j]) continue;
      const to = stepOver(steps[j], j, c);
      if (to < 0) continue;
      next[to] = 1;
      live = true;
    }
    if (c === "/" && !anchored) {
      next[0] = 1;
      live = true;
    }
    // Unanchored, a later component starts afresh.
    if (!live && anchored) return false;
    closeOverStars(steps, next);
    [cur, next] = [next, cur];
  }
  return cur[m] === 1;
}

/**
 * Why the fleet file must refuse `pattern`, or undefined when it is fine:
 * too long, or a class with a backwards range (`[z-a]` holds nothing, so the
 * exclude it stands in could never match what its author meant).
 *
 * @example
 * ```ts
 * globProblem("*.sw[op]"); // undefined
 * globProblem("[z-a]"); // "its range z-a runs backwards (write a-z)"
 * ```
 */
export function globProblem(pattern: string): string | undefined {
  if (pattern.length > GLOB_MAX) return `it is longer than ${GLOB_MAX} characters`;
  const [range] = parseGlob(pattern).backwards;
  if (range === undefined) return undefined;
  const [lo, hi] = range;
  return `its range ${lo}-${hi} runs backwards (write ${hi}-${lo})`;
}

/** A compiled exclude list. */
export interface ExcludeMatcher {
  /** True when `rel` (no leading slash) or one of its parent dirs is excluded. */
  excluded(rel: string): boolean;
}

/**
 * Compiles rsync-style patterns: `name` matches a component anywhere,
 * `/name` only at the top, `a/b` the tail of a path; `*` and `?` stay within
 * a component, `**` does not; a trailing `/` is ignored (directories and files
 * are treated alike here). A check takes time linear in the path's length.
 *
 * @example
 * ```ts
 * const m = compileExcludes([".git", "*.log", "/build"]);
 * m.excluded("a/.git/HEAD"); // true
 * m.excluded("src/build/x"); // false
 * ```
 */
export function compileExcludes(patterns: string[]): ExcludeMatcher {
  // Plain names (the common case: .git, node_modules) are a set lookup.
  const names = new Set<string>();
  const globs: { steps: Step[]; anchored: boolean }[] = [];
  for (const raw of patterns) {
    const p = raw.replace(/\/+$/, "");
    if (!p) continue;
    if (!/[/*?[]/.test(p)) names.add(p);
    else if (p.startsWith("/")) globs.push({ steps: parseGlob(p.slice(1)).steps, anchored: true });
    else globs.push({ steps: parseGlob(p).steps, anchored: false });
  }
  return {
    excluded(rel: string): boolean {
      if (names.size > 0 && rel.split("/").some((part) => names.has(part))) return true;
      if (globs.length === 0) return false;
      const chars = Array.from(rel);
      return globs.some((g) => matchesPrefix(g.steps, g.anchored, chars));
    },
  };
}
