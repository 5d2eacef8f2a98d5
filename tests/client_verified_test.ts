// Verified releases on the client: a plain rsync daemon serves trees signed
// here (lib/release), then tampered with in each way a server could, to a
// client whose fleet file lists the public key. Each refusal must leave dest
// as it was, byte for byte, exit 4 with one line naming the server and the
// path, and reach the fleet view; each valid version must apply. Both
// layouts: in place and --atomic.
import assert from "node:assert/strict";
import { formatMarker, type VersionMarker } from "../lib/version/mod.ts";
import { readRecord } from "../lib/release/mod.ts";
import { assertSameTree, http, waitFor, writeTree } from "./_helpers.ts";
import {
  LAYOUTS,
  markerOf,
  OURS,
  publish,
  type Signed,
  signedLab,
  snapshot,
  V1,
  V2,
  withSigned,
} from "./_signed.ts";

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

      // Nothing new: a verification, dest untouched. A staging dir a killed
      // run left beside dest goes.
      const before = await snapshot(dest);
      const staging = `${lab.dir}/apps/.plugins${i + 1}.staging`;
      await Deno.remove(staging).catch(() => {});
      if (layout === "in place") await writeTree(staging, { "lib/b.txt": "fetched, unused\n" });
      const again = await s.client(name, dest, args);
      assert.deepEqual([again.code, again.stderr], [0, ""], again.stderr);
      await assert.rejects(Deno.lstat(staging), `${layout}: no staging dir left`);
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
      // --check hashes every file against the signed manifest: it names the
      // edit, and changes nothing.
      const edits = await snapshot(dest);
      const drift = await s.client(name, dest, [...args, "--check"]);
      assert.equal(drift.code, 1, drift.stderr);
      assert.match(
        drift.stdout,
        /in 1 entry \(1 changed\):\n {2}changed {2}lib\/b\.txt \(content\)\n/,
      );
      assert.equal(await snapshot(dest), edits);
      const repair = await s.client(name, dest, args);
      assert.equal(repair.code, 0, repair.stderr);
      assert.equal(await Deno.readTextFile(edited), "bravo v2\n", layout);
      assert.equal((await s.status(name)).files_changed, 1);
      const clean = await s.client(name, dest, [...args, "--check", "--json"]);
      assert.equal(clean.code, 0, clean.stderr);
      const report = JSON.parse(clean.stdout);
      assert.deepEqual([report.in_sync, report.source_version.seq], [true, 2]);
      // A server whose manifest is not the signed one: --check refuses as a sync would.
      const signedManifest = await Deno.readFile(`${s.src}/.fanout-manifest`);
      await Deno.writeTextFile(`${s.src}/.fanout-manifest`, "not the signed manifest\n", {
        append: true,
      });
      const refused = await s.client(name, dest, [...args, "--check"]);
      assert.equal(refused.code, 4, refused.stderr);
      assert.match(refused.stderr, /\.fanout-manifest: its SHA-256 is not/);
      await Deno.writeFile(`${s.src}/.fanout-manifest`, signedManifest);

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
      const dirty = `${lab.dir}/state/${name}/client.dirty`;
      await Deno.writeTextFile(dirty, `${Date.now()}\n`);
      // Runs that recover, then fail (the version refused: a tampered file,
      // or none signed), leave it marked unfinished all the same.
      const tampered = [
        () => Deno.writeTextFile(`${s.src}/lib/b.txt`, "BRAVO v2\n"),
        () => Deno.remove(`${s.src}/.fanout-release`),
      ];
      for (const tamper of tampered) {
        await tamper();
        const refused = await s.client(name, dest);
        assert.equal(refused.code, 4, refused.stderr);
        await Deno.stat(dirty);
        await publish(s.src, 4, V2, s.key);
      }
      const done = await s.client(name, dest, ["--verify-every", "1h"]);
      assert.equal(done.code, 0, done.stderr);
      await assertSameTree(s.src, `${dest}/`, OURS);
      assert.equal((await s.status(name)).mode, "sync");
      await assert.rejects(Deno.stat(dirty), "dest marked finished");
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
        "a manifest that lists fanout's temporary name",
        async () => void await publish(s.src, 2, { ...V2, ".fanout-tmp/x": "x\n" }, s.key),
        ".fanout-tmp",
        /the manifest of seq 2 lists a file of fanout's own/,
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
      const r = await withRequestHook(
        s,
        count,
        `if [ $((n % 3)) -eq 0 ]; then cp ${v1} ${s.src}/.fanout-version; ` +
          `else cp ${v2} ${s.src}/.fanout-version; fi`,
        () => s.client(name, dest, args),
      );
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
      const landed = await withRequestHook(
        s,
        count,
        `if [ $n -eq 2 ]; then rsync -a -I --delete ${v3}/ ${s.src}/; fi`,
        () => s.client(name, dest, args),
      );
      assert.deepEqual([landed.code, landed.stderr], [0, ""], `${layout}: ${landed.stderr}`);
      await assertSameTree(v3, `${dest}/`, OURS);
    }
  });
});

