// The version marker: parsed strictly from what a server sends, read from a
// tree without following links or reading more than a marker's worth, and
// carried in a module comment that no marker can break out of.
import assert from "node:assert/strict";
import {
  describeVersion,
  formatMarker,
  MARKER_MAX_BYTES,
  markerComment,
  markerFromComment,
  parseMarker,
  parseVersionAnswer,
  readMarker,
  sameVersion,
  type VersionMarker,
} from "./version.ts";
import { CONTROL_CHARS, VERSION_MARKER } from "../core/mod.ts";

const V: VersionMarker = {
  seq: 42,
  commit: "1a2b3c4d5e6f",
  ref: "main",
  published_at: "2026-11-25T21:00:00.000Z",
};

Deno.test("parseMarker: a marker's four fields, nothing else kept", () => {
  assert.deepEqual(parseMarker(formatMarker(V)), V);
  assert.deepEqual(parseMarker(JSON.stringify({ ...V, seq: 0, extra: "x" })), {
    ...V,
    seq: 0,
  });
});

Deno.test("parseMarker: anything else is null", () => {
  for (
    const text of [
      "",
      "null",
      "[]",
      "42",
      '"marker"',
      "{",
      "x".repeat(100_000),
      JSON.stringify({ ...V, seq: -1 }),
      JSON.stringify({ ...V, seq: 1.5 }),
      JSON.stringify({ ...V, seq: "42" }),
      JSON.stringify({ ...V, seq: null }),
      JSON.stringify({ ...V, seq: 2 ** 53 }),
      `{"seq":${"9".repeat(400)},"commit":"a","ref":"b","published_at":"c"}`,
      JSON.stringify({ ...V, commit: 1 }),
      JSON.stringify({ ...V, ref: null }),
      JSON.stringify({ seq: 1, commit: "a", ref: "main" }),
    ]
  ) {
    assert.equal(parseMarker(text), null, text.slice(0, 40));
  }
});

Deno.test("parseMarker: control characters from a server leave each field one clean line", () => {
  const v = parseMarker(JSON.stringify({
    seq: 7,
    commit: "ab\x1b[2Jcd",
    ref: "main\nlevel=error",
    published_at: "2026\x9b31m\u202e",
  }))!;
  assert.equal(v.commit, "ab[2Jcd");
  assert.equal(v.ref, "main level=error");
  assert.equal(v.published_at, "202631m");
  for (const f of [v.commit, v.ref, v.published_at]) assert.doesNotMatch(f, CONTROL_CHARS);
});

