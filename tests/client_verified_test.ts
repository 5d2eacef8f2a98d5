// Verified releases on the client: a plain rsync daemon serves trees signed
// here (lib/release), then tampered with in each way a server could, to a
// client whose fleet file lists the public key. Each refusal must leave dest
// as it was, byte for byte, exit 4 with one line naming the server and the
// path, and reach the fleet view; each valid version must apply. Both
// layouts: in place and --atomic.
import assert from "node:assert/strict";
import {
  buildManifest,
  formatManifest,
  generateKeyPair,
  loadSigningKey,
  manifestDigest,
  readRecord,
  type SigningKey,
  signRelease,
  writePrivateKey,
} from "../lib/release/mod.ts";
import { formatMarker, stampMarker, type VersionMarker } from "../lib/version/mod.ts";
import { hostToken } from "../lib/report/mod.ts";
import {
  assertSameTree,
  http,
  type Lab,
  type Proc,
  sh,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";
import { plainDaemon } from "./_plain_daemon.ts";

/** What a publisher leaves out of a manifest. */
const RELEASE_SKIP = [".fanout-version", ".fanout-changes", ".fanout-manifest", ".fanout-release"];

/** What dest holds beside the tree: never compared with the source. */
const OURS = [".fanout-dest", ".fanout-changes"];

const V1 = {
  "a.txt": "alpha v1\n",
  "lib/b.txt": "bravo v1\n",
  "lib/keep.txt": "the same in every version\n",
  "bin/run": "#!/bin/sh\necho v1\n",
  "gone.txt": "only in v1\n",
  "lib/link": "-> ../a.txt",
};
const V2 = {
  "a.txt": "alpha v2\n",
  "lib/b.txt": "bravo v2\n",
  "lib/keep.txt": "the same in every version\n",
  "bin/run": "#!/bin/sh\necho v2\n",
  "new/c.txt": "charlie, new in v2\n",
  "lib/link": "-> ../new/c.txt",
};

function markerOf(seq: number): VersionMarker {
  return {
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: new Date(Date.UTC(2026, 10, 25, 0, 0, seq)).toISOString(),
  };
}

/**
 * Writes `files` as the whole served tree (a content "-> target" makes a symlink), signed as version `seq` with
 * `key`, as the publisher writes one: tree, manifest, envelope, a version
 * log, the marker last.
 */
async function publish(
  src: string,
  seq: number,
  files: Record<string, string>,
  key: SigningKey,
): Promise<VersionMarker> {
  await Deno.remove(src, { recursive: true }).catch(() => {});
  const links = Object.entries(files).filter(([, v]) => v.startsWith("-> "));
  await writeTree(
    src,
    Object.fromEntries(Object.entries(files).filter(([, v]) => !v.startsWith("-> "))),
  );
  for (const [path, v] of links) await Deno.symlink(v.slice(3), `${src}/${path}`);
  await Deno.chmod(`${src}/bin/run`, 0o755);
  const m = markerOf(seq);
  const manifest = formatManifest(await buildManifest(src, { skip: RELEASE_SKIP }));
  await Deno.writeFile(`${src}/.fanout-manifest`, manifest);
  const envelope = await signRelease(
    { ...m, manifest_sha256: await manifestDigest(manifest) },
    key,
  );
  await Deno.writeFile(`${src}/.fanout-release`, envelope);
  await Deno.writeTextFile(`${src}/.fanout-changes`, "not signed, never kept\n");
  await Deno.writeTextFile(`${src}/.fanout-version`, formatMarker(m));
  stampMarker(`${src}/.fanout-version`);
  return m;
}

interface Signed {
  src: string;
  /** A shell script the server runs before each request (`pre-xfer exec`). */
  hook: string;
  key: SigningKey;
  /** A key of the same kind the fleet does not list. */
  stranger: SigningKey;
  /** `host:port` of the daemon. */
  server: string;
  /** Runs a client of `name` into `dest` (in place, or --atomic). */
  client: (
    name: string,
    dest: string,
    args?: string[],
  ) => Promise<{ code: number; stdout: string; stderr: string }>;
  status: (name: string) => Promise<Record<string, unknown>>;
}

async function newKey(lab: Lab, name: string): Promise<{ key: SigningKey; text: string }> {
  const pair = await generateKeyPair();
  const path = `${lab.dir}/${name}.key`;
  await writePrivateKey(path, pair.privatePem);
  return { key: await loadSigningKey(path), text: pair.publicKey.text };
}

/**
 * A lab whose fleet file trusts one release key, a plain rsync daemon
 * serving `<lab>/src`, and clients that
 * report to the primary as themselves.
 */
async function signedLab(lab: Lab, opts: { keys?: boolean } = {}): Promise<Signed> {
  const trusted = await newKey(lab, "release");
  const stranger = await newKey(lab, "stranger");
  const src = `${lab.dir}/src`;
  await Deno.mkdir(src, { recursive: true });
  await lab.fleet({
    replicas: [],
    publisher: false,
    client: { retries: 0 },
    extra: opts.keys === false ? "" : `release:\n  public_keys: ["${trusted.text}"]`,
  });
  // What the server does before each request: nothing, unless a test writes
  // a script here.
  const hook = `${lab.dir}/pre-xfer`;
  await Deno.writeTextFile(hook, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  await Deno.chmod(hook, 0o755);
  const daemon = await plainDaemon(lab, src, { preXfer: hook });
  daemons.set(lab, daemon.proc);
  const fleetOf = async (name: string) => {
    const token = `${lab.dir}/${name}.token`;
    const secret = (await Deno.readTextFile(lab.reportToken)).trim();
    await Deno.writeTextFile(token, `${await hostToken(secret, name)}\n`, { mode: 0o600 });
    await Deno.chmod(token, 0o600);
    const file = `${lab.dir}/fanout-${name}.yaml`;
    const text = await Deno.readTextFile(lab.fleetFile);
    await Deno.writeTextFile(file, text.replace(lab.reportToken, token));
    return file;
  };
  return {
    src,
    hook,
    key: trusted.key,
    stranger: stranger.key,
    server: daemon.server,
    client: async (name, dest, args = []) =>
      await lab.run([
        "--role",
        "client",
        "-c",
        await fleetOf(name),
        "--name",
        name,
        "--no-splay",
        "--source",
        daemon.url,
        "--dest",
        dest,
        ...args,
      ]),
    status: async (name) =>
      JSON.parse(await Deno.readTextFile(`${lab.dir}/state/${name}/client-status.json`)),
  };
}

const daemons = new Map<Lab, Proc>();

/** A lab with the plain daemon stopped at the end. */
function withSigned(body: (lab: Lab) => Promise<void>): Promise<void> {
  return withLab(async (lab) => {
    try {
      await body(lab);
    } finally {
      await daemons.get(lab)?.stop("SIGTERM", 3_000);
      daemons.delete(lab);
    }
  });
}

/**
 * Every path of the tree dest shows, with type, size, mode, mtime, inode and
 * contents' hash, and where dest points (--atomic) and which trees are kept.
 */
async function snapshot(dest: string): Promise<string> {
  const r = await sh("sh", [
    "-c",
    `cd "${dest}/" && readlink "${dest}"; ls -a "$(dirname "${dest}")/.$(basename "${dest}").trees" 2>/dev/null; ` +
    `find . -mindepth 1 -printf '%p %y %s %m %T@ %i\\n' | sort && find . -type f -exec sha256sum {} + | sort`,
  ]);
  return r.stdout;
}

const LAYOUTS: [string, string[]][] = [["in place", []], ["--atomic", ["--atomic"]]];

Deno.test("verified: a signed version applies (in place and --atomic); an edit that keeps size and mtime is repaired; a signed rollback applies; an unfinished run is completed", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    for (const [i, [layout, args]] of LAYOUTS.entries()) {
      const name = `web${i + 1}`;
      const dest = `${lab.dir}/apps/plugins${i + 1}`;
      await publish(s.src, 1, V1, s.key);
      // Whoever may write dest's parent plants a symlink where the staging
      // dir goes: the symlink goes, nothing is written through it.
      const outside = `${lab.dir}/outside`;
      await writeTree(outside, { "keep.txt": "keep me\n" });
      await Deno.mkdir(`${lab.dir}/apps`, { recursive: true });
      await Deno.symlink(outside, `${lab.dir}/apps/.plugins${i + 1}.staging`);
      // A file the manifest does not list: never fetched, never in dest.
      await writeTree(s.src, { "evil.php": "<?php system($_GET['c']);\n" });
      const first = await s.client(name, dest, args);
      assert.deepEqual([first.code, first.stderr], [0, ""], `${layout}: ${first.stderr}`);
      await assertSameTree(s.src, `${dest}/`, [...OURS, "evil.php"]);
      await assert.rejects(Deno.lstat(`${dest}/evil.php`), `${layout}: no evil.php`);
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(outside))).map((e) => e.name),
        ["keep.txt"],
      );
      await assert.rejects(Deno.lstat(`${dest}/.fanout-changes`), `${layout}: no version log`);
      assert.equal(await Deno.readLink(`${dest}/lib/link`), "../a.txt");
      assert.equal((await Deno.stat(`${dest}/bin/run`)).mode! & 0o777, 0o755);
      let st = await s.status(name);
      assert.deepEqual([st.mode, st.exit_code, (st.version as VersionMarker).seq], ["sync", 0, 1]);

      // Nothing new: a verification, dest untouched.
      const before = await snapshot(dest);
      const again = await s.client(name, dest, args);
      assert.deepEqual([again.code, again.stderr], [0, ""], again.stderr);
      assert.equal((await s.status(name)).mode, "verify");
      assert.equal(await snapshot(dest), before);

      // Version 2: changed, added and removed files.
      await publish(s.src, 2, V2, s.key);
      const v2 = await s.client(name, dest, args);
      assert.deepEqual([v2.code, v2.stderr], [0, ""], v2.stderr);
      await assertSameTree(s.src, `${dest}/`, OURS);
      st = await s.status(name);
      assert.deepEqual([st.mode, (st.version as VersionMarker).seq], ["sync", 2]);
      assert.equal(st.files_deleted, 1, "gone.txt");
      if (layout === "in place") {
        // The record keeps the walk made before the version went in, less
        // what it changed (hashed by the next run): no second walk.
        const kept = readRecord(`${lab.dir}/state/${name}/release-record`)!.entries;
        assert.deepEqual(
          ["lib/keep.txt", "a.txt", "lib/b.txt"].map((p) => kept.some((e) => e.path === p)),
          [true, false, false],
        );
      }

      // The marker alone may decide while the state dir vouches for it.
      const fast = await s.client(name, dest, [...args, "--verify-every", "1h"]);
      assert.equal(fast.code, 0, fast.stderr);
      assert.equal((await s.status(name)).mode, "fast");

      // An edit in dest that keeps the size and the mtime: the record's
      // change time gives it away, and the next run puts the signed bytes back.
      const edited = `${dest}/lib/b.txt`;
      const mtime = (await Deno.stat(edited)).mtime!;
      await Deno.writeTextFile(edited, "BRAVO v2\n");
      await Deno.utime(edited, mtime, mtime);
      const repair = await s.client(name, dest, args);
      assert.equal(repair.code, 0, repair.stderr);
      assert.equal(await Deno.readTextFile(edited), "bravo v2\n", layout);
      assert.equal((await s.status(name)).files_changed, 1);

      // A signed rollback: a newer seq with older content.
      await publish(s.src, 3, V1, s.key);
      const back = await s.client(name, dest, args);
      assert.equal(back.code, 0, back.stderr);
      await assertSameTree(s.src, `${dest}/`, OURS);
      assert.equal(((await s.status(name)).version as VersionMarker).seq, 3);

      if (layout !== "in place") continue;
      // A run killed halfway through placing version 4: one file of it in
      // dest, the dirty flag up, the old marker. The next run finishes it,
      // though the fast path would have trusted the marker.
      await publish(s.src, 4, V2, s.key);
      await Deno.writeTextFile(`${dest}/a.txt`, V2["a.txt"]);
      await Deno.remove(`${dest}/gone.txt`);
      await Deno.writeTextFile(`${lab.dir}/state/${name}/client.dirty`, `${Date.now()}\n`);
      const done = await s.client(name, dest, ["--verify-every", "1h"]);
      assert.equal(done.code, 0, done.stderr);
      await assertSameTree(s.src, `${dest}/`, OURS);
      assert.equal((await s.status(name)).mode, "sync");
    }
  });
});

