import assert from "node:assert/strict";
import {
  buildManifest,
  formatManifest,
  generateKeyPair,
  loadSigningKey,
  manifestDigest,
  RELEASE_SKIP,
  type SigningKey,
  signRelease,
  writePrivateKey,
} from "../release/mod.ts";
import { formatMarker, newEntry, type VersionMarker } from "../version/mod.ts";
import { type Vouch, Voucher } from "./mod.ts";

function markerOf(seq: number): VersionMarker {
  return {
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: new Date(Date.UTC(2026, 11, 4, 0, 0, seq)).toISOString(),
  };
}

interface Lab {
  root: string;
  state: string;
  key: SigningKey;
  other: SigningKey;
  log: string;
  last: VersionMarker | null;
  /** Every voucher made here: their writing ends before the lab goes. */
  vouchers: Voucher[];
}

async function keyIn(dir: string, name: string): Promise<SigningKey> {
  const pair = await generateKeyPair();
  await writePrivateKey(`${dir}/${name}`, pair.privatePem);
  return await loadSigningKey(`${dir}/${name}`);
}

async function withLab(body: (lab: Lab) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const root = `${dir}/tree`;
    await Deno.mkdir(root);
    const lab: Lab = {
      root,
      state: `${dir}/state`,
      key: await keyIn(dir, "key"),
      other: await keyIn(dir, "other"),
      log: "",
      last: null,
      vouchers: [],
    };
    try {
      await body(lab);
    } finally {
      await Promise.all(lab.vouchers.map((v) => v.settled()));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Lands version `seq` as a push leaves it: `write` changes the tree, then
 * the manifest of the tree (or of `manifestOf`), the envelope signed by
 * `key`, the log entry naming `paths`, the marker last.
 */
async function land(
  lab: Lab,
  seq: number,
  paths: string[],
  write: (root: string) => Promise<void>,
  opts: { key?: SigningKey; manifestOf?: (root: string) => Promise<Uint8Array> } = {},
): Promise<VersionMarker> {
  await write(lab.root);
  const m = markerOf(seq);
  const manifest = opts.manifestOf
    ? new Uint8Array(await opts.manifestOf(lab.root))
    : formatManifest(await buildManifest(lab.root, { skip: [...RELEASE_SKIP, ".fanout-tmp"] }));
  await Deno.writeFile(`${lab.root}/.fanout-manifest`, manifest);
  const envelope = await signRelease(
    { ...m, manifest_sha256: await manifestDigest(manifest) },
    opts.key ?? lab.key,
  );
  await Deno.writeFile(`${lab.root}/.fanout-release`, envelope);
  lab.log += JSON.stringify(newEntry(lab.last, m, { paths, deleted: [] })) + "\n";
  await Deno.writeTextFile(`${lab.root}/.fanout-changes`, lab.log);
  await Deno.writeTextFile(`${lab.root}/.fanout-version`, formatMarker(m));
  lab.last = m;
  return m;
}

function voucherOf(
  lab: Lab,
  opts: {
    trusted?: boolean;
    excludes?: string[];
    watched?: boolean;
    quietMs?: number;
    quietMaxMs?: number;
    clock?: () => number;
  } = {},
): Voucher {
  const voucher = new Voucher({
    root: lab.root,
    stateDir: lab.state,
    trusted: opts.trusted === false ? [] : [lab.key.publicKey],
    excludes: opts.excludes ?? [],
    watched: () => opts.watched ?? true,
    quietMs: opts.quietMs ?? 0,
    quietMaxMs: opts.quietMaxMs,
    clock: opts.clock,
  });
  lab.vouchers.push(voucher);
  return voucher;
}

function seqOf(v: Vouch): number | null {
  return v.state === "refused" ? null : v.marker?.seq ?? null;
}

const v1 = (root: string) =>
  Promise.all([
    Deno.writeTextFile(`${root}/a.txt`, "alpha\n"),
    Deno.mkdir(`${root}/lib`).then(() => Deno.writeTextFile(`${root}/lib/b.txt`, "bravo\n")),
  ]).then(() => {});

Deno.test("vouch: an unsigned fleet's marker is announced as read, unchecked", async () => {
  await withLab(async (lab) => {
    await land(lab, 1, [], v1);
    const v = await voucherOf(lab, { trusted: false }).check();
    assert.deepEqual(v.state, "unchecked");
    assert.deepEqual(seqOf(v), 1);
  });
});

Deno.test("vouch: a tree that is its signed version is vouched for, by a walk and then by difference", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    const first = await voucher.check();
    assert.deepEqual(first.state, "verified");
    assert.deepEqual(first.state === "verified" && first.by, "walk");
    await land(lab, 2, ["a.txt"], (r) => Deno.writeTextFile(`${r}/a.txt`, "alpha v2\n"));
    const second = await voucher.check();
    assert.deepEqual(second.state === "verified" && [second.by, second.hashed], ["difference", 1]);
    assert.deepEqual(seqOf(second), 2);
    // The same marker again: nothing read but the marker.
    assert.deepEqual(await voucher.check(), second);
  });
});

