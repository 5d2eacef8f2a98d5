import assert from "node:assert/strict";
import {
  compareRecord,
  formatRecord,
  parseRecord,
  readRecord,
  RECORD_HEADER,
  RecordError,
  recordTree,
  writeRecord,
} from "./record.ts";
import { sh, withDir } from "./_testing.ts";

Deno.test("record: a walk's record writes, reads back the same, and compares equal to a new walk of an untouched tree", async () => {
  await withDir(async (root) => {
    // Names sharing half a surrogate pair, and names that share nothing.
    sh(
      root,
      "mkdir -p t/lib/sub && echo a > t/lib/a.ts && echo b > t/lib/sub/b && ln -s a.ts t/lib/l && " +
        "touch t/\u{1F600} t/\u{1F601} 't/with space' t/.fanout-version && mkfifo t/lib/pipe",
    );
    const r = recordTree(`${root}/t`, { skip: [".fanout-version"] });
    assert.deepEqual(r.entries.map((e) => `${e.kind} ${e.path}`), [
      "dir lib",
      "file lib/a.ts",
      "symlink lib/l",
      "other lib/pipe",
      "dir lib/sub",
      "file lib/sub/b",
      "file with space",
      "file \u{1F600}",
      "file \u{1F601}",
    ]);
    const st = Deno.lstatSync(`${root}/t/lib/a.ts`);
    assert.deepEqual(r.entries[1], {
      path: "lib/a.ts",
      kind: "file",
      mode: st.mode! & 0o7777,
      ino: st.ino,
      size: 2,
      mtimeMs: st.mtime!.getTime(),
      ctimeMs: st.ctime!.getTime(),
    });
    const text = formatRecord(r);
    assert.ok(text.startsWith(RECORD_HEADER + "\n"));
    assert.match(text, / 4 sub\n/, 'lib/sub shares "lib/" with lib/pipe');
    assert.match(text, / 0 \u{1F601}\n/u, "half a surrogate pair is not shared");
    assert.deepEqual(parseRecord(text), r);

    await writeRecord(`${root}/tree.record`, r);
    assert.equal(Deno.statSync(`${root}/tree.record`).mode! & 0o777, 0o600);
    assert.deepEqual(readRecord(`${root}/tree.record`), r);
    assert.deepEqual(compareRecord(r, recordTree(`${root}/t`, { skip: [".fanout-version"] })), {
      changed: [],
      added: [],
      removed: [],
    });
    // Written again over the old one.
    await writeRecord(`${root}/tree.record`, { entries: r.entries.slice(1) });
    assert.equal(readRecord(`${root}/tree.record`)!.entries.length, r.entries.length - 1);
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["t", "tree.record"]);
  });
});

Deno.test("record: a fresh walk names what changed (content, mode, mtime, inode, type), what came and what went", async () => {
  await withDir((root) => {
    sh(
      root,
      "mkdir -p t/d && for f in size mode mtime ino type gone same; do echo 12345 > t/$f; done",
    );
    const before = recordTree(`${root}/t`);
    sh(
      root,
      "cd t && echo more >> size && chmod 600 mode && touch -d '2001-01-01 00:00:00' mtime && " +
        "echo 54321 > ino.new && mv ino.new ino && rm type && mkdir type && rm gone && touch new d/new",
    );
    const now = recordTree(`${root}/t`);
    assert.deepEqual(compareRecord(before, now), {
      // d: its listing changed (its mtime and ctime move with it).
      changed: ["d", "ino", "mode", "mtime", "size", "type"],
      added: ["d/new", "new"],
      removed: ["gone"],
    });
  });
});

Deno.test("record: a missing record is null; a symlink, a big or a malformed one is refused", async () => {
  await withDir(async (root) => {
    assert.equal(readRecord(`${root}/none`), null);
    await writeRecord(`${root}/real`, { entries: [] });
    Deno.symlinkSync(`${root}/real`, `${root}/link`);
    assert.throws(
      () => readRecord(`${root}/link`),
      (e) => e instanceof RecordError && /not a regular file/.test(e.message),
    );
    Deno.writeTextFileSync(`${root}/big`, RECORD_HEADER + "\n" + "x".repeat(100));
    assert.throws(
      () => readRecord(`${root}/big`, { maxBytes: 64, maxPaths: 10 }),
      (e) => e instanceof RecordError && /more than 64 bytes/.test(e.message),
    );
    Deno.writeFileSync(
      `${root}/latin1`,
      new Uint8Array([...new TextEncoder().encode(RECORD_HEADER + "\n"), 0xff]),
    );
    assert.throws(
      () => readRecord(`${root}/latin1`),
      (e) => e instanceof RecordError && /not valid UTF-8/.test(e.message),
    );
  });

  const line = (rest: string) => `f0644 1 2 3 4 ${rest}`;
  const refused = (lines: string[], re: RegExp, text?: string) =>
    assert.throws(
      () =>
        parseRecord(text ?? [RECORD_HEADER, ...lines, ""].join("\n"), {
          maxBytes: 1000,
          maxPaths: 3,
        }),
      (e) => e instanceof RecordError && re.test(e.message),
      JSON.stringify(lines),
    );
  assert.deepEqual(
    parseRecord([RECORD_HEADER, line("0 a"), line("1 b"), ""].join("\n")).entries.map((e) =>
      e.path
    ),
    ["a", "ab"],
  );
  refused([], /longer than 1000/, RECORD_HEADER + "\n" + "x".repeat(1000));
  refused([], /does not end with a newline/, RECORD_HEADER);
  refused([], /expected "fanout-record v1"/, "fanout-record v2\n");
  refused([line("0 a"), line("0 b"), line("0 c"), line("0 d")], /4 paths, more than 3/);
  refused(["x0644 1 2 3 4 0 a"], /line 2: not a record line/);
  refused(["f644 1 2 3 4 0 a"], /not a record line/);
  refused(["f0644 1 2 3 0 a"], /not a record line/);
  refused(["f0644 1 2 3 4 0 a\nb"], /not a record line/);
  refused(["f0644 zzzzzzzzzzz 2 3 4 0 a"], /too big/);
  refused([line("1 a")], /shares 1 characters with a path of 0/);
  refused([line("0 ")], /path "" is not valid/);
  refused([line("0 a\x1b")], /path "a\\u001b" is not valid/);
  refused([line("0 b"), line("0 a")], /line 3: "a" is not after "b"/);
  refused([line("0 a"), line("1 ")], /line 3: "a" is not after "a"/);
});
