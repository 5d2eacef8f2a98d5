// The pure and file-level pieces of a signed release on the client: which
// tree may serve as rsync's delta basis, how a refusal reads, and how the
// release's own files are written (the marker last, nothing followed).
import assert from "node:assert/strict";
import { manifestDigest, type PlannedFix, recordOf, walkTree } from "../release/mod.ts";
import { formatMarker, type VersionMarker } from "../version/mod.ts";
import type { CheckedRelease } from "./layout.ts";
import { basisFor, fetchGroups } from "./signed_fetch.ts";
import { offence, readBounded, ReleaseRefusal, writeControl } from "./signed_files.ts";
import {
  lookAt,
  recordIsRelease,
  recordIsWhole,
  recordRelease,
  recordVouches,
} from "./signed_state.ts";
import type { ClientJob } from "./job.ts";
import { Logger } from "../core/mod.ts";

const enc = new TextEncoder();

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fanout-signed-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function fix(path: string, got: "file" | "symlink" | null): PlannedFix {
  return {
    path,
    why: got ? "content" : "missing",
    detail: "",
    want: { path, type: "file", mode: 0o644, size: 1, sha256: "a".repeat(64) },
    got: got
      ? { path, kind: got, mode: 0o644, size: 1, ino: 1, dev: 1, mtimeMs: 0, ctimeMs: 0 }
      : null,
  };
}

async function release(
  seq: number,
  lines = [`f 0644 1 ${"a".repeat(64)} a`],
): Promise<CheckedRelease> {
  const marker: VersionMarker = {
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: "2026-11-25T00:00:0" + seq + ".000Z",
  };
  const manifest = enc.encode(["fanout-manifest v1", ...lines, ""].join("\n"));
  const manifest_sha256 = await manifestDigest(manifest);
  return {
    release: { ...marker, manifest_sha256, keyId: "0123456789abcdef" },
    marker,
    bytes: {
      marker: enc.encode(formatMarker(marker)),
      envelope: enc.encode(`env ${seq}\n`),
      manifest,
    },
    manifest: { entries: [] },
  };
}

