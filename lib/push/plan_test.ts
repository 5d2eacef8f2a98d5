// What a push sends: scoped paths, or the whole tree when a path cannot be
// scoped or a new marker must go out behind a whole-tree run.
import assert from "node:assert/strict";
import { planPush, versionChanges } from "./plan.ts";

const paths = (...p: string[]) => ({
  kind: "paths" as const,
  changes: p.map((path) => ({ path, deep: false })),
  since: 0,
});

Deno.test("planPush: a full work item is a whole push with its reason", () => {
  assert.deepEqual(planPush({ kind: "full", reason: "start", since: 0 }, "m1", null), {
    kind: "full",
    changes: [],
    reason: "start",
  });
});

Deno.test("planPush: paths under an unchanged marker go scoped", () => {
  const work = paths("a.txt", "d/b.txt");
  assert.deepEqual(planPush(work, "m1", "m1"), {
    kind: "scoped",
    changes: work.changes,
    reason: "2 paths",
  });
  assert.equal(planPush(work, null, null).kind, "scoped");
});

Deno.test("planPush: a marker the replica has not acknowledged takes the whole tree", () => {
  assert.deepEqual(planPush(paths("a.txt"), "m2", "m1"), {
    kind: "full",
    changes: [],
    reason: "new version",
  });
  assert.equal(planPush(paths("a.txt"), "m1", null).kind, "full");
});

Deno.test("planPush: a path no filter rule can name takes the whole tree", () => {
  assert.deepEqual(planPush(paths("a.txt", "line\nbreak"), "m1", "m1"), {
    kind: "full",
    changes: [],
    reason: "2 paths",
  });
});

const marker = (seq: number) =>
  JSON.stringify({
    seq,
    commit: `${seq}`.repeat(40).slice(0, 40),
    ref: "main",
    published_at: `2026-12-04T00:00:0${seq}.000Z`,
  }) + "\n";

const entry = (from: number | null, to: number, change: object) =>
  JSON.stringify({
    to: JSON.parse(marker(to)),
    from: from === null ? null : JSON.parse(marker(from)),
    paths: [],
    deleted: [],
    whole: false,
    ...change,
  });

Deno.test("planPush: a new version the log covers sends its paths and the ones whose events arrived", () => {
  const changes = [{ path: "b.txt", deep: false }, { path: ".fanout-changes", deep: false }];
  assert.deepEqual(planPush(paths("a.txt", "b.txt"), "m2", "m1", changes), {
    kind: "version",
    changes: [{ path: "a.txt", deep: false }, ...changes],
    reason: "new version, 2 paths",
  });
  const dir = { kind: "paths" as const, changes: [{ path: "b.txt", deep: true }], since: 0 };
  assert.deepEqual(planPush(dir, "m2", "m1", changes).changes[0], { path: "b.txt", deep: true });
  assert.equal(planPush(paths("a.txt"), "m2", "m1", null).kind, "full");
  assert.equal(planPush(paths(), "m2", "m1", [{ path: "x\ny", deep: false }]).kind, "full");
  assert.equal(
    planPush({ kind: "full", reason: "reconcile", since: 0 }, "m2", "m1", []).kind,
    "full",
  );
});

Deno.test("versionChanges: the log's chain from the acknowledged version, deletions deep (a directory named is its own entry), the log itself", () => {
  const log = [
    entry(null, 1, { whole: true }),
    entry(1, 2, { paths: ["a.txt", "new/", "new/c.txt"], deleted: ["old/", "old/x"] }),
    entry(2, 3, { paths: ["b.txt"], deleted: ["a.txt"] }),
  ].join("\n") + "\n";
  assert.deepEqual(versionChanges(log, marker(1), marker(3)), [
    { path: "b.txt", deep: false },
    { path: "new", deep: false },
    { path: "new/c.txt", deep: false },
    { path: "a.txt", deep: true },
    { path: "old", deep: true },
    { path: "old/x", deep: true },
    { path: ".fanout-changes", deep: false },
  ]);
  assert.equal(versionChanges(log, marker(0), marker(3)), null, "no chain from 0");
  assert.equal(versionChanges(log, null, marker(3)), null, "nothing acknowledged");
  assert.equal(versionChanges(null, marker(1), marker(3)), null, "no log");
  assert.equal(versionChanges(log, "not a marker", marker(3)), null);
  for (const bad of ["../etc/passwd", "/etc/passwd", "a//b", "./a", "a/..", "a\x1bb", "."]) {
    const text = log + entry(3, 4, { paths: [bad] }) + "\n";
    assert.equal(versionChanges(text, marker(3), marker(4)), null, JSON.stringify(bad));
    const gone = log + entry(3, 4, { deleted: [bad] }) + "\n";
    assert.equal(versionChanges(gone, marker(3), marker(4)), null, JSON.stringify(bad));
  }
  const whole = log + entry(3, 4, { whole: true }) + "\n";
  assert.equal(versionChanges(whole, marker(3), marker(4)), null, "a whole entry");
});