Deno.test("vouch: a version whose file is missing from the tree is refused, naming the file", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.deepEqual((await voucher.check()).state, "verified");
    // The manifest lists lib/c.txt, the push that should have brought it did not.
    await land(lab, 2, ["lib/c.txt"], async () => {}, {
      manifestOf: async (root) => {
        await Deno.writeTextFile(`${root}/lib/c.txt`, "charlie\n");
        const m = formatManifest(await buildManifest(root, { skip: RELEASE_SKIP }));
        await Deno.remove(`${root}/lib/c.txt`);
        return m;
      },
    });
    const v = await voucher.check();
    assert.deepEqual(v.state, "refused");
    assert.deepEqual(v.state === "refused" && v.path, "lib/c.txt");
    assert.deepEqual(seqOf(v), null);
    // The file arrives: the next check vouches for the version.
    await Deno.writeTextFile(`${lab.root}/lib/c.txt`, "charlie\n");
    assert.deepEqual(seqOf(await voucher.check(true)), 2);
  });
});

Deno.test("vouch: an edit under an intact marker is found by the next full check", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.deepEqual((await voucher.check()).state, "verified");
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO\n");
    const v = await voucher.check(true);
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
  });
});

Deno.test("vouch: an envelope by an untrusted key, or of another version, is refused", async () => {
  await withLab(async (lab) => {
    await land(lab, 1, [], v1, { key: lab.other });
    const v = await voucherOf(lab).check();
    assert.deepEqual(v.state, "refused");
    assert(v.state === "refused" && v.why.includes("not trusted"), JSON.stringify(v));
  });
  await withLab(async (lab) => {
    await land(lab, 1, [], v1);
    await Deno.writeTextFile(`${lab.root}/.fanout-version`, formatMarker(markerOf(7)));
    const v = await voucherOf(lab).check();
    assert(v.state === "refused" && v.why.includes("not version 7's"), JSON.stringify(v));
  });
});

Deno.test("vouch: excluded paths and the server's temp dir are not the version's", async () => {
  await withLab(async (lab) => {
    await land(lab, 1, [], v1);
    await Deno.mkdir(`${lab.root}/.fanout-tmp`);
    await Deno.writeTextFile(`${lab.root}/.fanout-tmp/partial`, "x");
    await Deno.writeTextFile(`${lab.root}/local.log`, "kept here only\n");
    const v = await voucherOf(lab, { excludes: ["*.log"] }).check();
    assert.deepEqual(v.state, "verified");
  });
});

Deno.test("vouch: a logged path below a symlink is never followed out of the tree", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.deepEqual((await voucher.check()).state, "verified");
    const outside = `${lab.state}-outside`;
    await Deno.mkdir(outside);
    try {
      await Deno.writeTextFile(`${outside}/secret`, "not the tree's\n");
      const before = (await Deno.stat(`${outside}/secret`)).atime;
      // The log names lib/secret, and lib is now a link out of the tree.
      await land(lab, 2, ["lib", "lib/secret"], async (r) => {
        await Deno.remove(`${r}/lib`, { recursive: true });
        await Deno.symlink(outside, `${r}/lib`);
      });
      const v = await voucher.check();
      assert.deepEqual(v.state === "verified" && v.by, "walk");
      assert.deepEqual((await Deno.stat(`${outside}/secret`)).atime, before);
    } finally {
      await Deno.remove(outside, { recursive: true });
    }
  });
});

Deno.test("vouch: no marker yet is no version, unchecked", async () => {
  await withLab(async (lab) => {
    const v = await voucherOf(lab).check();
    assert.deepEqual([v.state, seqOf(v)], ["unchecked", null]);
  });
});

Deno.test("vouch: a watched edit under an intact marker is refused once the tree is quiet, without a walk", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab, { quietMs: 60_000 });
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // Another size: a walk sees it whatever the second (ctime is whole seconds).
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO!\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    // Not quiet yet (a push may be landing): the version stands.
    assert.equal((await voucher.check()).state, "verified");
    const quiet = voucherOf(lab);
    assert.equal((await quiet.check()).state, "refused", "a walk finds it too");
  });
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "bravo\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    const back = await voucher.check();
    assert.deepEqual(back.state === "verified" && back.by, "difference");
  });
});

Deno.test("vouch: a path the log leaves out but the watcher saw is checked all the same", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // The version is genuinely signed, but the push also changed lib/b.txt
    // and its log names only a.txt.
    await land(lab, 2, ["a.txt"], (r) => Deno.writeTextFile(`${r}/a.txt`, "alpha v2\n"));
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "planted\n");
    voucher.changed([{ path: "a.txt", deep: false }, { path: "lib/b.txt", deep: false }]);
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
  });
});

