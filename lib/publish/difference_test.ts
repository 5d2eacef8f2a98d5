import assert from "node:assert/strict";
import { parseFleet } from "../config/mod.ts";
import { planDifference, readLastPublish } from "./difference.ts";
import { type ListedPath, sentOf } from "./exclude.ts";
import { openRepo, type TreeChange, treeChanges } from "./git.ts";

const FLEET = `tree: plugins
primary:
  name: rsync1
  address: 10.0.0.10
  path: /data/rsync/plugins
publisher:
  name: git1
  address: 10.0.0.5
`;

const c = (path: string, before: TreeChange["before"], after: TreeChange["after"]) => ({
  path,
  before,
  after,
});

Deno.test("planDifference: sends the new side, deletes from the topmost gone path, retouches its directory, lists in the manifest what is sent but fanout's own", () => {
  const changes = [
    c("lib", "dir", "dir"),
    c("lib/a.ts", "file", "file"),
    c("lib/old", "dir", null),
    c("lib/old/x", "file", null),
    c("lib/old/deep", "dir", null),
    c("lib/old/deep/y", "file", null),
    c("swap", "dir", "file"),
    c("swap/in", "file", null),
    c("gone.txt", "file", null),
    c("new", null, "dir"),
    c("new/n.tmp", null, "file"),
    c(".fanout-tmp", null, "file"),
  ];
  const before = new Set(["lib", "lib/a.ts", "lib/old", "lib/old/x", "lib/old/deep"]);
  for (const p of ["lib/old/deep/y", "swap", "swap/in", "gone.txt"]) before.add(p);
  const after = new Set(["lib", "lib/a.ts", "swap", "new", ".fanout-tmp"]);
  const d = planDifference(changes, before, after);
  assert.deepEqual(d.send, [".fanout-tmp", "lib", "lib/a.ts", "new", "swap"]);
  assert.deepEqual(d.deleted, [
    "gone.txt",
    "lib/old/",
    "lib/old/deep/",
    "lib/old/deep/y",
    "lib/old/x",
    "swap/in",
  ]);
  // swap/in goes with the directory the file swap replaces.
  assert.deepEqual(d.deleteRoots, ["gone.txt", "lib/old"]);
  assert.deepEqual(d.retouch, ["lib"]);
  assert.deepEqual(
    d.manifest.filter((m) => m.listed).map((m) => m.path),
    ["lib", "lib/a.ts", "new", "swap"],
  );
  assert.equal(d.manifest.length, changes.length);
});

Deno.test("sentOf: root names decided in place give what rsync's dry run over a skeleton gives", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const paths: ListedPath[] = [
      { path: "conf", dir: true },
      { path: "conf/x", dir: false },
      { path: "cache", dir: false },
      { path: "sub", dir: true },
      { path: "sub/conf", dir: false },
      { path: "sub/cache", dir: true },
      { path: "sub/cache/z", dir: false },
      { path: ".fanout-version", dir: false },
      { path: "with space", dir: false },
      { path: "new\nline", dir: false },
      { path: "café", dir: true },
      { path: "café/é", dir: false },
    ];
    for (const patterns of [["/conf"], ["/cache/", "/café"], ["/sub/", "/conf/", "/with space"]]) {
      const excludes = ["/.fanout-version", "/.fanout-tmp/", ...patterns];
      const fleet = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
      const inPlace = await sentOf(fleet, [...excludes, ".git"], `${dir}/a`, paths);
      // A pattern that matches nothing, but is no root name: rsync decides.
      const byRsync = await sentOf(fleet, [...excludes, "*.never"], `${dir}/b`, paths);
      assert.deepEqual([...inPlace].sort(), [...byRsync].sort(), patterns.join(" "));
      assert.ok(!inPlace.has(".fanout-version"));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("treeChanges: kinds and odd names from git, a kind change between directory and file as one change; a name that is not UTF-8 is a doubt", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const git = (...args: string[]) =>
      new Deno.Command("git", {
        args: ["-c", "user.name=t", "-c", "user.email=t@t", ...args],
        cwd: dir,
        stdout: "piped",
      }).outputSync();
    git("init", "-q");
    const sh = (s: string) => new Deno.Command("sh", { args: ["-c", s], cwd: dir }).outputSync();
    sh("mkdir d && echo a > d/a && echo f > f && ln -s f l && echo s > 'sp ace'");
    git("add", "-A");
    git("commit", "-qm", "1");
    sh(
      "rm -r d && echo now a file > d && rm f && mkdir f && echo x > f/x && printf 'n' > \"$(printf 'new\\nline')\"",
    );
    sh("rm l && echo file > l && chmod +x 'sp ace'");
    git("add", "-A");
    git("commit", "-qm", "2");
    const tree = (rev: string) =>
      new TextDecoder().decode(git("rev-parse", `${rev}^{tree}`).stdout).trim();
    const repo = await openRepo(dir);
    const diff = await treeChanges(repo, tree("HEAD~1"), tree("HEAD"), 100);
    assert.ok("changes" in diff);
    assert.deepEqual(diff.changes.sort((a, b) => a.path < b.path ? -1 : 1), [
      c("d", "dir", "file"),
      c("d/a", "file", null),
      c("f", "file", "dir"),
      c("f/x", null, "file"),
      c("l", "symlink", "file"),
      c("new\nline", null, "file"),
      c("sp ace", "file", "file"),
    ]);
    assert.deepEqual(await treeChanges(repo, tree("HEAD~1"), tree("HEAD"), 6), {
      doubt: "more than 6 paths changed",
    });
    sh("printf x > \"$(printf 'caf\\351')\"");
    git("add", "-A");
    git("commit", "-qm", "3");
    assert.deepEqual(await treeChanges(repo, tree("HEAD~1"), tree("HEAD"), 100), {
      doubt: "a changed name is not UTF-8",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readLastPublish: only a whole record; anything else is none", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/published.json`;
    const marker = {
      seq: 3,
      commit: "a".repeat(40),
      ref: "main",
      published_at: "2026-12-04T00:00:00.000Z",
    };
    const good = { marker, tree: "b".repeat(40), excludes: ["/.fanout-version"], manifest: null };
    assert.equal(readLastPublish(file), null, "none yet");
    for (
      const [v, want] of [
        [good, good],
        [{ ...good, manifest: "c".repeat(64) }, { ...good, manifest: "c".repeat(64) }],
        [{ ...good, manifest: "short" }, null],
        [{ ...good, tree: "not a tree" }, null],
        [{ ...good, excludes: [1] }, null],
        [{ ...good, marker: { seq: "x" } }, null],
      ] as const
    ) {
      await Deno.writeTextFile(file, JSON.stringify(v));
      assert.deepEqual(readLastPublish(file), want, JSON.stringify(v));
    }
    await Deno.writeTextFile(file, "{not json");
    assert.equal(readLastPublish(file), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
