// Key paths in the fleet file: how they print, where they are, what is near.
import { CONTROL_CHARS, quoted } from "../core/mod.ts";

/** A path into the fleet file, e.g. `["replicas", 1, "listen"]`. */
export type KeyPath = (string | number)[];

/** `["replicas", 1, "listen"]` → `replicas[1].listen`. */
export function formatPath(path: KeyPath): string {
  let out = "";
  for (const k of path) {
    // A key is printed as typed unless it holds a space or a control character.
    const key = typeof k === "string" && (/\s/.test(k) || CONTROL_CHARS.test(k)) ? quoted(k) : k;
    out += typeof key === "number" ? `[${key}]` : out ? `.${key}` : key;
  }
  return out;
}

/** The known word closest to `word`, when it is a plausible typo of it. */
export function closest(word: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k.toLowerCase());
    if (d < bestDist) [best, bestDist] = [k, d];
  }
  return bestDist <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/**
 * The 1-based line of the key at each of `paths` (or of its nearest existing
 * parent), from one parse of `text`. Loads the `yaml` package only here: it
 * keeps node positions but is slow to load (docs/benchmarks.md), so only a
 * run that is about to fail pays for it.
 *
 * @example
 * ```ts
 * await linesOf("a: 1\nb:\n  c: 2\n", [["b", "c"]]); // [3]
 * ```
 */
export async function linesOf(text: string, paths: KeyPath[]): Promise<(number | undefined)[]> {
  try {
    const { parseDocument, isMap, isSeq, isScalar, LineCounter } = await import("yaml");
    const lc = new LineCounter();
    // js-yaml has refused duplicate keys already; yaml's own check is quadratic.
    const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false });
    return paths.map((path) => {
      const at = offsetOf(doc.contents, path, { isMap, isSeq, isScalar });
      return at === undefined ? undefined : lc.linePos(at).line;
    });
  } catch {
    return paths.map(() => undefined);
  }
}

function offsetOf(
  // deno-lint-ignore no-explicit-any
  contents: any,
  path: KeyPath,
  // deno-lint-ignore no-explicit-any
  { isMap, isSeq, isScalar }: Record<"isMap" | "isSeq" | "isScalar", (n: any) => boolean>,
): number | undefined {
  let node = contents;
  let at: number | undefined = node?.range?.[0];
  for (const key of path) {
    if (isMap(node)) {
      // deno-lint-ignore no-explicit-any
      const pair = node.items.find((p: any) => isScalar(p.key) && p.key.value === key);
      if (!pair) break;
      at = pair.key.range?.[0];
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number") {
      node = node.items[key];
      if (!node) break;
      at = node.range?.[0];
    } else break;
  }
  return at;
}
