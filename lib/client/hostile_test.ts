// Names and links a hostile server can send, read by the client's pure
// helpers: a symlink out of the tree is found, control characters never
// reach a terminal as they are.
import assert from "node:assert/strict";
import { detour, formatLogfmt } from "../core/mod.ts";
import { leavingLink } from "./atomic.ts";
import { printable } from "./check.ts";
import { filesystemOf } from "./transfer.ts";

Deno.test("hostile: detour finds the symlink a path goes through; leavingLink the one out of the tree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-detour-" });
  try {
    await Deno.mkdir(`${dir}/tree/d`, { recursive: true });
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.writeTextFile(`${dir}/tree/d/f.txt`, "f\n");
    await Deno.writeTextFile(`${dir}/elsewhere/x`, "x\n");
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/tree/out`);
    await Deno.symlink("d", `${dir}/tree/in`);
    const t = `${dir}/tree`;
    assert.equal(detour(t, "d/f.txt"), null);
    assert.equal(detour(t, "out/x"), "out");
    assert.equal(detour(t, "out"), null, "the last component is not entered");
    assert.equal(detour(t, "out", { whole: true }), "out");
    assert.equal(detour(t, "d/../out/x"), "d/..");
    assert.equal(detour(t, "missing/x"), null);
    assert.equal(detour(t, "d/f.txt/x"), null, "below a file leads nowhere");
    assert.equal(leavingLink(t, ["cd+++++++++ d/", "cd+++++++++ in/", "cd+++++++++ out/"]), "out");
    assert.equal(leavingLink(t, [">f+++++++++ out", "cd+++++++++ in/"]), null);
    assert.match(filesystemOf(`${t}/d/`), /^\/\S* \(\w+\)$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hostile: control characters in a server's names never reach a terminal as they are", () => {
  const name = "a\x1b]0;owned\x07\x9bb.txt";
  assert.equal(printable(name), "a\\#033]0;owned\\#007\\#233b.txt");
  const line = formatLogfmt({ msg: "m", path: name });
  assert.equal(line, 'msg=m path="a\\u001b]0;owned\\u0007\\u009bb.txt"');
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f]/);
});
