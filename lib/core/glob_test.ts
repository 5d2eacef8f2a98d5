// The watcher's noise filter: rsync-style exclude patterns against relative
// paths. A path it lets through costs an include rule; one it wrongly drops
// would never be pushed, so near-misses must stay in.
import assert from "node:assert/strict";
import { compileExcludes, GLOB_MAX, globProblem } from "./glob.ts";

function check(patterns: string[], yes: string[], no: string[]): void {
  const m = compileExcludes(patterns);
  for (const p of yes) assert.equal(m.excluded(p), true, `${patterns} excludes ${p}`);
  for (const p of no) assert.equal(m.excluded(p), false, `${patterns} keeps ${p}`);
}

Deno.test("exclude: a bare name matches a component anywhere, and all below it", () => {
  check(
    ["node_modules"],
    ["node_modules", "node_modules/x.js", "a/node_modules", "a/b/node_modules/c/d.js"],
    ["node_modules2", "my_node_modules", "a/node_modules.txt", ""],
  );
});

Deno.test("exclude: * and ? stay within one component; [..] and [!..] are classes", () => {
  check(["*.log"], ["a.log", "x/y/z.log", "logs/a.log/inner"], ["a.log.txt", "alog", "a/log"]);
  check(["?.tmp"], ["a.tmp", "d/b.tmp"], ["ab.tmp", ".tmp"]);
  check(["*.sw[op]"], ["a.swo", "b/c.swp"], ["a.swx", "a.sw"]);
  check(["[!a]x"], ["bx", "d/cx"], ["ax", "x"]);
});

Deno.test("exclude: a leading / anchors at the tree's top", () => {
  check(["/build"], ["build", "build/out.o"], ["src/build", "src/build/out.o", "builder"]);
  check(["/dist/*.map"], ["dist/a.map"], ["dist/sub/a.map", "x/dist/a.map"]);
});

Deno.test("exclude: a pattern with a / matches a path's tail at a component boundary", () => {
  check(["cache/tmp"], ["cache/tmp", "a/cache/tmp", "a/cache/tmp/f"], ["xcache/tmp", "cache/tmpx"]);
  check(["docs/**/*.md"], ["docs/a/b.md", "x/docs/a/b/c.md"], ["docs/a/b.txt"]);
});

Deno.test("exclude: a trailing / is dropped; empty and slash-only patterns exclude nothing", () => {
  check(["cache/"], ["cache", "a/cache/f"], ["cached"]);
  check(["", "/", "///"], [], ["a", "a/b", "/", ""]);
  check([], [], ["anything/at/all"]);
});

Deno.test("exclude: regex characters in a pattern are literal", () => {
  check(["a.b"], ["a.b"], ["axb"]);
  check(["(x)+$"], ["(x)+$", "d/(x)+$"], ["x", "xx"]);
  check(["a{1,2}"], ["a{1,2}"], ["a", "aa"]);
  check(["a|b"], ["a|b"], ["a", "b"]);
  check(["back\\slash"], ["back\\slash"], ["backslash"]);
  check(["a[b"], ["a[b"], ["ab"]);
});

Deno.test("exclude: a deep path against many patterns", () => {
  const m = compileExcludes(Array.from({ length: 200 }, (_, i) => `skip${i}`));
  const deep = Array.from({ length: 500 }, (_, i) => `d${i}`).join("/");
  assert.equal(m.excluded(deep), false);
  assert.equal(m.excluded(`${deep}/skip199`), true);
});

Deno.test("exclude: a backwards range holds nothing and never throws; ] first is a member", () => {
  check(["[z-a]"], [], ["a", "m", "z", "[z-a]", "-"]);
  check(["x[z-a0-9]"], ["x5"], ["xa", "xz"]);
  check(["[]a]x"], ["]x", "ax", "d/ax"], ["bx", "x"]);
  check(["[!]]x"], ["ax"], ["]x"]);
  check(["a[-z]", "b[z-]"], ["a-", "az", "b-", "bz"], ["ab", "by"]);
  check(["a[", "b[!", "c[]"], ["a[", "b[!", "c[]"], ["a", "b", "c"]);
});

Deno.test("exclude: no class, ? or * takes a /; ** does, with or without a / in the pattern", () => {
  check(["/x[!a]y", "/p?q", "/m*n"], ["xby", "pzq", "mn"], ["x/y", "p/q", "m/n", "m/x/n"]);
  check(["a**z"], ["a/b/z", "x/ab/cz", "az"], ["ba/z", "a/b"]);
  check(["?.txt"], ["\u{1f600}.txt"], ["\u{1f600}\u{1f600}.txt"]);
});

Deno.test("exclude: a pattern full of stars against long names takes linear time", () => {
  // A backtracking regex never finishes these: every star tries every split.
  const stars = compileExcludes(["*a*a*a*a*a*a*a*a*b", "**a**a**a**a**a**a**b", "/**a**a**b"]);
  assert.equal(stars.excluded("a".repeat(20_000)), false);
  assert.equal(stars.excluded("a/".repeat(10_000) + "c"), false);
  assert.equal(stars.excluded("a".repeat(20_000) + "b"), true);
  const long = compileExcludes(["?".repeat(GLOB_MAX)]);
  assert.equal(long.excluded("x/".repeat(5_000)), false);
});

Deno.test("globProblem: backwards ranges and overlong patterns; the rest is fine", () => {
  assert.equal(globProblem("[z-a]"), "its range z-a runs backwards (write a-z)");
  assert.match(globProblem("*.[a-cz-x]")!, /range z-x runs backwards \(write x-z\)/);
  assert.match(globProblem("a".repeat(GLOB_MAX + 1))!, /longer than 1024 characters/);
  for (
    const ok of ["*.sw[op]", "[a-a]", "a[", "[]-]", "[!a-z]", "**/x/***", "a".repeat(GLOB_MAX)]
  ) {
    assert.equal(globProblem(ok), undefined, ok);
  }
});
