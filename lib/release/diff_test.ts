import assert from "node:assert/strict";
import { diffManifests, planTree, verifyTree } from "./diff.ts";
import { buildManifest, type Manifest, type ManifestEntry } from "./manifest.ts";
import { sh, withDir } from "./_testing.ts";

const H = (c: string) => c.repeat(64);
const file = (path: string, sha = H("a"), mode = 0o644, size = 1): ManifestEntry => ({
  path,
  type: "file",
  mode,
  size,
  sha256: sha,
});
const dir = (path: string, mode = 0o755): ManifestEntry => ({
  path,
  type: "dir",
  mode,
  size: 0,
  sha256: null,
});
const link = (path: string, sha = H("c")): ManifestEntry => ({
  path,
  type: "symlink",
  mode: 0o777,
  size: 1,
  sha256: sha,
});
const man = (...entries: ManifestEntry[]): Manifest => ({ entries });

Deno.test("diff: added, removed, changed (mode, size, hash) and type changes, each sorted", () => {
  const from = man(
    dir("a"),
    file("a/x"),
    file("a/y"),
    file("b"),
    file("c"),
    link("d"),
    file("e"),
    dir("g"),
  );
  const to = man(
    dir("a"),
    file("a/x"),
    file("a/y", H("b")),
    file("a-new"),
    file("b", H("a"), 0o755),
    dir("c"),
    file("c/inside"),
    link("d", H("d")),
    file("e", H("a"), 0o644, 2),
    file("f"),
  );
  assert.deepEqual(diffManifests(from, to), {
    added: ["a-new", "c/inside", "f"],
    removed: ["g"],
    changed: ["a/y", "b", "d", "e"],
    typeChanged: ["c"],
  });
  assert.deepEqual(diffManifests(to, to), { added: [], removed: [], changed: [], typeChanged: [] });
  assert.deepEqual(diffManifests(man(), from).added, from.entries.map((e) => e.path));
  assert.deepEqual(diffManifests(from, man()).removed, from.entries.map((e) => e.path));
});

Deno.test("verify: a tree built into a manifest verifies; each kind of difference is named at its path", async () => {
  await withDir(async (root) => {
    const setup =
      "umask 022 && rm -rf t && mkdir -p t/lib/sub t/bin && printf 'hello\\n' > t/lib/a.ts && " +
      "printf 'data' > t/lib/sub/b.bin && head -c 300000 /dev/zero > t/lib/sub/big && " +
      "printf '#!/bin/sh\\n' > t/bin/run && chmod 755 t/bin/run && ln -s ../lib/a.ts t/bin/a && " +
      "echo '{}' > t/.fanout-version";
    sh(root, setup);
    const skip = [".fanout-version"];
    const m = await buildManifest(`${root}/t`, { skip });
    assert.equal(await verifyTree(`${root}/t`, m, { skip }), null);

    const cases: [string, string, string, RegExp][] = [
      ["printf 'hellO\\n' > t/lib/a.ts", "lib/a.ts", "content", /SHA-256 differs/],
      ["printf 'hello!\\n' > t/lib/a.ts", "lib/a.ts", "content", /size 7, expected 6/],
      [
        "printf 'x' | dd of=t/lib/sub/big bs=1 seek=299999 conv=notrunc 2>/dev/null",
        "lib/sub/big",
        "content",
        /SHA-256/,
      ],
      ["chmod 700 t/bin/run", "bin/run", "mode", /mode 0700, expected 0755/],
      ["chmod 775 t/lib", "lib", "mode", /mode 0775, expected 0755/],
      ["rm t/lib/sub/b.bin", "lib/sub/b.bin", "missing", /missing, expected a file/],
      ["rm -r t/lib/sub", "lib/sub", "missing", /expected a directory/],
      ["rm t/bin/a && ln -s ../lib/sub t/bin/a", "bin/a", "content", /another target/],
      ["rm t/bin/a && cp t/lib/a.ts t/bin/a", "bin/a", "type", /a file, expected a symlink/],
      // A symlink where a directory was: its listed contents are not followed into.
      [
        "mv t/lib t/elsewhere && ln -s elsewhere t/lib",
        "elsewhere",
        "extra",
        /not in the manifest/,
      ],
      [
        "rm -r t/lib/sub && ln -s /etc t/lib/sub",
        "lib/sub",
        "type",
        /a symlink, expected a directory/,
      ],
      ["touch t/lib/sub/zzz", "lib/sub/zzz", "extra", /not in the manifest/],
      ["mkdir -p t/new/deep && touch t/new/deep/x", "new", "extra", /not in the manifest/],
      ["mkfifo t/bin/pipe", "bin/pipe", "extra", /not in the manifest/],
      ["touch \"t/lib/$(printf 'a\\377')\"", "lib/a\ufffd", "extra", /not in the manifest/],
      [
        "touch t/lib/sub/a\uFFFDb && touch \"t/lib/sub/$(printf 'a\\377b')\"",
        "lib/sub/a\ufffdb",
        "extra",
        /not in the manifest/,
      ],
      // Several: the first in the manifest's order wins, whatever the kind.
      [
        "chmod 700 t/bin/run && touch t/zzz && printf 'hellO\\n' > t/lib/a.ts",
        "bin/run",
        "mode",
        /mode/,
      ],
      ["touch t/aaa && printf 'hellO\\n' > t/lib/a.ts", "aaa", "extra", /not in/],
      ["printf 'hellO\\n' > t/lib/a.ts && rm t/lib/sub/b.bin", "lib/a.ts", "content", /SHA-256/],
    ];
    for (const [script, path, why, re] of cases) {
      sh(root, `${setup} && ${script}`);
      const got = await verifyTree(`${root}/t`, m, { skip });
      assert.ok(got, script);
      assert.deepEqual([got.path, got.why], [path, why], script);
      assert.match(got.detail, re, script);
    }
  });
});

