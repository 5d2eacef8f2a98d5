// A signed cron client verified every run (verify_every 0s) whose server's
// health endpoint announces the version dest holds: it checks the release
// it kept from the run that fetched it instead of fetching it, and a dest
// that is that release costs the server no rsync connection. A local edit
// is repaired as without it; a kept release tampered with in any way is
// never taken (the run fetches the release); a new version syncs. A plain
// rsync daemon serves the signed trees, counting connections in its log; a
// small Deno server in the test plays the health endpoint. Both layouts.
import assert from "node:assert/strict";
import { manifestDigest, signRelease } from "../lib/release/mod.ts";
import { assertSameTree } from "./_helpers.ts";
import {
  LAYOUTS,
  markerOf,
  OURS,
  publish,
  signedLab,
  snapshot,
  V1,
  V2,
  withSigned,
} from "./_signed.ts";

Deno.test("kept release: a signed no-op checked every run makes no rsync connection; an edit, a deletion, added files and a chmod are repaired; a tampered kept release is never taken; a new version syncs", async () => {
  await withSigned(async (lab) => {
    const s = await signedLab(lab, { log: true });
    // The health endpoint: it announces the version the test says the server holds.
    let announced = markerOf(1);
    const endpoint = Deno.serve(
      { hostname: lab.ip(10), port: lab.port(lab.ip(10)), onListen() {} },
      () => Response.json({ version: announced }),
    );
    const notify = ["--notify", `${lab.ip(10)}:${endpoint.addr.port}`];
    try {
      for (const [i, [layout, flags]] of LAYOUTS.entries()) {
        const name = `web${i + 1}`;
        const dest = `${lab.dir}/apps/plugins${i + 1}`;
        const args = [...flags, ...notify];
        const kept = `${s.stateDir(name)}/release-fetch`;
        await publish(s.src, 1, V1, s.key);
        announced = markerOf(1);
        const first = await s.client(name, dest, args);
        assert.deepEqual([first.code, first.stderr], [0, ""], `${layout}: ${first.stderr}`);
        assert.equal((await s.status(name)).mode, "sync");

        // Nothing new: verified against the kept release, no connection.
        const before = await snapshot(dest);
        let conns = await s.connections();
        const noop = await s.client(name, dest, [...args, "--log-level", "debug"]);
        assert.equal(noop.code, 0, `${layout}: ${noop.stderr}`);
        assert.match(noop.stderr, /msg="dest is the kept release of the version the server holds/);
        assert.equal(await s.connections(), conns, `${layout}: no rsync connection`);
        assert.equal(await snapshot(dest), before, layout);
        let st = await s.status(name);
        assert.deepEqual([st.mode, st.exit_code, st.verified_at !== null], ["verify", 0, true]);
        const quiet = await s.client(name, dest, args);
        assert.deepEqual([quiet.code, quiet.stderr, quiet.stdout], [0, "", ""], layout);
        assert.equal(await s.connections(), conns, `${layout}: no rsync connection`);
        // A no-op that found dest to be the release made its stat record
        // whole of this manifest: from then on dest is compared with the
        // record alone, and the manifest is not read. Every repair below
        // starts from there.
        // In place, a staging dir a killed run left beside dest goes, as in
        // any run with nothing to fetch.
        const staging = `${lab.dir}/apps/.plugins${i + 1}.staging`;
        if (layout === "in place") {
          await Deno.mkdir(`${staging}/lib`, { recursive: true });
          await Deno.writeTextFile(`${staging}/lib/b.txt`, "half fetched\n");
        }
        const whole = await s.client(name, dest, [...args, "--log-level", "debug"]);
        assert.equal(whole.code, 0, `${layout}: ${whole.stderr}`);
        assert.match(whole.stderr, /msg="dest is its stat record, made whole of this manifest/);
        assert.equal(await s.connections(), conns, `${layout}: no rsync connection`);
        if (layout === "in place") await assert.rejects(Deno.lstat(staging), "staging dir gone");

        // An edit that keeps size and mtime: the change time gives it away,
        // and the run fetches the release and repairs as without a kept one.
        const edited = `${dest}/lib/b.txt`;
        const mtime = (await Deno.stat(edited)).mtime!;
        await Deno.writeTextFile(edited, "BRAVO v1\n");
        await Deno.utime(edited, mtime, mtime);
        const repair = await s.client(name, dest, args);
        assert.deepEqual([repair.code, repair.stderr], [0, ""], `${layout}: ${repair.stderr}`);
        assert.equal(await Deno.readTextFile(edited), "bravo v1\n", layout);
        st = await s.status(name);
        assert.deepEqual([st.mode, st.files_changed, st.exit_code], ["sync", 1, 0], layout);
        assert.ok((await s.connections()) > conns, `${layout}: the repair fetched`);
        await assertSameTree(s.src, `${dest}/`, OURS);
        // A deleted file, likewise.
        await Deno.remove(`${dest}/a.txt`);
        const restored = await s.client(name, dest, args);
        assert.deepEqual([restored.code, restored.stderr], [0, ""], layout);
        assert.equal(await Deno.readTextFile(`${dest}/a.txt`), "alpha v1\n", layout);
        // Files added in dest (one in a new directory) and a chmod: the next
        // run takes the added ones away and puts the signed mode back.
        const mode = (await Deno.stat(`${s.src}/lib/b.txt`)).mode! & 0o7777;
        await Deno.writeTextFile(`${dest}/added.php`, "<?php system($_GET['c']);\n");
        await Deno.mkdir(`${dest}/new`);
        await Deno.writeTextFile(`${dest}/new/added.txt`, "added\n");
        await Deno.chmod(`${dest}/lib/b.txt`, 0o4777);
        const cleaned = await s.client(name, dest, args);
        assert.deepEqual([cleaned.code, cleaned.stderr], [0, ""], `${layout}: ${cleaned.stderr}`);
        for (const p of ["added.php", "new"]) {
          await assert.rejects(Deno.lstat(`${dest}/${p}`), `${layout}: ${p} taken away`);
        }
        assert.equal((await Deno.stat(`${dest}/lib/b.txt`)).mode! & 0o7777, mode, layout);
        await assertSameTree(s.src, `${dest}/`, OURS);

        // The kept release tampered with, each way: never taken, the run
        // fetches the release, and dest stays as it was.
        const manifest = await Deno.readFile(`${s.src}/.fanout-manifest`);
        // Signed with the trusted key, for another manifest; and with a
        // key the fleet does not list, for this one.
        const swapped = await signRelease(
          {
            ...markerOf(1),
            manifest_sha256: await manifestDigest(new TextEncoder().encode("x\n")),
          },
          s.key,
        );
        const stranger = await signRelease(
          { ...markerOf(1), manifest_sha256: await manifestDigest(manifest) },
          s.stranger,
        );
        const tampers: [string, () => Promise<void>][] = [
          ["manifest bytes changed", async () => {
            await Deno.writeTextFile(`${kept}/.fanout-manifest`, "x\n", { append: true });
          }],
          ["envelope swapped", async () => {
            await Deno.writeFile(`${kept}/.fanout-release`, swapped);
          }],
          ["envelope signed by an unlisted key", async () => {
            await Deno.writeFile(`${kept}/.fanout-release`, stranger);
          }],
          ["kept files deleted", async () => {
            await Deno.remove(kept, { recursive: true });
          }],
          ["a symlink planted for the manifest", async () => {
            const copy = `${lab.dir}/manifest-copy`;
            await Deno.writeFile(copy, manifest);
            await Deno.remove(`${kept}/.fanout-manifest`);
            await Deno.symlink(copy, `${kept}/.fanout-manifest`);
          }],
          ["a symlink planted for the directory", async () => {
            const copy = `${lab.dir}/kept-copy-${i}`;
            await Deno.rename(kept, copy);
            await Deno.symlink(copy, kept);
          }],
        ];
        for (const [how, tamper] of tampers) {
          const was = await snapshot(dest);
          await tamper();
          conns = await s.connections();
          const r = await s.client(name, dest, [...args, "--log-level", "debug"]);
          assert.equal(r.code, 0, `${layout}, ${how}: ${r.stderr}`);
          assert.match(r.stderr, /msg="the kept release is not taken; fetching the release"/, how);
          assert.doesNotMatch(r.stderr, /nothing fetched/, how);
          assert.ok((await s.connections()) > conns, `${layout}, ${how}: fetched`);
          assert.equal((await s.status(name)).mode, "verify", `${layout}, ${how}`);
          assert.equal(await snapshot(dest), was, `${layout}, ${how}`);
          // The fetch left a kept release again: the next no-op needs no connection.
          conns = await s.connections();
          const after = await s.client(name, dest, args);
          assert.equal(after.code, 0, `${layout}, ${how}: ${after.stderr}`);
          assert.equal(await s.connections(), conns, `${layout}, ${how}: kept again`);
        }

        // A new version: the endpoint names it, and it syncs as without one.
        await publish(s.src, 2, V2, s.key);
        announced = markerOf(2);
        conns = await s.connections();
        const v2 = await s.client(name, dest, args);
        assert.deepEqual([v2.code, v2.stderr], [0, ""], `${layout}: ${v2.stderr}`);
        st = await s.status(name);
        assert.deepEqual([st.mode, (st.version as { seq: number }).seq], ["sync", 2], layout);
        assert.ok((await s.connections()) > conns, layout);
        await assertSameTree(s.src, `${dest}/`, OURS);
        conns = await s.connections();
        const noop2 = await s.client(name, dest, args);
        assert.equal(noop2.code, 0, noop2.stderr);
        assert.equal(await s.connections(), conns, `${layout}: no connection at seq 2`);
      }
    } finally {
      await endpoint.shutdown();
    }
  });
});
