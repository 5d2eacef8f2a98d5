// quoted(): a value from a file or the network, printable in one line of a
// terminal or a log: quoted, cut, every control character escaped.
import assert from "node:assert/strict";
import { CONTROL_CHARS, quoted } from "./visible.ts";

Deno.test("quoted: plain text in double quotes", () => {
  assert.equal(quoted("/srv/plugins"), '"/srv/plugins"');
  assert.equal(quoted(""), '""');
  assert.equal(quoted('say "hi"'), '"say \\"hi\\""');
  assert.equal(quoted("café 日本"), '"café 日本"');
});

Deno.test("quoted: C0, DEL and C1 controls are escaped, none left raw", () => {
  assert.equal(quoted("/srv/t\n[evil]"), '"/srv/t\\n[evil]"');
  assert.equal(quoted("a\x1b[2Jb"), '"a\\u001b[2Jb"');
  assert.equal(quoted("a\x7fb\x85c\x9bd"), '"a\\u007fb\\u0085c\\u009bd"');
  let all = "";
  for (let c = 0; c <= 0xa0; c++) all += String.fromCharCode(c);
  assert.doesNotMatch(quoted(all, 1000), CONTROL_CHARS);
});

Deno.test("quoted: long text is cut to max characters with an ellipsis", () => {
  const long = "x".repeat(1_000_000);
  assert.equal(quoted(long), JSON.stringify("x".repeat(57) + "..."));
  assert.equal(quoted(long, 10), '"xxxxxxx..."');
  assert.equal(quoted("x".repeat(60)), JSON.stringify("x".repeat(60)), "exactly max stays whole");
  // Cut first, escaped after: a cut never leaves half an escape.
  assert.equal(quoted("\n".repeat(100), 5), '"\\n\\n..."');
});

Deno.test("CONTROL_CHARS: C0 (tab and newline too), DEL and C1; nothing printable", () => {
  for (const c of ["\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x9f"]) {
    assert.match(c, CONTROL_CHARS, JSON.stringify(c));
  }
  for (const c of [" ", "~", "\xa0", "é", "\u2028", "👍"]) {
    assert.doesNotMatch(c, CONTROL_CHARS, JSON.stringify(c));
  }
});