Deno.test("verify: a name the manifest holds, beside a name that is not UTF-8 and reads as it, is refused", async () => {
  await withDir(async (root) => {
    sh(root, "mkdir t && touch t/a\uFFFDb");
    const m = await buildManifest(`${root}/t`);
    assert.equal(await verifyTree(`${root}/t`, m), null);
    sh(root, "touch \"t/$(printf 'a\\377b')\"");
    const got = await verifyTree(`${root}/t`, m);
    assert.deepEqual([got?.path, got?.why], ["a\ufffdb", "extra"]);
    assert.match(got!.detail, /not valid UTF-8/);
  });
});

Deno.test("plan: every listed path that differs (content before mode), every extra path, hashes skipped only where known vouches", async () => {
  await withDir(async (root) => {
    sh(
      root,
      "umask 022 && mkdir -p t/lib t/bin && printf 'hello\\n' > t/lib/a.ts && printf 'b' > t/lib/b && " +
        "printf '#!/bin/sh\\n' > t/bin/run && chmod 755 t/bin/run && ln -s ../lib/a.ts t/bin/a && " +
        "echo '{}' > t/.fanout-version",
    );
    const skip = [".fanout-version"];
    const m = await buildManifest(`${root}/t`, { skip });
    const clean = await planTree(`${root}/t`, m, { skip });
    assert.deepEqual([clean.wrong, clean.extra], [[], []]);
    assert.deepEqual(clean.walked.map((e) => e.path), m.entries.map((e) => e.path));

    sh(
      root,
      "printf 'hellO\\n' > t/lib/a.ts && chmod 700 t/lib/a.ts && chmod 700 t/bin/run && " +
        "rm t/lib/b && mkdir -p t/lib/b/deep && touch t/lib/b/deep/x t/zzz && rm t/bin/a && ln -s x t/bin/a",
    );
    const plan = await planTree(`${root}/t`, m, { skip });
    assert.deepEqual(plan.wrong.map((w) => [w.path, w.why, w.got?.kind ?? null]), [
      ["bin/a", "content", "symlink"],
      ["bin/run", "mode", "file"],
      ["lib/a.ts", "content", "file"],
      ["lib/b", "type", "dir"],
    ]);
    assert.deepEqual(plan.extra.map((e) => e.path), ["lib/b/deep", "lib/b/deep/x", "zzz"]);
    // A stat record vouching for lib/a.ts: its bytes are not read, its mode still counts.
    const known = await planTree(`${root}/t`, m, {
      skip,
      known: (got) => got.path === "lib/a.ts",
    });
    assert.deepEqual(
      known.wrong.filter((w) => w.path === "lib/a.ts").map((w) => w.why),
      ["mode"],
    );
    // Nor is a vouched symlink's target; one not vouched for still is.
    const links = await planTree(`${root}/t`, m, { skip, known: (got) => got.path === "bin/a" });
    assert.ok(!links.wrong.some((w) => w.path === "bin/a"));
    const none = await planTree(`${root}/t`, m, { skip, known: () => false });
    assert.deepEqual(none.wrong.filter((w) => w.path === "bin/a").map((w) => w.why), ["content"]);
  });
});
