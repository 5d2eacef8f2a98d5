// The version log's format and chain rules, on plain data.
import assert from "node:assert/strict";
import {
  appendEntry,
  changesBetween,
  ENTRY_MAX_PATHS,
  LOG_MAX_BYTES,
  LOG_MAX_ENTRIES,
  newEntry,
  parseLog,
} from "./version_log.ts";
import type { VersionMarker } from "./version.ts";

const v = (seq: number): VersionMarker => ({
  seq,
  commit: `c${seq}`,
  ref: "main",
  published_at: `2026-11-26T00:00:0${seq % 10}Z`,
});

function log(...entries: ReturnType<typeof newEntry>[]): string {
  return entries.reduce((text, e) => appendEntry(text, e), "");
}

Deno.test("version log: one entry gives its paths and deletions", () => {
  const text = log(
    newEntry(v(1), v(2), { paths: ["a.txt", "new/", "new/b.txt"], deleted: ["old.txt"] }),
  );
  const list = changesBetween(parseLog(text), v(1), v(2))!;
  assert.deepEqual(list.paths, ["a.txt", "new", "new/b.txt"]);
  assert.deepEqual([...list.dirs], ["new"]);
  assert.deepEqual(list.deleted, ["old.txt"]);
  assert.equal(list.versions, 1);
});

Deno.test("version log: a chain of entries ends with each path's last state", () => {
  const text = log(
    newEntry(null, v(1), { paths: ["x"], deleted: [] }),
    newEntry(v(1), v(2), { paths: ["gone-later", "d/", "d/f"], deleted: ["back-later"] }),
    newEntry(v(2), v(3), { paths: ["back-later", "./"], deleted: ["gone-later", "d/f"] }),
    // A file that became a directory within one publish: present at the end.
    newEntry(v(3), v(4), { paths: ["file-to-dir/", "file-to-dir/in"], deleted: ["file-to-dir"] }),
  );
  const list = changesBetween(parseLog(text), v(1), v(4))!;
  assert.deepEqual(list.paths, [".", "back-later", "d", "file-to-dir", "file-to-dir/in"]);
  assert.deepEqual(list.deleted, ["d/f", "gone-later"]);
  assert.equal(list.versions, 3);
  // From a later start only the later entries count.
  assert.deepEqual(changesBetween(parseLog(text), v(3), v(4))!.paths, [
    "file-to-dir",
    "file-to-dir/in",
  ]);
});

Deno.test("version log: no unbroken chain, a whole entry, or a target past the log: no list", () => {
  const text = log(
    newEntry(v(1), v(2), { paths: ["a"], deleted: [] }),
    // v(3) is missing: another publisher, or a lost entry.
    newEntry(v(3), v(4), { paths: ["b"], deleted: [] }),
    newEntry(v(4), v(5), { paths: ["c"], deleted: [], whole: true }),
  );
  const entries = parseLog(text);
  assert.equal(changesBetween(entries, v(1), v(4)), null, "gap");
  assert.equal(changesBetween(entries, v(4), v(5)), null, "whole");
  assert.equal(changesBetween(entries, v(1), v(9)), null, "past the end");
  assert.equal(changesBetween(entries, v(2), v(2)), null, "nothing to do is not a list");
  // The same seq with another commit or time is another version.
  assert.equal(changesBetween(entries, { ...v(1), commit: "other" }, v(2)), null);
  assert.ok(changesBetween(entries, v(3), v(4)));
});

Deno.test("version log: an entry with too many paths is written whole", () => {
  const paths = Array.from({ length: ENTRY_MAX_PATHS + 1 }, (_, i) => `f${i}`);
  const e = newEntry(v(1), v(2), { paths, deleted: [] });
  assert.equal(e.whole, true);
  assert.deepEqual(e.paths, []);
});

Deno.test("version log: bounded in entries and bytes, the newest kept; junk lines skipped", () => {
  let text = "";
  for (let i = 1; i <= LOG_MAX_ENTRIES + 20; i++) {
    text = appendEntry(text, newEntry(v(i - 1), v(i), { paths: [`f${i}`], deleted: [] }));
  }
  const entries = parseLog(text);
  assert.equal(entries.length, LOG_MAX_ENTRIES);
  assert.equal(entries.at(-1)!.to.seq, LOG_MAX_ENTRIES + 20);
  const big = Array.from({ length: 900 }, (_, i) => `some/long/directory/name/file-${i}.txt`);
  for (let i = 0; i < 20; i++) {
    text = appendEntry(text, newEntry(v(i), v(i + 1), { paths: big, deleted: [] }));
  }
  assert.ok(text.length <= LOG_MAX_BYTES, `${text.length} bytes`);
  assert.equal(parseLog('not json\n{"to":1}\n' + text).length, parseLog(text).length);
});
