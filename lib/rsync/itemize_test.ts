// rsync's itemized output, read back into changed, missing and extra
// entries: from a real rsync dry run between two trees, and from lines a
// server could make up.
import assert from "node:assert/strict";
import { classifyItems, unescapeName } from "./itemize.ts";
import { rsyncArgs, runRsync } from "./rsync.ts";

Deno.test("classifyItems: a real rsync dry run between two trees", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-itemize-" });
  try {
    const src = `${dir}/src`, dst = `${dir}/dst`;
    for (const d of [`${src}/new`, `${dst}/olddir`]) await Deno.mkdir(d, { recursive: true });
    await Deno.writeTextFile(`${src}/same.txt`, "same\n");
    await Deno.writeTextFile(`${dst}/same.txt`, "same\n");
    await Deno.writeTextFile(`${src}/grown.txt`, "longer now\n");
    await Deno.writeTextFile(`${dst}/grown.txt`, "short\n");
    await Deno.writeTextFile(`${src}/new/b.txt`, "b\n");
    await Deno.writeTextFile(`${src}/café.txt`, "c\n");
    await Deno.writeTextFile(`${src}/nl\nname`, "n\n");
    await Deno.symlink("same.txt", `${src}/link`);
    await Deno.writeTextFile(`${dst}/old.txt`, "old\n");
    await Deno.writeTextFile(`${dst}/olddir/x`, "x\n");
    const mtime = new Date("2026-01-01T00:00:00Z");
    for (const p of [`${src}/same.txt`, `${dst}/same.txt`]) await Deno.utime(p, mtime, mtime);
    await Deno.utime(`${dst}/grown.txt`, mtime, mtime);

    const r = await runRsync(rsyncArgs({
      source: `${src}/`,
      dest: `${dst}/`,
      timeout: 10_000,
      delete: true,
      dryRun: true,
      itemize: true,
    }));
    assert.equal(r.code, 0, r.stderr);
    const d = classifyItems(r.items);
    const sorted = (l: { path: string }[]) => l.map((e) => e.path).sort();
    assert.deepEqual(d.changed.map((e) => [e.path, e.kind, e.what]), [
      ["grown.txt", "file", ["size", "time"]],
    ]);
    assert.deepEqual(sorted(d.missing), ["café.txt", "link", "new/", "new/b.txt", "nl\nname"]);
    assert.equal(d.missing.find((e) => e.path === "link")?.kind, "link");
    assert.equal(d.missing.find((e) => e.path === "new/")?.kind, "dir");
    assert.deepEqual(sorted(d.extra), ["old.txt", "olddir/", "olddir/x"]);
    assert.equal(d.escaped, true, "the newline came escaped");
    // skip leaves paths out of every list.
    const skipped = classifyItems(r.items, (p) => p.startsWith("new/") || p === "old.txt");
    assert.deepEqual(sorted(skipped.missing), ["café.txt", "link", "nl\nname"]);
    assert.deepEqual(sorted(skipped.extra), ["olddir/", "olddir/x"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("classifyItems: what differs, in words; the root's own mtime is no drift", () => {
  const d = classifyItems([
    ".d..t...... ./",
    ".d..tp..... ./",
    ">fc.t...... content.txt",
    ".f...p..... mode.txt",
    ".f....og... owner.txt",
    ">f..T...... touched.txt",
    ".f......... same-but-listed.txt",
    "cL+++++++++ l -> target with -> arrow",
  ]);
  assert.deepEqual(d.changed.map((e) => [e.path, e.what]), [
    ["./", ["time", "perms"]],
    ["content.txt", ["content", "time"]],
    ["mode.txt", ["perms"]],
    ["owner.txt", ["owner", "group"]],
    ["touched.txt", ["content", "time"]],
    ["same-but-listed.txt", ["attributes"]],
  ]);
  assert.deepEqual(d.missing, [{ path: "l -> target with -> arrow", kind: "link" }], "a name");
});

Deno.test("classifyItems: made-up and truncated lines are classified, never thrown on", () => {
  const d = classifyItems(["", "x", "*deleting", "*deleting   ", ">f", "?????????? \x1b[2J"]);
  assert.equal(d.changed.length + d.missing.length + d.extra.length, 6);
  for (const e of [...d.changed, ...d.missing, ...d.extra]) assert.equal(typeof e.path, "string");
});

Deno.test("unescapeName: rsync's \\#ooo escapes back into UTF-8; anything else stays", () => {
  assert.equal(unescapeName("caf\\#303\\#251.txt"), "café.txt");
  assert.equal(unescapeName("nl\\#012x"), "nl\nx");
  assert.equal(unescapeName("plain.txt"), "plain.txt");
  assert.equal(unescapeName("\\#"), "\\#", "no digits");
  assert.equal(unescapeName("a\\#30"), "a\\#30", "too few digits");
  assert.equal(unescapeName("a\\#999"), "a\\#999", "not octal");
  assert.equal(unescapeName("\\#377\\#376"), "\ufffd\ufffd", "not UTF-8: replaced, not thrown");
  assert.equal(unescapeName("日本\\#041"), "日本!");
  assert.equal(unescapeName("\\#101".repeat(10_000)), "A".repeat(10_000));
});