Deno.test("signed: dest's tree is the delta basis only when no fetched path leads through a symlink or replaces one", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tree/d`, { recursive: true });
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, `${dir}/tree/lnk`);
    const t = `${dir}/tree`;
    assert.equal(basisFor(t, [fix("d/f", "file"), fix("new", null)]), t);
    assert.equal(basisFor(t, [fix("d/f", "file"), fix("lnk/secret", null)]), null);
    assert.equal(basisFor(t, [fix("d/f", "symlink")]), null);
    assert.equal(basisFor(null, [fix("d/f", null)]), null);
  });
});

Deno.test("signed: a refusal is one line naming the server, dest, the path (no control characters) and why", async () => {
  const c = await release(4);
  const job = { source: "rsync://10.0.0.3:8730/plugins/", dest: "/apps/plugins" };
  const r = new ReleaseRefusal(
    job,
    "lib/a\x1b[31m.ts",
    offence({ path: "lib/a.ts", why: "content", detail: "SHA-256 differs" }, c),
    true,
  );
  assert.equal(
    r.message,
    "refusing the version from 10.0.0.3:8730 for /apps/plugins: lib/a[31m.ts: SHA-256 differs " +
      "from the signed manifest of seq 4; nothing changed",
  );
  assert.equal(r.exitCode, 4);
  assert.equal(r.racy, true);
  assert.match(
    offence({ path: "x", why: "missing", detail: "" }, c),
    /^not sent by the server \(not there, or larger than the signed manifest of seq 4 says\)$/,
  );
  assert.equal(
    offence({ path: "x", why: "mode", detail: "mode 0700, expected 0755" }, c),
    "mode 0700, expected 0755, as the signed manifest of seq 4 lists it",
  );
});

Deno.test("signed: the release's files are written whole, the marker last with its publish time, nothing followed", async () => {
  await withDir(async (dir) => {
    const tree = `${dir}/tree`;
    await Deno.mkdir(tree);
    await Deno.writeTextFile(`${dir}/outside`, "keep\n");
    // A symlink where the temporary files go: replaced, not written through.
    await Deno.symlink(`${dir}/outside`, `${tree}/.fanout-tmp`);
    // A release's own file named like a control file's temporary one: kept.
    await Deno.writeTextFile(`${tree}/.fanout-version.fanout-tmp`, "the release's\n");
    const c = await release(5);
    assert.equal(await writeControl(tree, c), true);
    assert.equal(await Deno.readTextFile(`${dir}/outside`), "keep\n");
    assert.equal(await Deno.readTextFile(`${tree}/.fanout-version.fanout-tmp`), "the release's\n");
    await Deno.remove(`${tree}/.fanout-version.fanout-tmp`);
    assert.deepEqual(await Deno.readFile(`${tree}/.fanout-manifest`), c.bytes.manifest);
    assert.deepEqual(await Deno.readFile(`${tree}/.fanout-release`), c.bytes.envelope);
    assert.deepEqual(await Deno.readFile(`${tree}/.fanout-version`), c.bytes.marker);
    const mtime = (await Deno.lstat(`${tree}/.fanout-version`)).mtime!.getTime();
    assert.equal(mtime, Date.parse(c.marker.published_at));
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(tree))).map((e) => e.name).sort(),
      [".fanout-manifest", ".fanout-release", ".fanout-version"],
    );
    // Written again: nothing differs, nothing is written.
    const ino = (await Deno.lstat(`${tree}/.fanout-version`)).ino;
    assert.equal(await writeControl(tree, c), false);
    assert.equal((await Deno.lstat(`${tree}/.fanout-version`)).ino, ino);
    // The next version: each file replaced.
    assert.equal(await writeControl(tree, await release(6)), true);
    assert.match(await Deno.readTextFile(`${tree}/.fanout-version`), /"seq":6/);
    // Rewritten, as after a change to the tree: written without a look at what was there.
    const six = (await Deno.lstat(`${tree}/.fanout-manifest`)).ino;
    const seven = await release(7);
    assert.equal(await writeControl(tree, seven, { rewrite: true }), true);
    assert.notEqual((await Deno.lstat(`${tree}/.fanout-manifest`)).ino, six);
    assert.deepEqual(await Deno.readFile(`${tree}/.fanout-version`), seven.bytes.marker);
  });
});

Deno.test("signed: fetch groups bound what a server can make a client store to about twice what they list", () => {
  const MiB = 1 << 20;
  const sizes = (gs: { size: number }[][]) => gs.map((g) => g.map((e) => e.size));
  // Many small files and one large: the large one with as many as it covers, the rest in one.
  const small = Array.from({ length: 1000 }, () => ({ size: 1000 }));
  const groups = fetchGroups([...small, { size: 100 * MiB }]);
  assert.deepEqual(groups.map((g) => g.length), [2, 999]);
  // Sizes close together share a transfer; none is ever empty or lost.
  assert.deepEqual(
    sizes(fetchGroups([{ size: 30 * MiB }, { size: 20 * MiB }, { size: 25 * MiB }])),
    [
      [30 * MiB, 25 * MiB, 20 * MiB],
    ],
  );
  assert.deepEqual(fetchGroups([]), []);
  for (const list of [small, [{ size: 0 }, { size: 0 }], [{ size: 64 * MiB }, { size: 1 }]]) {
    const gs = fetchGroups(list);
    assert.equal(gs.flat().length, list.length);
    for (const g of gs) {
      const sum = g.reduce((n, e) => n + e.size, 0);
      assert.ok(g.length * g[0].size <= Math.max(2 * sum, 16 * MiB), JSON.stringify(sizes([g])));
    }
  }
});

Deno.test("signed: the stat record vouches for an unchanged file; with the last manifest again the kept copy is not needed, with another it is", async () => {
  await withDir(async (dir) => {
    const tree = `${dir}/tree`;
    await Deno.mkdir(tree);
    await Deno.writeTextFile(`${tree}/a`, "x");
    const job = { stateDir: `${dir}/state`, log: new Logger({ level: "error" }) } as ClientJob;
    await Deno.mkdir(job.stateDir);
    const c = await release(1);
    const walked = await walkTree(tree);
    // Recorded as if walked two seconds from now: every change time is older.
    await recordRelease(job, c, tree, { entries: recordOf(walked).entries, at: Date.now() + 2000 });
    const want = { path: "a", type: "file" as const, mode: 0o644, size: 1, sha256: "a".repeat(64) };
    // Another manifest: the kept copy must list the path by the same line.
    const next = await release(2, [`f 0644 1 ${"a".repeat(64)} a`, `f 0644 1 ${"b".repeat(64)} z`]);
    const other = await recordVouches(job, tree, next);
    assert.equal(other?.(walked[0], want), true);
    const changed = await release(3, [`f 0644 1 ${"b".repeat(64)} a`]);
    const relisted = await recordVouches(job, tree, changed);
    assert.equal(relisted?.(walked[0], { ...want, sha256: "b".repeat(64) }), false);
    // The same manifest: the kept copy is not read.
    await Deno.remove(`${job.stateDir}/release-manifest`);
    const same = await recordVouches(job, tree, c);
    assert.equal(same?.(walked[0], want), true);
    assert.equal(same?.({ ...walked[0], ino: walked[0].ino + 1 }, want), false);
    assert.equal(await recordVouches(job, tree, next), null);
    // Looked at beforehand: the same walk, and the record as it was read then.
    await recordRelease(job, c, tree, { entries: recordOf(walked).entries, at: Date.now() + 2000 });
    const look = lookAt(job, tree, { state: "marked", backupDir: null });
    assert.deepEqual(await look.walked, walked);
    await Deno.remove(`${job.stateDir}/release-record`);
    assert.equal((await look.vouches(next))?.(walked[0], want), true);
    const dirty = lookAt(job, tree, { state: "marked", backupDir: null, forced: true });
    assert.equal(await dirty.vouches(c), null);
  });
});

Deno.test("signed: a tree is its release by its record only when the record was made whole of that manifest and every path is as recorded", async () => {
  await withDir(async (dir) => {
    const tree = `${dir}/tree`;
    await Deno.mkdir(`${tree}/lib`, { recursive: true });
    await Deno.writeTextFile(`${tree}/a`, "x");
    await Deno.writeTextFile(`${tree}/lib/b`, "y");
    const job = { stateDir: `${dir}/state`, log: new Logger({ level: "error" }) } as ClientJob;
    await Deno.mkdir(job.stateDir);
    const c = await release(1);
    const walked = await walkTree(tree);
    const entries = recordOf(walked).entries;
    const later = Date.now() + 2000; // every change time older than the record's walk
    // Not made whole (a fresh walk, or a version's untouched paths): never.
    await recordRelease(job, c, tree, { entries, at: later });
    assert.equal(recordIsWhole(job, tree), false);
    assert.equal(recordIsRelease(job, tree, c, walked), false);
    await recordRelease(job, c, tree, { entries, at: later, whole: true });
    assert.equal(recordIsWhole(job, tree), true);
    assert.equal(recordIsRelease(job, tree, c, walked), true);
    // Another manifest, another tree, or a walk that differs in any way: no.
    const other = await release(2, [`f 0644 1 ${"b".repeat(64)} a`]);
    assert.equal(recordIsRelease(job, tree, other, walked), false);
    assert.equal(recordIsWhole(job, `${dir}/other`), false);
    assert.equal(recordIsRelease(job, `${dir}/other`, c, walked), false);
    const file = walked.findIndex((e) => e.path === "a");
    const with_ = (i: number, e: Partial<(typeof walked)[number]>) =>
      walked.map((w, k) => k === i ? { ...w, ...e } : w);
    for (
      const [why, w] of [
        ["a path fewer", walked.slice(1)],
        ["a path more", [...walked, { ...walked[file], path: "z" }]],
        ["a change time", with_(file, { ctimeMs: walked[file].ctimeMs + 1000 })],
        ["a size", with_(file, { size: 2 })],
        ["an inode", with_(file, { ino: walked[file].ino + 1 })],
        ["a mode", with_(file, { mode: 0o4755 })],
        ["a kind", with_(file, { kind: "symlink" })],
      ] as const
    ) {
      assert.equal(recordIsRelease(job, tree, c, w), false, why);
    }
    // A directory's own times move with what is in it: only its kind and mode count.
    const libDir = walked.findIndex((e) => e.path === "lib");
    const touched = with_(libDir, { mtimeMs: 1, ctimeMs: 1, ino: 7 });
    assert.equal(recordIsRelease(job, tree, c, touched), true);
    assert.equal(recordIsRelease(job, tree, c, with_(libDir, { mode: 0o777 })), false);
    // A file changed within the second the record's walk began: not vouched.
    await recordRelease(job, c, tree, { entries, at: walked[file].ctimeMs, whole: true });
    assert.equal(recordIsRelease(job, tree, c, walked), false);
  });
});

Deno.test("signed: readBounded reads a regular file within its bound, and says why not otherwise", () =>
  withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/small`, "abc");
    await Deno.writeTextFile(`${dir}/large`, "x".repeat(17));
    await Deno.symlink(`${dir}/small`, `${dir}/link`);
    await Deno.mkdir(`${dir}/sub`);
    assert.deepEqual(readBounded(`${dir}/small`, 16), enc.encode("abc"));
    assert.equal(readBounded(`${dir}/large`, 16), "more than 16 bytes");
    assert.equal(readBounded(`${dir}/link`, 16), "not a regular file");
    assert.equal(readBounded(`${dir}/sub`, 16), "not a regular file");
    assert.equal(readBounded(`${dir}/none`, 16), "the source has none");
  }));
