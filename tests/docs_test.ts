// The documentation holds together: README.md stays a first page, and every
// relative link in it and in docs/*.md reaches a file that exists and, with a
// #fragment, a heading of that file (as GitHub names its anchors).
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;
const README_MAX_LINES = 250;

/** README.md and every docs/*.md, as paths relative to the repository. */
function documents(): string[] {
  const docs = [...Deno.readDirSync(`${ROOT}docs`)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...docs];
}

/** The text outside fenced code blocks, code spans blanked (links there are not links). */
function prose(text: string): string {
  let fenced = false;
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      out.push("");
      continue;
    }
    out.push(fenced ? "" : line.replace(/(`+)[^`]*?\1/g, "code"));
  }
  return out.join("\n");
}

/** A heading's anchor as GitHub makes it: plain text, lower case, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1") // links keep their text
    .replace(/[`*]/g, "")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** Every anchor a markdown file offers: its headings' slugs (numbered when repeated), and ids. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m) {
      const base = slug(m[1]);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      out.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const id of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) out.add(id[1]);
  }
  return out;
}

/** The targets of a file's inline and reference links, with their line numbers. */
function links(text: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  prose(text).split("\n").forEach((line, i) => {
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      out.push({ target: m[1], line: i + 1 });
    }
    const ref = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line);
    if (ref) out.push({ target: ref[1], line: i + 1 });
  });
  return out;
}

function dirOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
}

/** `a/b/../c.md` → `a/c.md`. */
function normalize(path: string): string {
  const parts: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== "." && seg !== "") parts.push(seg);
  }
  return parts.join("/");
}

function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}${path}`);
    return true;
  } catch {
    return false;
  }
}

/** Why a link from `from` does not resolve, or null when it does. */
function brokenLink(from: string, target: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto: …: not ours to check
  const hash = target.indexOf("#");
  const pathPart = hash < 0 ? target : target.slice(0, hash);
  const fragment = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
  if (pathPart.startsWith("/")) return "an absolute path: links are relative to the file";
  const path = pathPart === "" ? from : normalize(dirOf(from) + decodeURIComponent(pathPart));
  if (!exists(path)) return `${path} does not exist`;
  if (fragment === null) return null;
  if (!path.endsWith(".md")) return `#${fragment} points into ${path}, which is not markdown`;
  const known = anchors(Deno.readTextFileSync(`${ROOT}${path}`));
  return known.has(fragment) ? null : `${path} has no heading #${fragment}`;
}

Deno.test("docs: headings get GitHub's anchors", () => {
  assert.equal(
    slug("Latency: TCP_NODELAY on every rsync connection"),
    "latency-tcp_nodelay-on-every-rsync-connection",
  );
  assert.equal(slug("The primary's memory"), "the-primarys-memory");
  assert.equal(slug("`/status` and [metrics](x.md)"), "status-and-metrics");
  assert.equal(slug("Capacity: many clients at once"), "capacity-many-clients-at-once");
  const a = anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n");
  assert.deepEqual([...a].sort(), ["a", "notes", "notes-1"]);
});

Deno.test("docs: links in code blocks and code spans are not links", () => {
  const text = "[a](a.md) `[b](b.md)`\n```\n[c](c.md)\n```\n[d]: d.md\n";
  assert.deepEqual(links(text).map((l) => l.target), ["a.md", "d.md"]);
});

Deno.test(`docs: README.md is a first page, at most ${README_MAX_LINES} lines`, () => {
  const text = Deno.readTextFileSync(`${ROOT}README.md`);
  const lines = text.endsWith("\n") ? text.split("\n").length - 1 : text.split("\n").length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; move detail into docs/`);
  // .ci/run runs the test command the README gives.
  assert.match(text, /deno task test/);
});

Deno.test("docs: every relative link in README.md and docs/*.md resolves", () => {
  const broken: string[] = [];
  for (const file of documents()) {
    for (const { target, line } of links(Deno.readTextFileSync(`${ROOT}${file}`))) {
      const why = brokenLink(file, target);
      if (why) broken.push(`${file}:${line}: (${target}): ${why}`);
    }
  }
  assert.deepEqual(broken, []);
});

Deno.test("docs: the key table of docs/configuration.md sits between its markers", () => {
  const text = Deno.readTextFileSync(`${ROOT}docs/configuration.md`);
  const begin = text.split("<!-- keys:begin -->").length - 1;
  const end = text.split("<!-- keys:end -->").length - 1;
  assert.equal(begin, 1, "one <!-- keys:begin --> line");
  assert.equal(end, 1, "one <!-- keys:end --> line");
  assert.ok(text.indexOf("<!-- keys:begin -->") < text.indexOf("<!-- keys:end -->"));
});