Deno.test("vouch: a directory that changed whole is walked, not taken from the kept manifest", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // lib replaced by another directory of the same name holding more.
    await Deno.remove(`${lab.root}/lib`, { recursive: true });
    await Deno.mkdir(`${lab.root}/lib`);
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "bravo\n");
    await Deno.writeTextFile(`${lab.root}/lib/extra.txt`, "not signed\n");
    voucher.changed([{ path: "lib", deep: true }]);
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/extra.txt");
  });
});

Deno.test("vouch: unwatched, every check walks", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab, { watched: false });
    await land(lab, 1, [], v1);
    await voucher.check();
    await land(lab, 2, ["a.txt"], (r) => Deno.writeTextFile(`${r}/a.txt`, "alpha v2\n"));
    const v = await voucher.check();
    assert.deepEqual(v.state === "verified" && v.by, "walk");
  });
});

Deno.test("vouch: a watched file whose name is not UTF-8 is not taken for gone", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // Planted under the marker; the watcher names it as Deno decodes it, with U+FFFD.
    const made = await new Deno.Command("sh", {
      args: ["-c", `printf planted > "$(printf 'lib/bad\\377')"`],
      cwd: lab.root,
    }).output();
    assert(made.success);
    voucher.changed([{ path: "lib/bad\uFFFD", deep: false }]);
    const v = await voucher.check();
    assert.equal(v.state, "refused", JSON.stringify(v));
  });
});

Deno.test("vouch: under its marker, a whole check and one after lost events wait for the tree to be quiet", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab, { quietMs: 60_000 });
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // A push landing: its paths are in, its marker not yet.
    await Deno.writeTextFile(`${lab.root}/a.txt`, "alpha v2\n");
    voucher.changed([{ path: "a.txt", deep: false }]);
    assert.equal((await voucher.check(true)).state, "verified", "a whole check waits");
    voucher.lost();
    assert.equal((await voucher.check()).state, "verified", "a walk after lost events waits");
    // The push stopped there: once quiet, the tree is walked and refused.
    const quiet = voucherOf(lab);
    assert.equal((await quiet.check()).state, "refused");
  });
});

Deno.test("vouch: a tree never quiet under its marker is checked all the same once it waited long enough", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab, { quietMs: 60_000, quietMaxMs: 20 });
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    await new Promise((r) => setTimeout(r, 40));
    // Written again and again: never quiet.
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO!\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
  });
});

Deno.test("vouch: a wall clock stepped back (NTP) while changes wait for quiet holds them no longer than its waits", async () => {
  await withLab(async (lab) => {
    const step = { back: 0 };
    const voucher = voucherOf(lab, {
      quietMs: 20,
      quietMaxMs: 60,
      clock: () => Date.now() - step.back,
    });
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    await Deno.writeTextFile(`${lab.root}/lib/b.txt`, "BRAVO\n");
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    // The changes came "an hour ahead" of the clock now: they must not
    // keep the tree landing, and its version announced, for that hour.
    step.back = 3_600_000;
    await new Promise((r) => setTimeout(r, 100));
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
  });
});

Deno.test("vouch: a push still writing into the temp dir is landing, however long since its first event", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab, { quietMs: 50 });
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // rsync makes the version's new directory first, then takes its time over a big file.
    await Deno.mkdir(`${lab.root}/new`);
    voucher.changed([{ path: "new", deep: true }]);
    await Deno.mkdir(`${lab.root}/.fanout-tmp`);
    const temp = `${lab.root}/.fanout-tmp/big.bin.Ab12Cd`;
    await Deno.writeTextFile(temp, "part");
    await new Promise((r) => setTimeout(r, 100));
    await Deno.writeTextFile(temp, "part two", { append: true });
    assert.equal((await voucher.check()).state, "verified", "the push is landing");
    // The transfer stopped there (its temp file left): refused once quiet.
    await new Promise((r) => setTimeout(r, 100));
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "new");
  });
});

Deno.test("vouch: a watched edit that kept size, mtime and the second of its ctime is refused all the same", async () => {
  await withLab(async (lab) => {
    const voucher = voucherOf(lab);
    await land(lab, 1, [], v1);
    assert.equal((await voucher.check()).state, "verified");
    // Within the second the record was taken: only the hash can tell.
    const file = `${lab.root}/lib/b.txt`;
    const st = await Deno.stat(file);
    await Deno.writeTextFile(file, "BRAVO\n");
    await Deno.utime(file, st.atime!, st.mtime!);
    voucher.changed([{ path: "lib/b.txt", deep: false }]);
    const v = await voucher.check();
    assert.deepEqual(v.state === "refused" && v.path, "lib/b.txt");
  });
});
