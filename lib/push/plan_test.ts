// What a push sends: scoped paths, or the whole tree when a path cannot be
// scoped or a new marker must go out behind a whole-tree run.
import assert from "node:assert/strict";
import { planPush } from "./push.ts";

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