Deno.test("verified: tampered, missing, unsigned, wrongly signed, mismatched and replayed versions are refused whole (in place and --atomic), and the fleet view says why", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    await lab.server("primary", "rsync1");
    const h = lab.hosts.rsync1;
    const server = s.server.replaceAll(".", "\\.");
    // Each case: what it does to the served version 2, and the path and the
    // reason the refusal names.
    const cases: [string, () => Promise<void>, string, RegExp][] = [
      [
        "a tampered file, its size kept",
        () => Deno.writeTextFile(`${s.src}/lib/b.txt`, "BRAVO v2\n"),
        "lib/b.txt",
        /SHA-256 differs from the signed manifest of seq 2/,
      ],
      [
        "a tampered file of another size",
        () => Deno.writeTextFile(`${s.src}/a.txt`, "alpha v2, and a backdoor\n"),
        "a.txt",
        /not sent by the server \(not there, or larger than the signed manifest of seq 2 says\)|size/,
      ],
      [
        "a tampered symlink",
        async () => {
          await Deno.remove(`${s.src}/lib/link`);
          await Deno.symlink("/etc/shadow", `${s.src}/lib/link`);
        },
        "lib/link",
        /a symlink to another target, as the signed manifest of seq 2 lists it/,
      ],
      [
        "a missing file",
        () => Deno.remove(`${s.src}/new/c.txt`),
        "new/c.txt",
        /not sent by the server/,
      ],
      [
        "a bad signature",
        async () => {
          const env = await Deno.readTextFile(`${s.src}/.fanout-release`);
          await Deno.writeTextFile(
            `${s.src}/.fanout-release`,
            env.replace("ref main", "ref mainx"),
          );
        },
        ".fanout-release",
        /release envelope of seq 2: the signature does not verify with key [0-9a-f]{16}/,
      ],
      [
        "a key the fleet does not list",
        async () => void await publish(s.src, 2, V2, s.stranger),
        ".fanout-release",
        /release envelope is signed by key [0-9a-f]{16}, which is not trusted/,
      ],
      [
        "no signature at all",
        () => Deno.remove(`${s.src}/.fanout-release`),
        ".fanout-release",
        /the source has none \(the version is not signed\)/,
      ],
      [
        "a manifest that is not the signed one",
        async () => {
          const m = await Deno.readTextFile(`${s.src}/.fanout-manifest`);
          await Deno.writeTextFile(`${s.src}/.fanout-manifest`, m.replace(" 0644 ", " 0666 "));
        },
        ".fanout-manifest",
        /its SHA-256 is not the one the release of seq 2 signs/,
      ],
      [
        "a marker that is not the signed version",
        () =>
          Deno.writeTextFile(
            `${s.src}/.fanout-version`,
            formatMarker({ ...markerOf(2), commit: "badc0de" }),
          ),
        ".fanout-version",
        /its commit is not the one the release of seq 2 signs/,
      ],
      [
        // Fetched again (a publish renames the envelope in first), then refused all the same.
        "a marker behind its envelope, for good",
        () => Deno.writeTextFile(`${s.src}/.fanout-version`, formatMarker(markerOf(1))),
        ".fanout-version",
        /its seq is not the one the release of seq 2 signs/,
      ],
    ];
    for (const [i, [layout, args]] of LAYOUTS.entries()) {
      const name = `web${i + 1}`;
      const dest = `${lab.dir}/apps/plugins${i + 1}`;
      await publish(s.src, 1, V1, s.key);
      assert.equal((await s.client(name, dest, args)).code, 0);
      const before = await snapshot(dest);
      for (const [what, tamper, path, why] of cases) {
        await publish(s.src, 2, V2, s.key);
        await tamper();
        const r = await s.client(name, dest, args);
        assert.equal(r.code, 4, `${layout}, ${what}: ${r.stderr}`);
        const lines = r.stderr.trim().split("\n");
        assert.equal(lines.length, 1, `${layout}, ${what}: one line:\n${r.stderr}`);
        const line = new RegExp(
          `^fanout: refusing the version from ${server} for ${dest}: ${
            path.replaceAll(".", "\\.")
          }: ${why.source}`,
        );
        assert.match(lines[0], line, `${layout}, ${what}: ${lines[0]}`);
        assert.equal(await snapshot(dest), before, `${layout}, ${what}: dest as it was`);
        const st = await s.status(name);
        assert.deepEqual([st.exit_code, `fanout: ${st.error}`], [4, lines[0]]);
        // The fleet view shows the same line.
        const view = await waitFor(`${name}'s report`, async () => {
          const v = JSON.parse(
            (await http(`http://${h.ip}:${h.health}/fleet.json?host=${name}`)).body,
          );
          const c = v.clients?.[0];
          return c?.error && `fanout: ${c.error}` === lines[0] ? c : null;
        }, 10_000);
        assert.equal(view.exit_code, 4);
      }
      // Version 2 as signed applies; version 1 served again is refused.
      await publish(s.src, 2, V2, s.key);
      const ok = await s.client(name, dest, args);
      assert.equal(ok.code, 0, ok.stderr);
      await assertSameTree(s.src, `${dest}/`, OURS);
      const at2 = await snapshot(dest);
      await publish(s.src, 1, V1, s.key);
      const replay = await s.client(name, dest, args);
      assert.equal(replay.code, 4, replay.stderr);
      assert.match(
        replay.stderr,
        new RegExp(
          `^fanout: refusing the version from ${server} for ${dest}: \\.fanout-release: seq 1 is ` +
            `older than seq 2, the newest this host applied`,
        ),
      );
      assert.equal(await snapshot(dest), at2, `${layout}: dest as it was`);
    }
  });
});

