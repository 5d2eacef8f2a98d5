// A hostile server against a root client: a plain rsync daemon (no chroot,
// symlinks as they are, uid root) serving a tree and version log made to
// reach outside dest, plant setuid files, or exhaust memory and disk. Each
// test checks the bytes outside dest, the client's exit code and its words.
import assert from "node:assert/strict";
import { clientArgs, type Lab, type Proc, sh, withLab, writeTree } from "./_helpers.ts";
import { plainDaemon } from "./_plain_daemon.ts";
import { appendEntry, newEntry, parseMarker } from "../lib/version/mod.ts";

function marker(seq: number): string {
  return JSON.stringify({
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: `2026-11-25T00:00:${String(seq).padStart(2, "0")}Z`,
  }) + "\n";
}

interface Hostile {
  /** The served tree. */
  src: string;
  dest: string;
  /** Files a client must never touch. */
  outside: string;
  state: string;
  client: (args?: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * A plain rsync daemon on the lab's .9 serving `<lab>/hostile`, with a
 * directory `<lab>/outside` next to it, and a client (`web1`) pulling it
 * into `<lab>/apps/plugins`.
 */
async function hostile(
  lab: Lab,
  client: Record<string, string | number | boolean> = {},
): Promise<Hostile> {
  const src = `${lab.dir}/hostile`;
  const outside = `${lab.dir}/outside`;
  const dest = `${lab.dir}/apps/plugins`;
  await writeTree(outside, { "important.txt": "keep me\n", "dir/x.txt": "x\n" });
  await Deno.mkdir(src, { recursive: true });
  await lab.fleet({ replicas: [], publisher: false, client: { dest, retries: 0, ...client } });
  const daemon = await plainDaemon(lab, src);
  stops.set(lab, daemon.proc);
  const url = daemon.url;
  return {
    src,
    dest,
    outside,
    state: `${lab.dir}/state/web1`,
    client: (args = []) =>
      lab.run([
        ...clientArgs(lab, "web1", ["--source", url, ...args]),
      ]),
  };
}

const stops = new Map<Lab, Proc>();

/** A lab with the hostile daemon stopped at the end. */
function withHostile(body: (lab: Lab) => Promise<void>, opts = {}): Promise<void> {
  return withLab(async (lab) => {
    try {
      await body(lab);
    } finally {
      await stops.get(lab)?.stop("SIGTERM", 3_000);
      stops.delete(lab);
    }
  }, opts);
}

/** Every path under `dir` with type, size, mode, owner, mtime, inode and contents' hash. */
async function snapshot(dir: string): Promise<string> {
  const r = await sh("sh", [
    "-c",
    `cd "${dir}" && find . -mindepth 1 -printf '%p %y %s %m %U %T@ %i\\n' | sort && find . -type f -exec sha256sum {} + | sort`,
  ]);
  return r.stdout;
}

/** The version log for `entries` (from, to, paths, deleted). */
function log(entries: [number, number, string[], string[]][]): string {
  let text = "";
  for (const [from, to, paths, deleted] of entries) {
    text = appendEntry(
      text,
      newEntry(parseMarker(marker(from)), parseMarker(marker(to))!, { paths, deleted }),
    );
  }
  return text;
}

Deno.test("hostile: a version log deleting through a symlink deletes nothing outside dest", async () => {
  await withHostile(async (lab) => {
    const h = await hostile(lab, { verify_every: "1h" });
    await writeTree(h.src, { "a.txt": "a1\n", ".fanout-version": marker(1) });
    await Deno.symlink(h.outside, `${h.src}/lnk`);
    const first = await h.client();
    assert.equal(first.code, 0, first.stderr);
    assert.ok((await Deno.lstat(`${h.dest}/lnk`)).isSymlink);
    const before = await snapshot(h.outside);

    // Version 2 "deletes" lnk/important.txt and lnk/dir/: through the symlink.
    await writeTree(h.src, {
      "a.txt": "a2\n",
      ".fanout-version": marker(2),
      ".fanout-changes": log([[1, 2, ["a.txt"], [
        "lnk/important.txt",
        "lnk/dir/",
        "lnk/dir/x.txt",
      ]]]),
    });
    const r = await h.client(["--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /level=warn msg="the server named a path below a symlink in dest; not followed, comparing the whole tree" .* path=lnk\/\S+ symlink=lnk /,
    );
    assert.equal(await snapshot(h.outside), before, "nothing outside dest changed");
    assert.equal(await Deno.readTextFile(`${h.dest}/a.txt`), "a2\n");
    assert.equal(parseMarker(await Deno.readTextFile(`${h.dest}/.fanout-version`))?.seq, 2);
    assert.ok((await Deno.lstat(`${h.dest}/lnk`)).isSymlink, "the symlink itself stays");

    // The symlink turned into a directory: rsync replaces the link, writing
    // nothing through it.
    await Deno.remove(`${h.src}/lnk`);
    await writeTree(h.src, { "lnk/important.txt": "EVIL\n", ".fanout-version": marker(3) });
    const dir = await h.client(["--log-level", "debug"]);
    assert.equal(dir.code, 0, dir.stderr);
    assert.equal(await snapshot(h.outside), before);
    assert.ok((await Deno.lstat(`${h.dest}/lnk`)).isDirectory);
    assert.equal(await Deno.readTextFile(`${h.dest}/lnk/important.txt`), "EVIL\n");
  });
});

Deno.test("hostile: --atomic never hard-links a file from outside the live tree", async () => {
  await withHostile(async (lab) => {
    const h = await hostile(lab, { atomic: true });
    await writeTree(h.src, { "a.txt": "a1\n", ".fanout-version": marker(1) });
    await Deno.symlink(h.outside, `${h.src}/lnk`);
    assert.equal((await h.client()).code, 0);
    // Version 2: lnk a directory whose file matches the outside one in
    // size, mode and mtime, what --link-dest hard-links by.
    const victim = `${h.outside}/important.txt`;
    await Deno.remove(`${h.src}/lnk`);
    await writeTree(h.src, { "lnk/important.txt": "XXXXXXX\n", ".fanout-version": marker(2) });
    // Whole seconds: mtimes are compared to the nanosecond.
    await Deno.utime(victim, 1_600_000_000, 1_600_000_000);
    await Deno.utime(`${h.src}/lnk/important.txt`, 1_600_000_000, 1_600_000_000);
    const st = await Deno.stat(victim);
    await Deno.chmod(`${h.src}/lnk/important.txt`, st.mode! & 0o7777);
    const before = await snapshot(h.outside);
    const r = await h.client();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /level=warn msg="the live tree has a symlink leading out of it/);
    const got = await Deno.stat(`${h.dest}/lnk/important.txt`);
    assert.notEqual(got.ino, st.ino, "not a hard link to the outside file");
    assert.equal(await Deno.readTextFile(`${h.dest}/lnk/important.txt`), "XXXXXXX\n");
    assert.equal(await snapshot(h.outside), before);
  });
});

Deno.test("hostile: no setuid, setgid or world-writable file, no foreign owner; sparse stays sparse", async () => {
  await withHostile(async (lab) => {
    const h = await hostile(lab);
    await writeTree(h.src, {
      "suid": "#!/bin/sh\n",
      "sgid": "#!/bin/sh\n",
      "open.txt": "anyone\n",
      "foreign.txt": "theirs\n",
      "wdir/f.txt": "f\n",
      ".fanout-version": marker(1),
    });
    await Deno.chmod(`${h.src}/suid`, 0o4755);
    await Deno.chmod(`${h.src}/sgid`, 0o2755);
    await Deno.chmod(`${h.src}/open.txt`, 0o666);
    await Deno.chmod(`${h.src}/wdir`, 0o777);
    await Deno.chown(`${h.src}/foreign.txt`, 1234, 4321);
    const sparse = await Deno.open(`${h.src}/sparse.bin`, { write: true, create: true });
    await sparse.truncate(64 * 1024 * 1024);
    await sparse.seek(32 * 1024 * 1024, Deno.SeekMode.Start);
    await sparse.write(new TextEncoder().encode("data"));
    sparse.close();

    const atomicDest = `${lab.dir}/apps/atomic`;
    for (const args of [[], ["--name", "web2", "--atomic", "--dest", atomicDest]]) {
      const r = await h.client(args);
      assert.equal(r.code, 0, r.stderr);
      const dest = args.length ? atomicDest : h.dest;
      for (const name of ["suid", "sgid", "open.txt", "foreign.txt", "wdir", "wdir/f.txt"]) {
        const st = await Deno.stat(`${dest}/${name}`);
        assert.equal(st.mode! & 0o6002, 0, `${name}: mode ${(st.mode! & 0o7777).toString(8)}`);
        assert.equal(st.uid, 0, `${name} owned by root`);
        assert.equal(st.gid, 0, `${name} in group root`);
      }
      assert.equal((await Deno.stat(`${dest}/suid`)).mode! & 0o777, 0o755, "the rest of the mode");
      const blocks = (await Deno.stat(`${dest}/sparse.bin`)).blocks!;
      assert.ok(blocks * 512 < 1024 * 1024, `sparse.bin takes ${blocks * 512} bytes`);
    }
    // What the client does not take is no drift: the next run has nothing to do.
    const again = await h.client(["--log-level", "debug"]);
    assert.equal(again.code, 0, again.stderr);
    const status = JSON.parse(await Deno.readTextFile(`${h.state}/client-status.json`));
    assert.deepEqual([status.mode, status.drift], ["verify", 0]);

    // The fleet file can keep owners (names mapped as rsync does).
    const fleet = await Deno.readTextFile(lab.fleetFile);
    await Deno.writeTextFile(
      lab.fleetFile,
      fleet.replace("client:\n", "client:\n  keep_owners: true\n"),
    );
    await Deno.remove(h.dest, { recursive: true });
    await Deno.remove(`${h.state}/client-dest.json`).catch(() => {});
    const kept = await h.client();
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal((await Deno.stat(`${h.dest}/foreign.txt`)).uid, 1234);
    assert.equal((await Deno.stat(`${h.dest}/suid`)).mode! & 0o6000, 0, "still no setuid");
  });
});

Deno.test("hostile: a marker or log that is a symlink, or too large, is not read", async () => {
  await withHostile(async (lab) => {
    const h = await hostile(lab, { verify_every: "1h" });
    await writeTree(h.src, { "a.txt": "a1\n", ".fanout-version": marker(1) });
    assert.equal((await h.client()).code, 0);
    // A 2 MiB log (any log a client reads is at most 1 MiB): not fetched,
    // the whole tree is compared instead.
    const big = log([[1, 2, ["a.txt"], []]]) + "#".repeat(2 * 1024 * 1024) + "\n";
    await writeTree(h.src, {
      "a.txt": "a2\n",
      ".fanout-version": marker(2),
      ".fanout-changes": big,
    });
    const r = await h.client(["--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /level=warn msg="the source's version log or marker is too large to read/,
    );
    assert.equal(await Deno.readTextFile(`${h.dest}/a.txt`), "a2\n");
    await assert.rejects(Deno.lstat(`${h.state}/version-log/.fanout-changes`), "no copy kept");

    // A marker that is a symlink to /dev/zero reads as no marker (no hang,
    // no memory), and the client says what it refuses.
    await Deno.remove(`${h.src}/.fanout-version`);
    await Deno.symlink("/dev/zero", `${h.src}/.fanout-version`);
    const z = await h.client();
    assert.equal(z.code, 4, z.stderr);
    assert.match(
      z.stderr,
      /refusing to sync .* a \.fanout-version that is not a regular file \(a link\)/,
    );
    assert.equal(await Deno.readTextFile(`${h.dest}/a.txt`), "a2\n");
  });
});

Deno.test("hostile: a full disk: one line naming the file system, no partial files left", async () => {
  await withHostile(async (lab) => {
    const h = await hostile(lab);
    const apps = `${lab.dir}/apps`;
    await Deno.mkdir(apps, { recursive: true });
    const mounted = await sh("mount", ["-t", "tmpfs", "-o", "size=4m", "fanout-full", apps]);
    if (mounted.code !== 0) {
      console.error(`skipped: cannot mount a tmpfs (${mounted.stderr.trim()})`);
      return;
    }
    try {
      await writeTree(h.src, { "a.txt": "a1\n", ".fanout-version": marker(1) });
      assert.equal((await h.client()).code, 0);
      const big = new Uint8Array(6 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 65536) {
        crypto.getRandomValues(big.subarray(i, i + 65536));
      }
      await Deno.writeFile(`${h.src}/big.bin`, big);
      await writeTree(h.src, { "a.txt": "a2\n", ".fanout-version": marker(2) });
      const before = await snapshot(h.dest);
      const r = await h.client();
      assert.equal(r.code, 3, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0],
        new RegExp(`no space left on ${apps} \\(tmpfs\\): the sync into .* \\(rsync exit 11\\)`),
      );
      assert.equal(await snapshot(h.dest), before, "dest as before, no .~tmp~ left");
      const df = await sh("df", ["--output=used", "-B1", apps]);
      assert.ok(Number(df.stdout.split("\n")[1]) < 1024 * 1024, `used: ${df.stdout}`);

      // The same with --atomic: no half-built tree is left.
      const r2 = await h.client(["--name", "web2", "--atomic", "--dest", `${apps}/atomic`]);
      assert.equal(r2.code, 3, r2.stderr);
      assert.match(r2.stderr, /no space left on /);
      const trees = await Array.fromAsync(Deno.readDir(`${apps}/.atomic.trees`)).catch(() => []);
      assert.deepEqual(trees.map((e) => e.name), []);
    } finally {
      await sh("umount", ["-l", apps]);
    }
  });
});

Deno.test("hostile: --atomic never builds or prunes trees through a symlink planted at dest's trees dir", async () => {
  await withHostile(async (lab) => {
    // Another user who may write dest's parent (a shared /srv, a web root)
    // points <parent>/.plugins.trees at a directory of the client's user.
    const h = await hostile(lab, { atomic: true, keep: 1 });
    await writeTree(h.src, { "a.txt": "a1\n", ".fanout-version": marker(1) });
    await Deno.mkdir(`${lab.dir}/apps`, { recursive: true });
    await Deno.symlink(h.outside, `${lab.dir}/apps/.plugins.trees`);
    const before = await snapshot(h.outside);
    const r = await h.client();
    assert.equal(
      await snapshot(h.outside),
      before,
      `the client wrote or deleted through the symlink (exit ${r.code}):\n${r.stderr}`,
    );
  });
});
