import assert from "node:assert/strict";
import {
  compareRecord,
  formatRecord,
  parseRecord,
  readRecord,
  RECORD_MAGIC,
  type RecordEntry,
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
    const r = await recordTree(`${root}/t`, { skip: [".fanout-version"] });
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
    const bytes = formatRecord(r);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 16)), RECORD_MAGIC);
    // Each path but what it shares with the one before; never half a surrogate pair.
    assert.equal(
      new TextDecoder().decode(bytes.subarray(24 + 40 * r.entries.length)),
      "lib\n/a.ts\nl\npipe\nsub\n/b\nwith space\n\u{1F600}\n\u{1F601}\n",
    );
    assert.deepEqual(parseRecord(bytes), r);
    // Bytes at an offset typed arrays cannot view in place.
    const odd = new Uint8Array(bytes.length + 3);
    odd.set(bytes, 3);
    assert.deepEqual(parseRecord(odd.subarray(3)), r);

    await writeRecord(`${root}/tree.record`, r);
    assert.equal(Deno.statSync(`${root}/tree.record`).mode! & 0o777, 0o600);
    assert.deepEqual(readRecord(`${root}/tree.record`), r);
    assert.deepEqual(
      compareRecord(r, await recordTree(`${root}/t`, { skip: [".fanout-version"] })),
      {
        changed: [],
        added: [],
        removed: [],
      },
    );
    // Written again over the old one.
    await writeRecord(`${root}/tree.record`, { entries: r.entries.slice(1) });
    assert.equal(readRecord(`${root}/tree.record`)!.entries.length, r.entries.length - 1);
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["t", "tree.record"]);
  });
});

Deno.test("record: a fresh walk names what changed (content, mode, mtime, inode, type), what came and what went", async () => {
  await withDir(async (root) => {
    sh(
      root,
      "mkdir -p t/d && for f in size mode mtime ino type gone same; do echo 12345 > t/$f; done",
    );
    const before = await recordTree(`${root}/t`);
    sh(
      root,
      "cd t && echo more >> size && chmod 600 mode && touch -d '2001-01-01 00:00:00' mtime && " +
        "echo 54321 > ino.new && mv ino.new ino && rm type && mkdir type && rm gone && touch new d/new",
    );
    const now = await recordTree(`${root}/t`);
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
    Deno.writeFileSync(`${root}/big`, new Uint8Array(100));
    assert.throws(
      () => readRecord(`${root}/big`, { maxBytes: 64, maxPaths: 10 }),
      (e) => e instanceof RecordError && /more than 64 bytes/.test(e.message),
    );
    assert.throws(
      () => readRecord(`${root}/big`),
      (e) => e instanceof RecordError && /does not start with/.test(e.message),
    );
  });

  const entry = (path: string): RecordEntry => ({
    path,
    kind: "file",
    mode: 0o644,
    ino: 1,
    size: 2,
    mtimeMs: 3,
    ctimeMs: 4,
  });
  const good = formatRecord({ entries: [entry("a"), entry("ab"), entry("b")] });
  const refused = (bytes: Uint8Array, re: RegExp, what: string) =>
    assert.throws(
      () => parseRecord(bytes, { maxBytes: 1000, maxPaths: 3 }),
      (e) => e instanceof RecordError && re.test(e.message),
      what,
    );
  const patched = (fn: (b: Uint8Array, nums: Float64Array, codes: Uint32Array) => void) => {
    const b = good.slice();
    fn(b, new Float64Array(b.buffer, 24, 12), new Uint32Array(b.buffer, 24 + 96, 6));
    return b;
  };
  assert.deepEqual(parseRecord(good).entries.map((e) => e.path), ["a", "ab", "b"]);
  refused(new Uint8Array(1001), /1001 bytes, more than 1000/, "big");
  refused(new Uint8Array(10), /does not start with "fanout-record v1"/, "short");
  refused(patched((b) => b[15] = 0x32), /does not start with/, "magic");
  refused(good.subarray(0, good.length - 1), /not the \d+ its counts say/, "cut");
  refused(
    formatRecord({ entries: ["a", "b", "c", "d"].map(entry) }),
    /lists 4 paths, more than 3/,
    "paths",
  );
  refused(patched((b) => b[b.length - 2] = 0xff), /not valid UTF-8/, "utf-8");
  refused(patched((b) => b[b.length - 2] = 0x0a), /holds 4 paths, not 3/, "newlines");
  refused(patched((b) => b[b.length - 2] = 0x1b), /path "\\u001b" is not valid/, "control");
  refused(patched((_b, _n, c) => c[2] = 4 * 0o10000), /record path 2: kind 4 is not one/, "kind");
  refused(patched((_b, _n, c) => c[3] = 2), /shares 2 characters with a path of 1/, "shared");
  refused(patched((_b, n) => n[5] = 1.5), /record path 2: a number is not a whole one/, "number");
  refused(patched((_b, n) => n[6] = NaN), /a number is not a whole one/, "NaN");
  refused(
    formatRecord({ entries: [entry("b"), entry("a")] }),
    /record path 2: "a" is not after "b"/,
    "order",
  );
  refused(formatRecord({ entries: [entry("a"), entry("a")] }), /"a" is not after "a"/, "twice");
  refused(formatRecord({ entries: [entry("")] }), /path "" is not valid/, "empty");
  assert.throws(
    () => formatRecord({ entries: [entry("a\nb")] }),
    (e) => e instanceof RecordError && /"a\\nb" holds a control character/.test(e.message),
  );
});
