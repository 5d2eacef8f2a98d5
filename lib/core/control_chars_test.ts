// stripControl removes what can rewrite or hide text on an operator's
// terminal: escapes, bidirectional controls, invisible and tag characters.
import assert from "node:assert/strict";
import { printableLine, stripControl } from "./control_chars.ts";

const code = (c: string) => c.codePointAt(0)!.toString(16);

Deno.test("stripControl: C0, DEL and C1 go; tab and newline stay unless oneLine", () => {
  assert.equal(stripControl("web1\x1b[2J\x1b]0;owned\x07\x7f\x9b"), "web1[2J]0;owned");
  assert.equal(stripControl("a\tb\nc"), "a\tb\nc");
  assert.equal(stripControl("a\tb\nc", { oneLine: true }), "a b c");
});

Deno.test("stripControl: bidirectional, invisible, separator and tag characters go", () => {
  const hostile = [
    "\u061c", // Arabic letter mark
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u200f", // zero widths, LRM/RLM
    "\u2028",
    "\u2029", // line, paragraph separator
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e", // embeddings, overrides
    "\u2060",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064", // word joiner, invisible operators
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069", // isolates
    "\ufeff", // zero-width no-break space (BOM)
    "\u{e0000}",
    "\u{e0001}",
    "\u{e0041}",
    "\u{e007f}", // tags
  ];
  for (const c of hostile) {
    assert.equal(stripControl(`web${c}1`), "web1", `U+${code(c)} is stripped`);
  }
  // "evil.txt" shown as "evil.txt" while it reads "evil\u202etxt.exe" underneath.
  assert.equal(stripControl("evil\u202etxt.exe\u2066\u{e0041}"), "eviltxt.exe");
});

Deno.test("stripControl: ordinary text, other scripts and emoji stay", () => {
  const kept = "café ŝ → 日本 مرحبا עברית 👍🏽 \u00a0\u2010\u2070 \u{1f3f4}\u{1f1e9}\u{1f1ea}";
  assert.equal(stripControl(kept), kept);
  // The neighbours of each stripped range stay.
  for (
    const c of [
      "\u061b",
      "\u061d",
      "\u200a",
      "\u2027",
      "\u202f",
      "\u2065",
      "\u206a",
      "\ufefe",
      "\u{dffff}",
      "\u{e0080}",
    ]
  ) {
    assert.equal(stripControl(c), c, `U+${code(c)} is kept`);
  }
});

Deno.test("printableLine: one trimmed line without controls, cut to max with an ellipsis", () => {
  assert.equal(
    printableLine(" @ERROR: no\x9b[2J\x1b]0;t\x07\tway\r\n", 80),
    "@ERROR: no[2J]0;t way",
  );
  assert.equal(printableLine("x".repeat(500), 10), "x".repeat(9) + "…");
  assert.equal(printableLine("x".repeat(10), 10), "x".repeat(10));
  assert.equal(printableLine("x".repeat(8) + "👍👍", 10), "x".repeat(8) + "…", "no half emoji");
  assert.equal(printableLine("\u202e\x00", 10), "");
});
