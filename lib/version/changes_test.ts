// A replica's pending work: changed paths merged, bounded, and collapsed into
// one full push past the bound, so a replica down for a day costs little.
import assert from "node:assert/strict";
import { ChangeSet } from "./changes.ts";

Deno.test("ChangeSet: paths merge, deep wins, take empties it", () => {
  const set = new ChangeSet(10);
  assert.equal(set.empty, true);
  assert.equal(set.take(), null);
  assert.equal(set.since, null);
  set.add([{ path: "a/b.txt", deep: false }, { path: "dir", deep: true }]);
  set.add([{ path: "a/b.txt", deep: true }, { path: "dir", deep: false }, {
    path: "c",
    deep: false,
  }]);
  assert.equal(set.size, 3);
  assert.equal(set.empty, false);
  const since = set.since;
  assert.ok(since !== null);
  const work = set.take();
  assert.deepEqual(work, {
    kind: "paths",
    since,
    changes: [
      { path: "a/b.txt", deep: true },
      { path: "dir", deep: true },
      { path: "c", deep: false },
    ],
  });
  assert.deepEqual([set.empty, set.size, set.since, set.take()], [true, 0, null, null]);
});

Deno.test("ChangeSet: past maxPaths distinct paths it is one full push; later changes add nothing", () => {
  const set = new ChangeSet(3);
  set.add(["a", "b", "c"].map((path) => ({ path, deep: false })));
  set.add([{ path: "a", deep: true }]);
  assert.equal(set.fullReason, null, "the same path again is no new path");
  set.add([{ path: "d", deep: false }, { path: "e", deep: false }]);
  assert.equal(set.fullReason, "more than 3 changed paths");
  assert.equal(set.size, 0, "the paths are dropped: the full push covers them");
  set.add(Array.from({ length: 100_000 }, (_, i) => ({ path: `f${i}`, deep: false })));
  assert.equal(set.size, 0);
  const work = set.take();
  assert.equal(work?.kind, "full");
  assert.equal(work?.kind === "full" && work.reason, "more than 3 changed paths");
});

Deno.test("ChangeSet: markFull keeps the first reason and the oldest time", () => {
  const set = new ChangeSet(10);
  set.add([{ path: "a", deep: false }]);
  const since = set.since;
  set.markFull("start");
  set.markFull("reconcile");
  assert.equal(set.fullReason, "start");
  assert.equal(set.since, since);
  assert.deepEqual(set.take(), { kind: "full", reason: "start", since });
  set.markFull("retry after failure");
  assert.equal(set.take()?.kind, "full", "a full push on an empty set");
});
