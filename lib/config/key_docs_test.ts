import assert from "node:assert/strict";
import { BEGIN, DOCS_FILE, END, keyTable, withKeyTable } from "./key_docs.ts";
import { fleetKeys } from "./keys.ts";

Deno.test("key docs: docs/configuration.md lists the keys as declared", async () => {
  const text = await Deno.readTextFile(DOCS_FILE);
  assert.ok(
    withKeyTable(text) === text,
    "docs/configuration.md's key table differs from lib/config/keys.ts: run `deno task docs`",
  );
});

Deno.test("key docs: only the region between the markers is written", () => {
  const before = "# Title\n\nProse above.\n\n";
  const after = "\n\nProse below.\n";
  const out = withKeyTable(`${before}${BEGIN}\nold table\n${END}${after}`);
  assert.ok(out.startsWith(`${before}${BEGIN}\n\n`));
  assert.ok(out.endsWith(`\n\n${END}${after}`));
  assert.equal(withKeyTable(out), out);
  assert.throws(() => withKeyTable("# no markers\n"), /keys:begin/);
});

Deno.test("key docs: one row per key, each with its default", () => {
  const rows = keyTable().split("\n").slice(2);
  assert.equal(rows.length, fleetKeys().length);
  const row = (key: string) => rows.find((r) => r.startsWith(`| \`${key}\` `))!;
  assert.match(row("push.debounce"), /\| `0ms` +\| `--debounce` +\| wait for this much quiet/);
  assert.match(row("tree"), /\| \(required\) /);
  assert.match(row("publisher.address"), /\| \(required in the section\) /);
  assert.match(row("modules.write"), /\| `<tree>-push` /);
});