Deno.test("readMarker: the tree's marker; a link, a huge file or junk reads as none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-marker-" });
  try {
    const file = `${dir}/${VERSION_MARKER}`;
    assert.equal(readMarker(dir), null, "no marker");
    await Deno.writeTextFile(file, formatMarker(V));
    assert.deepEqual(readMarker(dir), V);
    await Deno.writeTextFile(file, formatMarker(V).padEnd(MARKER_MAX_BYTES + 1, " "));
    assert.equal(readMarker(dir), null, "larger than a marker");
    await Deno.writeTextFile(file, "not json");
    assert.equal(readMarker(dir), null);
    await Deno.remove(file);
    await Deno.writeTextFile(`${dir}/elsewhere`, formatMarker(V));
    await Deno.symlink(`${dir}/elsewhere`, file);
    assert.equal(readMarker(dir), null, "a symlink is not followed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sameVersion: the same publish (seq, commit and time), or both absent", () => {
  assert.equal(sameVersion(V, { ...V }), true);
  assert.equal(sameVersion(V, { ...V, ref: "other" }), true, "the ref is a name, not the publish");
  assert.equal(sameVersion(V, { ...V, seq: 43 }), false);
  assert.equal(sameVersion(V, { ...V, commit: "ffff" }), false);
  assert.equal(sameVersion(V, { ...V, published_at: "2026-11-25T21:00:01.000Z" }), false);
  assert.equal(sameVersion(null, null), true);
  assert.equal(sameVersion(V, null), false);
  assert.equal(sameVersion(null, V), false);
});

Deno.test("formatMarker and describeVersion: one JSON line; a short human form", () => {
  const text = formatMarker({ ...V, extra: "dropped" } as VersionMarker);
  assert.equal(text, JSON.stringify(V) + "\n");
  assert.equal(text.split("\n").length, 2);
  assert.equal(describeVersion(V), "seq 42 (1a2b3c4d main)");
  assert.equal(describeVersion(null), "none");
});

Deno.test("markerComment: reads back through markerFromComment, also inside rsyncd's listing", () => {
  const comment = markerComment(V);
  assert.equal(
    comment,
    "fanout-version seq=42 commit=1a2b3c4d5e6f ref=main at=2026-11-25T21:00:00.000Z",
  );
  assert.deepEqual(markerFromComment(comment), V);
  assert.deepEqual(markerFromComment(`plugins (read only) ${comment}`), V);
  for (const c of ["", "plugins (read only)", "fanout-version seq=x commit=a ref=b at=c"]) {
    assert.equal(markerFromComment(c), null, c);
  }
});

Deno.test("markerFromComment: as strict as parseMarker, a comment's fields as clean", () => {
  const comment = (seq: string, commit = "ab") =>
    `plugins fanout-version seq=${seq} commit=${commit} ref=main at=2026-11-25T21:00:00.000Z`;
  for (const seq of ["9".repeat(400), String(2 ** 53), "99999999999999999999"]) {
    assert.equal(markerFromComment(comment(seq)), null, seq.slice(0, 20));
    assert.equal(parseMarker(JSON.stringify({ ...V, seq: Number(seq) })), null, seq.slice(0, 20));
  }
  assert.equal(markerFromComment(comment(String(2 ** 53 - 1)))?.seq, 2 ** 53 - 1);
  const hostile = markerFromComment(comment("7", "ab\x1b[2J\x9b31m\u202ecd"))!;
  assert.equal(hostile.commit, "ab[2J31mcd");
  assert.deepEqual(
    hostile,
    parseMarker(JSON.stringify({ ...V, seq: 7, commit: "ab\x1b[2J\x9b31m\u202ecd", ref: "main" })),
  );
});

Deno.test("markerComment: nothing of a hostile marker ends, continues or expands the line", () => {
  const comment = markerComment({
    seq: 7,
    commit: "ab\n[evil]\n path = /",
    ref: "%HOME%\\",
    published_at: "2026\x85\t\u00a0x",
  });
  assert.equal(comment.split("\n").length, 1);
  assert.doesNotMatch(comment, /[%\\]/);
  assert.doesNotMatch(comment, CONTROL_CHARS);
  const back = markerFromComment(comment)!;
  assert.equal(back.seq, 7);
  assert.equal(back.commit, "ab_[evil]__path_=_/");
});

Deno.test("parseVersionAnswer: a marker, null, or undefined for any other shape", () => {
  const marker = JSON.stringify(V);
  assert.deepEqual(parseVersionAnswer(`{"version":${marker}}`), V);
  assert.equal(parseVersionAnswer('{"version":null}'), null);
  for (
    const text of [
      "",
      "<html>",
      "null",
      "[]",
      "{}",
      marker,
      '{"version":{"seq":"1"}}',
      `{"version":${JSON.stringify({ ...V, seq: -1 })}}`,
      `{"version":${JSON.stringify({ ...V, seq: 1e300 })}}`,
    ]
  ) {
    assert.equal(parseVersionAnswer(text), undefined, text);
  }
  // Control characters never come through: a marker's strings are one clean line.
  const hostile = parseVersionAnswer(
    `{"version":${JSON.stringify({ ...V, commit: "ab\u001b[2J\ncd" })}}`,
  );
  // deno-lint-ignore no-control-regex
  assert.ok(hostile && !/[\x00-\x1f\x7f-\x9f]/.test(hostile.commit), hostile?.commit);
});
