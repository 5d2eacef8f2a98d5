import assert from "node:assert/strict";
import { planDrift } from "./signed_check.ts";
import type { ManifestEntry, TreeEntry } from "../release/mod.ts";

const file = (path: string): ManifestEntry => ({
  path,
  type: "file",
  mode: 0o644,
  size: 1,
  sha256: "00".repeat(32),
});

Deno.test("planDrift: missing, changed (with why) and extra, directories with a slash, symlinks as links", () => {
  const got = { path: "x", kind: "symlink" } as TreeEntry;
  const d = planDrift(
    {
      wrong: [
        { path: "a.txt", why: "content", detail: "SHA-256 differs", want: file("a.txt"), got },
        {
          path: "b",
          why: "missing",
          detail: "missing",
          want: { ...file("b"), type: "dir" },
          got: null,
        },
        { path: "c", why: "mode", detail: "mode", want: { ...file("c"), type: "symlink" }, got },
      ],
      extra: [{ path: "old", kind: "dir" } as TreeEntry, got],
      walked: [],
    },
    "rsync2",
    3,
  );
  assert.deepEqual(d.changed, [
    { path: "a.txt", kind: "file", what: ["content"] },
    { path: "c", kind: "link", what: ["mode"] },
  ]);
  assert.deepEqual(d.missing, [{ path: "b/", kind: "dir" }]);
  assert.deepEqual(d.extra, [{ path: "old/", kind: "dir" }, { path: "x", kind: "link" }]);
  assert.deepEqual([d.sourceEntries, d.server, d.escaped], [4, "rsync2", false]);
});