Deno.test("verified: a tampered version stays refused (exit 4) when the server shows another marker each time the client looks again; a newer signed version landing mid-run applies", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    const server = s.server.replaceAll(".", "\\.");
    for (const [i, [layout, args]] of LAYOUTS.entries()) {
      const name = `web${i + 1}`;
      const dest = `${lab.dir}/apps/plugins${i + 1}`;
      await publish(s.src, 1, V1, s.key);
      assert.equal((await s.client(name, dest, args)).code, 0);
      const before = await snapshot(dest);
      // Version 2, signed, with a tampered file; every third request (the
      // client's second look at the marker after a refusal) is served an
      // old signed marker, then version 2's again: no newer signed version
      // ever lands, so the refusal must not pass for one.
      await publish(s.src, 2, V2, s.key);
      await Deno.writeTextFile(`${s.src}/lib/b.txt`, "BRAVO v2\n");
      const v2 = `${lab.dir}/marker-2`, v1 = `${lab.dir}/marker-1`;
      await Deno.copyFile(`${s.src}/.fanout-version`, v2);
      await Deno.writeTextFile(v1, formatMarker(markerOf(1)));
      const count = `${lab.dir}/requests-${name}`;
      await Deno.writeTextFile(
        s.hook,
        `#!/bin/sh\nn=$(($(cat ${count} 2>/dev/null || echo 0) + 1)); echo $n > ${count}\n` +
          `if [ $((n % 3)) -eq 0 ]; then cp ${v1} ${s.src}/.fanout-version; ` +
          `else cp ${v2} ${s.src}/.fanout-version; fi\n`,
      );
      const r = await s.client(name, dest, args);
      await Deno.writeTextFile(s.hook, "#!/bin/sh\nexit 0\n");
      assert.equal(r.code, 4, `${layout}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`^fanout: refusing the version from ${server} for ${dest}: lib/b\\.txt: `),
      );
      assert.equal(await snapshot(dest), before, `${layout}: dest as it was`);

      // A newer signed version truly landing between the check and the
      // fetch: looked at again, and applied.
      const v3 = `${lab.dir}/v3-${name}`;
      await publish(v3, 3, V1, s.key);
      await publish(s.src, 2, V2, s.key);
      await Deno.writeTextFile(count, "0\n");
      await Deno.writeTextFile(
        s.hook,
        `#!/bin/sh\nn=$(($(cat ${count}) + 1)); echo $n > ${count}\n` +
          `if [ $n -eq 2 ]; then rsync -a -I --delete ${v3}/ ${s.src}/; fi\n`,
      );
      const landed = await s.client(name, dest, args);
      await Deno.writeTextFile(s.hook, "#!/bin/sh\nexit 0\n");
      assert.deepEqual([landed.code, landed.stderr], [0, ""], `${layout}: ${landed.stderr}`);
      await assertSameTree(v3, `${dest}/`, OURS);
    }
  });
});

Deno.test("verified: an unsigned fleet syncs as before, silent under cron and warning once with --verbose", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab, { keys: false });
    const dest = `${lab.dir}/apps/plugins`;
    await publish(s.src, 1, V1, s.key);
    const cron = await s.client("web1", dest);
    assert.deepEqual([cron.code, cron.stdout, cron.stderr], [0, "", ""]);
    // Unsigned, the version log and even a file no manifest lists come along.
    await assertSameTree(s.src, `${dest}/`, [".fanout-dest"]);
    await publish(s.src, 2, V2, s.key);
    const loud = await s.client("web1", dest, ["--verbose"]);
    assert.equal(loud.code, 0, loud.stderr);
    const warnings = loud.stderr.split("\n").filter((l) => /versions are not signed/.test(l));
    assert.equal(warnings.length, 1, loud.stderr);
    assert.match(
      warnings[0],
      /^.*level=warn msg="versions are not signed: release\.public_keys is empty/,
    );
    await assertSameTree(s.src, `${dest}/`, [".fanout-dest"]);
  });
});
