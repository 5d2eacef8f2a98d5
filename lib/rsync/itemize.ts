/**
 * rsync's itemized output (`--itemize-changes`), read: which entries a run
 * (or a dry run) changed, created or deleted, with rsync's escaping of
 * unprintable names undone.
 *
 * @module
 */

/** One entry of an itemized rsync run: a difference between two trees. */
export interface ItemizedEntry {
  /** Path relative to the tree root; directories end in `/`. */
  path: string;
  /** `file`, `dir`, `link` or `other`. */
  kind: "file" | "dir" | "link" | "other";
  /** For changed items: what differs (`size`, `time`, `content`, `perms`…). */
  what?: string[];
}

/** An itemized run, sorted. */
export interface Itemized {
  /** In both, but different. */
  changed: ItemizedEntry[];
  /** In the source only. */
  missing: ItemizedEntry[];
  /** In the target only (a run with `--delete` deletes them). */
  extra: ItemizedEntry[];
  /** Some names came escaped from rsync (unprintable bytes): shown decoded,
   * but not trusted as a transfer list. */
  escaped: boolean;
}

/**
 * Sorts itemized rsync lines (`--itemize-changes`) into changed, missing
 * and extra entries, leaving out the paths `skip` names.
 *
 * @example
 * ```ts
 * classifyItems([">f.st...... a.txt", "*deleting   b.txt"]);
 * // { changed: [{ path: "a.txt", kind: "file", what: ["size", "time"] }], missing: [], extra: [{ path: "b.txt", … }] }
 * ```
 */
export function classifyItems(
  items: string[],
  skip: (path: string) => boolean = () => false,
): Itemized {
  const out: Itemized = {
    changed: [],
    missing: [],
    extra: [],
    escaped: false,
  };
  const name = (raw: string) => {
    const path = unescapeName(raw);
    if (path !== raw) out.escaped = true;
    return path;
  };
  for (const line of items) {
    if (line.startsWith("*deleting")) {
      const path = name(line.slice(9).trimStart());
      if (skip(path)) continue;
      out.extra.push({ path, kind: path.endsWith("/") ? "dir" : "other" });
      continue;
    }
    const flags = line.slice(0, 11);
    const kind = ({ f: "file", d: "dir", L: "link" } as const)[flags[1]] ?? "other";
    // rsyncArgs itemizes without a link's target: the rest is the name, arrows and all.
    const path = name(line.slice(12));
    if (skip(path)) continue;
    // The root's own mtime moves whenever fanout writes its marker: not drift.
    if (path === "./" && flags[0] === "." && flags.slice(2).replace(/[tT.]/g, "") === "") continue;
    if (flags.slice(2).startsWith("+++")) {
      out.missing.push({ path, kind });
    } else {
      out.changed.push({ path, kind, what: attrs(flags) });
    }
  }
  return out;
}

/**
 * Undoes rsync's escaping of names in its output (`caf\#303\#251.txt` for
 * `café.txt`: bytes it will not print, in octal).
 *
 * @example
 * ```ts
 * unescapeName("caf\\#303\\#251.txt"); // "café.txt"
 * ```
 */
export function unescapeName(raw: string): string {
  if (!raw.includes("\\#")) return raw;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < raw.length;) {
    const oct = /^\\#([0-7]{3})/.exec(raw.slice(i, i + 5));
    if (oct) {
      bytes.push(parseInt(oct[1], 8));
      i += 5;
    } else {
      const ch = String.fromCodePoint(raw.codePointAt(i)!);
      bytes.push(...enc.encode(ch));
      i += ch.length;
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

const ATTRS: [number, string, string][] = [
  [2, "c", "content"],
  [3, "s", "size"],
  [4, "t", "time"],
  [4, "T", "time"],
  [5, "p", "perms"],
  [6, "o", "owner"],
  [7, "g", "group"],
];

function attrs(flags: string): string[] {
  const what = ATTRS.filter(([i, ch]) => flags[i] === ch).map(([, , w]) => w);
  if (flags[0] === ">" && !what.includes("content") && !what.includes("size")) {
    what.unshift("content");
  }
  return what.length ? what : ["attributes"];
}
