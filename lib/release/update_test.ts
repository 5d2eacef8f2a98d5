import assert from "node:assert/strict";
import { buildManifest, formatManifest, ManifestError } from "./manifest.ts";
import { RecordError } from "./record.ts";
import {
  readManifestState,
  type StateFiles,
  updateManifest,
  writeManifestState,
} from "./update.ts";
import { sh, withDir } from "./_testing.ts";

const SKIP = [".fanout-version", ".fanout-manifest"];

function stateFiles(root: string): StateFiles {
  return { manifest: `${root}/kept.manifest`, record: `${root}/kept.record` };
}

Deno.test("updateManifest: hashes only what changed since the kept state, and builds what buildManifest builds", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(
      root,
      "mkdir -p t/lib/sub t/gone && echo a > t/lib/a.ts && echo b > t/lib/sub/b.ts && " +
        "echo c > t/c.ts && echo d > t/gone/d.ts && echo m > t/mode.sh && ln -s a.ts t/lib/l && " +
        "echo 1 > t/.fanout-version",
    );
    const files = stateFiles(root);
    assert.equal(readManifestState(files), null, "nothing kept yet");

    const first = await updateManifest(t, null, { skip: SKIP });
    assert.equal(first.hashed, 6, "every file and symlink");
    assert.deepEqual(first.manifest, await buildManifest(t, { skip: SKIP }));
    const bytes = await writeManifestState(files, first);
    assert.deepEqual(bytes, formatManifest(first.manifest));
    assert.equal(Deno.statSync(files.manifest).mode! & 0o777, 0o600);
    assert.deepEqual(readManifestState(files), { manifest: first.manifest, record: first.record });

    const untouched = await updateManifest(t, readManifestState(files), { skip: SKIP });
    assert.equal(untouched.hashed, 0);
    assert.deepEqual(untouched.manifest, first.manifest);

    // A file rewritten (another size), one replaced by rename (a new inode,
    // same size), one added, a directory removed, a mode changed, a symlink
    // pointed elsewhere: only the files and the symlink are hashed again.
    sh(
      root,
      "echo longer > t/lib/a.ts && echo X > t/c.new && mv t/c.new t/c.ts && echo n > t/new.ts && " +
        "rm -r t/gone && chmod 755 t/mode.sh && ln -sfn sub t/lib/l",
    );
    const next = await updateManifest(t, readManifestState(files), { skip: SKIP });
    assert.deepEqual(next.manifest, await buildManifest(t, { skip: SKIP }));
    assert.equal(next.hashed, 5, "a.ts, c.ts, new.ts, mode.sh, lib/l");
    await writeManifestState(files, next);
    assert.equal((await updateManifest(t, readManifestState(files), { skip: SKIP })).hashed, 0);
  });
});

Deno.test("updateManifest: a manifest kept without its new record (a run stopped between the writes) still gives the right manifest", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(root, "mkdir t && echo a > t/a && echo b > t/b");
    const files = stateFiles(root);
    await writeManifestState(files, await updateManifest(t, null));
    const oldRecord = await Deno.readFile(files.record);
    sh(root, "echo changed > t/a");
    await writeManifestState(files, await updateManifest(t, readManifestState(files)));
    // The new manifest with the old record: a.ts differs from that record, so it is hashed.
    await Deno.writeFile(files.record, oldRecord);
    const again = await updateManifest(t, readManifestState(files));
    assert.deepEqual(again.manifest, await buildManifest(t));
    assert.equal(again.hashed, 1);
  });
});

Deno.test("updateManifest: a kept entry that disagrees with the walk is hashed again; a filter leaves paths out", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(root, "mkdir -p t/x && echo a > t/a && echo b > t/x/b.tmp && echo c > t/x/c");
    const first = await updateManifest(t, null, { filter: (p) => !p.endsWith(".tmp") });
    assert.deepEqual(first.manifest.entries.map((e) => e.path), ["a", "x", "x/c"]);
    // A kept entry whose size is not the file's: never taken as it is.
    const lying = {
      manifest: {
        entries: first.manifest.entries.map((e) => e.path === "a" ? { ...e, size: 7 } : e),
      },
      record: first.record,
    };
    const fixed = await updateManifest(t, lying, { filter: (p) => !p.endsWith(".tmp") });
    assert.deepEqual(fixed.manifest, first.manifest);
    assert.equal(fixed.hashed, 1);
  });
});

Deno.test("readManifestState: a missing half is nothing kept; a damaged file, a symlink or one too big is refused", async () => {
  await withDir(async (root) => {
    const t = `${root}/t`;
    sh(root, "mkdir t && echo a > t/a");
    const files = stateFiles(root);
    await writeManifestState(files, await updateManifest(t, null));
    const manifest = await Deno.readFile(files.manifest);

    await Deno.remove(files.manifest);
    assert.equal(readManifestState(files), null);
    await Deno.writeTextFile(files.manifest, "fanout-manifest v1\nf 0644 2 zz a\n");
    assert.throws(() => readManifestState(files), ManifestError);
    await Deno.remove(files.manifest);
    await Deno.symlink(`${root}/elsewhere`, files.manifest);
    assert.throws(() => readManifestState(files), /is not a regular file/);
    await Deno.remove(files.manifest);
    await Deno.writeFile(files.manifest, manifest);
    assert.throws(
      () => readManifestState(files, { maxBytes: 10, maxPaths: 10 }),
      /is more than 10 bytes/,
    );
    await Deno.writeTextFile(files.record, "not a record");
    assert.throws(() => readManifestState(files), RecordError);
    await Deno.remove(files.record);
    assert.equal(readManifestState(files), null);
  });
});