Deno.test("verified: a release's files named like a control file's temporary one are kept, and the next run only verifies (in place and --atomic)", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    const files = {
      ...V1,
      ".fanout-version.fanout-tmp": "the release's own\n",
      ".fanout-manifest.fanout-tmp": "this too\n",
    };
    await publish(s.src, 1, files, s.key);
    for (const [i, [layout, args]] of LAYOUTS.entries()) {
      const name = `web${i + 1}`;
      const dest = `${lab.dir}/apps/plugins${i + 1}`;
      const first = await s.client(name, dest, args);
      assert.deepEqual([first.code, first.stderr], [0, ""], `${layout}: ${first.stderr}`);
      await assertSameTree(s.src, `${dest}/`, OURS);
      // --atomic built no new tree for it, in place nothing was fetched again.
      const again = await s.client(name, dest, args);
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await s.status(name)).mode, "verify", layout);
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

Deno.test("verified: a path the server did not send (another version behind the proxy) is fetched again, and the version applied (in place and --atomic)", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab);
    for (const [i, [layout, args]] of LAYOUTS.entries()) {
      const name = `web${i + 1}`;
      const dest = `${lab.dir}/apps/plugins${i + 1}`;
      await publish(s.src, 1, V1, s.key);
      assert.equal((await s.client(name, dest, args)).code, 0);
      // Version 2 without one of its new files at first: the first fetch of
      // the files misses it, as a server still at version 1 would.
      await publish(s.src, 2, V2, s.key);
      const held = `${lab.dir}/held-${name}`;
      await Deno.rename(`${s.src}/new/c.txt`, held);
      const r = await withRequestHook(
        s,
        `${lab.dir}/requests-${name}`,
        `if [ $n -ge 3 ] && [ -e ${held} ]; then mv ${held} ${s.src}/new/c.txt; fi`,
        () => s.client(name, dest, [...args, "--log-level", "debug"]),
      );
      assert.equal(r.code, 0, `${layout}: ${r.stderr}`);
      assert.match(r.stderr, /a path of the version was not sent; trying again/);
      assert.equal(await Deno.readTextFile(`${dest}/new/c.txt`), V2["new/c.txt"]);
    }
  });
});

/**
 * Runs `body` while the server's pre-xfer hook numbers each request (from
 * 1, in `count` and the script's `$n`) and then runs `then`; the hook does
 * nothing again after.
 */
async function withRequestHook<T>(
  s: Signed,
  count: string,
  then: string,
  body: () => Promise<T>,
): Promise<T> {
  await Deno.writeTextFile(count, "0\n");
  await Deno.writeTextFile(
    s.hook,
    `#!/bin/sh\nn=$(($(cat ${count}) + 1)); echo $n > ${count}\n${then}\n`,
  );
  try {
    return await body();
  } finally {
    await Deno.writeTextFile(s.hook, "#!/bin/sh\nexit 0\n");
  }
}
