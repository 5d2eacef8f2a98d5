// The house's rules, read from the code's own imports: a folder of lib/ is
// entered only through its mod.ts, imports run one way (down the layers
// below), and no module imports itself back through others.
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * The layers, top first. A folder may import folders of its own layer's
 * right-hand side or of any layer below; never one above.
 */
const LAYERS: string[][] = [
  ["main.ts"],
  ["cmd"],
  ["lib/cli"],
  [
    "lib/watch",
    "lib/push",
    "lib/client",
    "lib/proxy",
    "lib/publish",
    "lib/fleet",
    "lib/render",
    "lib/vouch",
  ],
  ["lib/proxy/net"],
  ["lib/rsyncd", "lib/rsync", "lib/report", "lib/release"],
  ["lib/config", "lib/health", "lib/version"],
  ["lib/sys", "lib/http"],
  ["lib/core"],
];

const SPEC = /(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g;

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) sourceFiles(path, out);
    else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith("_test.ts")) out.push(path);
  }
  return out;
}

function dirOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
}

function resolve(from: string, spec: string): string {
  const parts = dirOf(from) === "." ? [] : dirOf(from).split("/");
  for (const seg of spec.split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== ".") parts.push(seg);
  }
  return parts.join("/");
}

/** Every import of the program (tests and benchmarks left out): [from, to]. */
function imports(): [string, string][] {
  const out: [string, string][] = [];
  for (const file of ["main.ts", ...sourceFiles("cmd"), ...sourceFiles("lib")]) {
    const text = Deno.readTextFileSync(`${ROOT}${file}`);
    for (const m of text.matchAll(SPEC)) out.push([file, resolve(file, m[1])]);
  }
  return out;
}

function layerOf(dir: string): number {
  const i = LAYERS.findIndex((l) => l.includes(dir));
  if (i < 0) throw new Error(`${dir} is in no layer of tests/layout_test.ts: add it`);
  return i;
}

Deno.test("layout: another folder's files are reached only through its mod.ts", () => {
  const bad = imports().filter(([from, to]) =>
    to.startsWith("lib/") && /\.(ts|js)$/.test(to) && dirOf(from) !== dirOf(to) &&
    !to.endsWith("/mod.ts")
  );
  assert.deepEqual(bad, [], "imports that bypass a folder's door");
});

Deno.test("layout: imports run down the layers, never up", () => {
  const bad: string[] = [];
  for (const [from, to] of imports()) {
    const a = from === "main.ts" ? "main.ts" : dirOf(from);
    const b = dirOf(to);
    if (a === b || !/\.(ts|js)$/.test(to)) continue;
    if (layerOf(b) < layerOf(a)) bad.push(`${from} -> ${to}`);
  }
  assert.deepEqual(bad, [], "imports that run up the layers");
});

Deno.test("layout: no import cycles, between folders or between files", () => {
  const edges = new Map<string, Set<string>>();
  for (const [from, to] of imports()) {
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const walk = (node: string, path: string[]) => {
    state.set(node, "open");
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === "open") {
        cycles.push([...path.slice(path.indexOf(next)), next].join(" -> "));
      } else if (!state.has(next)) walk(next, [...path, next]);
    }
    state.set(node, "done");
  };
  for (const node of edges.keys()) if (!state.has(node)) walk(node, [node]);
  assert.deepEqual(cycles, []);
});

Deno.test("layout: every folder of lib/ has a mod.ts with a module comment", () => {
  const dirs = new Set(sourceFiles("lib").map(dirOf));
  for (const dir of dirs) {
    if (dir.endsWith("/templates")) continue;
    const text = Deno.readTextFileSync(`${ROOT}${dir}/mod.ts`);
    assert.match(text, /^\/\*\*[\s\S]*?@module[\s\S]*?\*\//, `${dir}/mod.ts`);
    layerOf(dir);
  }
});
