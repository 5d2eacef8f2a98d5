import assert from "node:assert/strict";
import { formatManifest } from "./manifest.ts";
import { patchManifestState, type PathChange, readKeptManifest } from "./patch.ts";
import { formatRecord, readRecord, recordOf, spliceRecord } from "./record.ts";
import { walkTree } from "./tree.ts";
import {
  readManifestState,
  type StateFiles,
  updateManifest,
  writeManifestState,
} from "./update.ts";
import { sh, withDir } from "./_testing.ts";

const SKIP = [".fanout-version"];

function stateFiles(root: string): StateFiles {
  return { manifest: `${root}/kept.manifest`, record: `${root}/kept.record` };
}

/** The paths only one walk has, and `touched`: what a patch must bring up to date. */
function changed(before: string[], after: string[], touched: string[]): PathChange[] {
  const was = new Set(before), now = new Set(after);
  const paths = new Set([
    ...before.filter((p) => !now.has(p)),
    ...after.filter((p) => !was.has(p)),
  ]);
  return [...paths, ...touched].map((path) => ({ path, listed: now.has(path) }));
}

Deno.test("patchManifestState: the manifest and the record are what a walk of the whole tree makes, and only the changed files are hashed", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(
      root,
      "mkdir -p t/lib/sub t/gone/deep t/z && echo a > t/lib/a.ts && echo b > t/lib/sub/b.ts && " +
        "echo c > t/c.ts && echo d > t/gone/deep/d.ts && echo m > t/mode.sh && " +
        "ln -s a.ts t/lib/l && echo 1 > t/.fanout-version && echo é > 't/z/café.txt' && " +
        "echo y > t/z/y",
    );
    const files = stateFiles(root);
    await writeManifestState(files, await updateManifest(t, null, { skip: SKIP }));
    const before = (await walkTree(t, { skip: SKIP })).map((e) => e.path);

    // Edits, an addition in a new directory, a directory gone, a mode, a
    // symlink retargeted, a file turned into a directory, the first and the
    // last paths changed.
    sh(
      root,
      "echo longer > t/lib/a.ts && rm -r t/gone && chmod 755 t/mode.sh && ln -sfn sub t/lib/l && " +
        "mkdir -p t/new/in && echo n > t/new/in/n.ts && rm t/c.ts && mkdir t/c.ts && " +
        "echo inner > t/c.ts/inner && echo Y > t/z/y && echo 0 > t/0first",
    );
    const after = (await walkTree(t, { skip: SKIP })).map((e) => e.path);
    const changes = changed(before, after, ["lib", "lib/a.ts", "mode.sh", "lib/l", "c.ts", "z/y"]);
    const kept = readKeptManifest(files)!;
    const m = await patchManifestState(files, kept, t, changes);

    const whole = await updateManifest(t, null, { skip: SKIP });
    assert.deepEqual(
      new TextDecoder().decode(m.bytes),
      new TextDecoder().decode(formatManifest(whole.manifest)),
    );
    assert.deepEqual(await Deno.readFile(files.manifest), m.bytes);
    assert.equal(m.paths, whole.manifest.entries.length);
    // a.ts, mode.sh, lib/l, c.ts/inner, new/in/n.ts, z/y, 0first
    assert.equal(m.hashed, 7);
    assert.deepEqual(readRecord(files.record), recordOf(await walkTree(t, { skip: SKIP })));
    // The next walk agrees: nothing to hash.
    assert.equal((await updateManifest(t, readManifestState(files), { skip: SKIP })).hashed, 0);
  });
});

Deno.test("patchManifestState: no record beside the manifest, or one that does not list its paths, is not used", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(root, "mkdir -p t/a && echo a > t/a/x && echo b > t/b");
    const files = stateFiles(root);
    await writeManifestState(files, await updateManifest(t, null));
    const kept = readKeptManifest(files)!;
    await Deno.writeFile(files.record, formatRecord({ entries: [] }));
    sh(root, "echo bb > t/b");
    await assert.rejects(
      patchManifestState(files, kept, t, [{ path: "b", listed: true }]),
      /record holds 0 paths, not 3/,
    );
    await Deno.remove(files.record);
    await assert.rejects(
      patchManifestState(files, kept, t, [{ path: "b", listed: true }]),
      /no record is kept beside/,
    );
    await Deno.remove(files.manifest);
    assert.equal(readKeptManifest(files), null);
  });
});

Deno.test("spliceRecord: entries put, dropped and kept, each sharing its start with its new neighbour", () => {
  const e = (path: string, ino: number) => ({
    path,
    kind: "file" as const,
    mode: 0o644,
    ino,
    size: ino,
    mtimeMs: ino,
    ctimeMs: ino,
  });
  const paths = ["a/b/c", "a/b/d", "a/bc", "a/x😀y", "a/x😀z", "b"];
  const bytes = formatRecord({ entries: paths.map((p, i) => e(p, i)) });
  const out = spliceRecord(bytes, [
    { at: 0, drop: 1, put: [] },
    { at: 3, drop: 1, put: [e("a/x😀", 9), e("a/x😀x", 10)] },
    { at: 6, drop: 0, put: [e("c", 11)] },
  ], { count: paths.length, pathOf: (i) => paths[i] });
  assert.deepEqual(
    readRecordBytes(out),
    [
      e("a/b/d", 1),
      e("a/bc", 2),
      e("a/x😀", 9),
      e("a/x😀x", 10),
      e("a/x😀z", 4),
      e("b", 5),
      e("c", 11),
    ],
  );
  assert.throws(
    () => spliceRecord(bytes, [{ at: 1, drop: 1, put: [] }], { count: 6, pathOf: () => "a/b/zz" }),
    /not "a\/b\/zz"/,
  );
});

function readRecordBytes(bytes: Uint8Array) {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeFileSync(`${dir}/r`, bytes);
    return readRecord(`${dir}/r`)!.entries;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
