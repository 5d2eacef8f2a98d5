// The client role end to end: a real replica daemon on a loopback alias, real
// client directories, the fanout CLI run as cron would run it.
import assert from "node:assert/strict";
import {
  assertSameTree,
  clientArgs,
  diffTrees,
  http,
  type Lab,
  rsync,
  sh,
  treeListing,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";
import { acquireLock } from "../lib/sys/mod.ts";
import { appendEntry, newEntry, parseMarker, readMarker } from "../lib/version/mod.ts";
import { existsNow } from "../lib/core/mod.ts";

const NAME = "web1";
const OURS = [".fanout-dest"]; // fanout's marker: in dest only

function marker(seq: number, commit = `c0ffee${seq}`): string {
  return JSON.stringify({
    seq,
    commit,
    ref: "main",
    published_at: `2026-11-25T00:00:${String(seq).padStart(2, "0")}Z`,
  }) + "\n";
}

function files(n: number, tag = "v1"): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`dir${i % 5}/sub${i % 3}/file${i}.txt`] = `${tag} file ${i}\n`;
  out["a.txt"] = `alpha ${tag}\n`;
  out["b.txt"] = "beta\n";
  return out;
}

interface Setup {
  src: string;
  dest: string;
  url: string;
  state: string;
  client: (args?: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  status: () => Promise<Record<string, unknown>>;
}

async function setup(
  lab: Lab,
  opts: { files?: Record<string, string>; client?: Record<string, string | number> } = {},
): Promise<Setup> {
  const dest = `${lab.dir}/apps/plugins`;
  await lab.fleet({
    replicas: ["rsync2"],
    client: { dest, retries: 0, ...opts.client },
  });
  const r2 = lab.hosts.rsync2;
  await writeTree(r2.path, { ...(opts.files ?? files(40)), ".fanout-version": marker(1) });
  await Deno.symlink("a.txt", `${r2.path}/link-to-a`);
  await lab.server("replica", "rsync2");
  const url = `rsync://${r2.ip}:${r2.port}/plugins/`;
  const state = `${lab.dir}/state/${NAME}`;
  return {
    src: r2.path,
    dest,
    url,
    state,
    client: (args = []) =>
      lab.run([
        ...clientArgs(lab, NAME, ["--source", url, ...args]),
      ]),
    status: async () => JSON.parse(await Deno.readTextFile(`${state}/client-status.json`)),
  };
}

/** True while `pid` runs (a zombie does not count). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

Deno.test("client: first sync, a silent no-op, the fast path, the status file", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    const first = await s.client();
    assert.deepEqual([first.code, first.stdout, first.stderr], [0, "", ""], first.stderr);
    await assertSameTree(s.src, s.dest, OURS);
    assert.ok((await Deno.lstat(`${s.dest}/link-to-a`)).isSymlink);
    assert.ok((await Deno.stat(`${s.dest}/.fanout-dest`)).isFile, "dest is marked");
    let st = await s.status();
    assert.equal(st.mode, "sync");
    assert.equal(st.exit_code, 0);
    assert.equal(st.error, null);
    assert.equal((st.version as { seq: number }).seq, 1);
    assert.equal(st.server, s.url.slice(8, -9));
    assert.equal(st.host, NAME);
    assert.ok((st.files_changed as number) >= 43, `files_changed ${st.files_changed}`);
    assert.ok((st.bytes_changed as number) > 0);
    assert.equal(typeof st.duration_ms, "number");
    assert.ok(st.verified_at);

    // A no-op changes nothing: same inodes, same mtimes, nothing printed.
    const before = await treeListing(s.dest);
    const noop = await s.client();
    assert.deepEqual([noop.code, noop.stdout, noop.stderr], [0, "", ""]);
    assert.equal(await treeListing(s.dest), before);
    st = await s.status();
    assert.equal(st.mode, "verify");
    assert.equal(st.drift, 0);

    // With verify_every, an unchanged version stops after the marker request.
    const fast = await s.client(["--verify-every", "1h"]);
    assert.equal(fast.code, 0, fast.stderr);
    assert.equal((await s.status()).mode, "fast");
    // …even when the tree changed behind an unchanged marker (by design) …
    await writeTree(s.src, { "a.txt": "alpha v2\n" });
    assert.equal((await s.client(["--verify-every", "1h"])).code, 0);
    assert.equal((await s.status()).mode, "fast");
    assert.equal(await Deno.readTextFile(`${s.dest}/a.txt`), "alpha v1\n");
    // … and a new version is fetched at once, once the server announces it
    // (its read module's comment follows the marker within a moment).
    await writeTree(s.src, { ".fanout-version": marker(2) });
    await waitFor("the server announces seq 2", async () => {
      const list = await sh("rsync", [s.url.replace(/[^/]+\/$/, "")]);
      return /fanout-version seq=2 /.test(list.stdout);
    });
    const v2 = await s.client(["--verify-every", "1h", "--verbose"]);
    assert.equal(v2.code, 0, v2.stderr);
    assert.match(v2.stderr, /synced .* to seq 2 \(c0ffee2 main\) from .*: 2 changed, 0 deleted/);
    await assertSameTree(s.src, s.dest, OURS);
    st = await s.status();
    assert.equal(st.mode, "sync");
    assert.equal((st.previous_version as { seq: number }).seq, 1);

    // A version going backwards is mirrored, with a warning naming both.
    await writeTree(s.src, { ".fanout-version": marker(1, "0ld0ld") });
    const back = await s.client();
    assert.equal(back.code, 0, back.stderr);
    assert.match(
      back.stderr,
      /level=warn msg="version went backwards".*from="seq 2 \(c0ffee2 main\)" to="seq 1 \(0ld0ld main\)"/,
    );
    await assertSameTree(s.src, s.dest, OURS);
  });
});

Deno.test("client: local edits are overwritten and kept in the backup dir", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    await Deno.writeTextFile(`${s.dest}/a.txt`, "my local edit\n");
    await Deno.remove(`${s.dest}/b.txt`);
    await Deno.writeTextFile(`${s.dest}/dir1/notes.txt`, "scratch\n");
    await Deno.mkdir(`${s.dest}/.git/objects`, { recursive: true }); // no .git on a client
    const backups = `${lab.dir}/backups`;
    const r = await s.client(["--backup-dir", backups]);
    assert.deepEqual([r.code, r.stderr], [0, ""]);
    await assertSameTree(s.src, s.dest, OURS);
    const runs = await Array.fromAsync(Deno.readDir(backups));
    assert.equal(runs.length, 1, "one backup dir per run");
    const kept = `${backups}/${runs[0].name}`;
    assert.equal(await Deno.readTextFile(`${kept}/a.txt`), "my local edit\n");
    assert.equal(await Deno.readTextFile(`${kept}/dir1/notes.txt`), "scratch\n");
    assert.equal((await s.status()).backup_dir, kept);
    // Nothing to overwrite: no new backup dir.
    assert.equal((await s.client(["--backup-dir", backups])).code, 0);
    assert.equal((await Array.fromAsync(Deno.readDir(backups))).length, 1);

    // Entries that change kind: a file becomes a directory and back.
    await Deno.remove(`${s.src}/b.txt`);
    await writeTree(s.src, { "b.txt/inner.txt": "now a dir\n" });
    await Deno.remove(`${s.src}/dir2`, { recursive: true });
    await writeTree(s.src, { "dir2": "now a file\n" });
    const kinds = await s.client();
    assert.deepEqual([kinds.code, kinds.stderr], [0, ""]);
    await assertSameTree(s.src, s.dest, OURS);

    const inside = await s.client(["--backup-dir", `${s.dest}/.backups`]);
    assert.equal(inside.code, 2);
    assert.match(inside.stderr, /the backup dir .* is inside it/);
  });
});

Deno.test("client: a run killed mid-transfer leaves no partial file; the next run completes", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { files: files(10) });
    assert.equal((await s.client()).code, 0);
    const size = 48 << 20;
    const bigFiles = ["big1.bin", "big2.bin", "big3.bin", "big4.bin", "dir1/big5.bin"];
    const grow = async (n: number) => {
      for (const f of bigFiles) {
        const file = await Deno.open(`${s.src}/${f}`, { write: true, create: true });
        await file.truncate(size + n); // sparse: cheap to make, costly to send
        file.close();
      }
      await writeTree(s.src, { "a.txt": `alpha ${n}\n` });
    };
    const killMidTransfer = async (alsoRsync: "kill" | "freeze") => {
      const p = lab.spawn([
        ...clientArgs(lab, NAME, ["--source", s.url]),
      ]);
      const partial = await waitFor(
        "a partial file in .~tmp~",
        async () => {
          for (const dir of [s.dest, `${s.dest}/dir1`]) {
            try {
              for await (const e of Deno.readDir(`${dir}/.~tmp~`)) {
                if ((await Deno.stat(`${dir}/.~tmp~/${e.name}`)).size > 0) return e.name;
              }
            } catch { /* not yet */ }
          }
          return null;
        },
        20_000,
        5,
      );
      const rsyncPid = Number(
        (await Deno.readTextFile(`${s.state}/client-rsync.pid`)).split("\n")[0],
      );
      if (alsoRsync === "freeze") Deno.kill(-rsyncPid, "SIGSTOP"); // an orphan that hangs on
      p.kill("SIGKILL"); // fanout, like the OOM killer or a reboot would
      if (alsoRsync === "kill") Deno.kill(-rsyncPid, "SIGKILL");
      await p.status();
      return { partial, rsyncPid };
    };
    // Complete means: the old version's file, or the new one's, never a part.
    const assertNoPartial = async (sizes: number[]) => {
      for (const f of bigFiles) {
        try {
          const st = await Deno.stat(`${s.dest}/${f}`);
          assert.ok(sizes.includes(st.size), `${f} is partial: ${st.size} bytes`);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
    };

    // 1. fanout and its rsync both killed: staging dirs stay behind.
    await grow(0);
    const k1 = await killMidTransfer("kill");
    assert.ok(k1.partial);
    await assertNoPartial([size]);
    const next = await s.client();
    assert.deepEqual([next.code, next.stderr], [0, ""]);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal((await sh("find", [s.dest, "-name", ".~tmp~"])).stdout, "", "no staging left");

    // 2. only fanout killed: its rsync lives on (here: hung). The next run
    //    stops it before syncing, so two rsyncs never write one dest.
    await grow(1);
    const k2 = await killMidTransfer("freeze");
    try {
      await assertNoPartial([size, size + 1]);
      const after = await s.client();
      assert.equal(after.code, 0, after.stderr);
      assert.match(after.stderr, /stopping an rsync left running by a killed run.*pid=\d+/);
      await assertSameTree(s.src, s.dest, OURS);
      assert.equal((await sh("find", [s.dest, "-name", ".~tmp~"])).stdout, "");
      assert.ok(!(await alive(k2.rsyncPid)), "the orphan is gone");
    } finally {
      try {
        Deno.kill(-k2.rsyncPid, "SIGKILL");
      } catch { /* gone */ }
    }
  });
});

Deno.test("client: a transfer cut by the server and retried leaves no staging dir behind", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, {
      files: { "a/small.txt": "staged first\n" },
      client: { retries: 2 },
    });
    await Deno.mkdir(`${s.src}/zz`);
    const big = await Deno.open(`${s.src}/zz/big.bin`, { write: true, create: true });
    await big.truncate(1 << 28); // sparse: cheap to make, slow enough to send
    big.close();
    const h = lab.hosts.rsync2;
    const daemon = JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body).daemon.pid;
    const run = s.client();
    // a/small.txt is done (staged in a/.~tmp~ until the end), zz/big.bin on its way:
    // the server's process for this connection dies.
    await waitFor(
      "a/small.txt staged",
      () => Deno.stat(`${s.dest}/a/.~tmp~/small.txt`).catch(() => null),
      20_000,
      5,
    );
    const children = (await sh("pgrep", ["-P", String(daemon)])).stdout.trim().split("\n");
    for (const pid of children.filter(Boolean)) Deno.kill(Number(pid), "SIGKILL");
    // Before the retry, the source drops the staged file.
    await Deno.remove(`${s.src}/a/small.txt`);
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sh("find", [s.dest, "-name", ".~tmp~"])).stdout, "", "no staging dir left");
    await assertSameTree(s.src, s.dest, OURS);
  });
});

Deno.test("client: files that vanish from the source during the transfer (a push landing) are no failure", async () => {
  await withLab(async (lab) => {
    // A server mid-push: rsync's temp files come and go, a new version deletes files.
    const s = await setup(lab, {
      files: { "zz/.marker.Ab3dE9": "in flight\n", "zz/old.txt": "old\n" },
      client: { retries: 1 },
    });
    await Deno.mkdir(`${s.src}/a`);
    const big = await Deno.open(`${s.src}/a/big.bin`, { write: true, create: true });
    await big.truncate(1 << 28); // sent first (sorted), slowly enough
    big.close();
    const run = s.client();
    await waitFor(
      "a/big.bin on its way",
      async () => {
        try {
          // rsync's temp file (.big.bin.XXXXXX), or the file staged in .~tmp~.
          for await (const e of Deno.readDir(`${s.dest}/a`)) {
            if (e.name.startsWith(".")) return true;
          }
        } catch { /* not yet */ }
        return false;
      },
      20_000,
      5,
    );
    await Deno.remove(`${s.src}/zz/.marker.Ab3dE9`);
    await Deno.remove(`${s.src}/zz/old.txt`);
    const r = await run;
    assert.deepEqual([r.code, r.stderr], [0, ""], "a cron run that mails nothing");
    await assertSameTree(s.src, s.dest, OURS);
  });
});

Deno.test("client: overlapping runs: the second exits 5, quietly unless --verbose", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    await Deno.mkdir(s.state, { recursive: true });
    const held = await acquireLock(`${s.state}/client.lock`, { timeout: 0, what: "test" });
    try {
      const quiet = await s.client();
      assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [5, "", ""]);
      const loud = await s.client(["--verbose"]);
      assert.equal(loud.code, 5);
      assert.match(loud.stderr, /^fanout: another client run holds .*client\.lock \(pid \d+\)\n$/);
      await assert.rejects(Deno.stat(s.dest), "nothing synced while locked");
    } finally {
      held.release();
    }
    assert.equal((await s.client()).code, 0);
  });
});

Deno.test("client: dangerous destinations are refused with exit 4, nothing touched", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    const refuse = async (dest: string, re: RegExp, extra: string[] = []) => {
      const r = await s.client(["--dest", dest, ...extra]);
      assert.equal(r.code, 4, `${dest}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
    };
    await refuse("/", /^fanout: refusing dest \/: it is the root directory; nothing changed/);
    await refuse("/etc", /refusing dest \/etc: it is a system directory/);
    await refuse("/usr/local/bin", /system directory/);
    await refuse("/etc/fanout/plugins", /inside the system directory \/etc/);
    await refuse("/root", /system directory|home directory/);
    const passwd = await Deno.readTextFile("/etc/passwd");
    const home = passwd.split("\n").map((l) => l.split(":")).find((f) =>
      f.length >= 7 && /^\/(var|srv|opt|data)\/./.test(f[5]) &&
      !/^\/var\/(lib|log|cache|spool|tmp)$/.test(f[5])
    );
    if (home) await refuse(home[5], new RegExp(`home directory of user ${home[0]}`));
    const link = `${lab.dir}/innocent`;
    await Deno.symlink("/etc", link);
    await refuse(link, /innocent resolves to \/etc\): it is a system directory/);
    await refuse(`${lab.dir}/state`, /the state dir .* is inside it/);
    await Deno.writeTextFile(`${lab.dir}/afile`, "x");
    await refuse(`${lab.dir}/afile`, /not a directory/);

    // A git checkout: refused, then adopted once with --adopt.
    const co = `${lab.dir}/checkout`;
    await writeTree(co, { "a.txt": "old alpha\n", "mine.txt": "local\n" });
    for (
      const args of [["init", "-q"], ["add", "-A"], [
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "x",
      ]]
    ) assert.equal((await sh("git", args, { cwd: co })).code, 0);
    const before = await treeListing(co);
    await refuse(co, /is not empty and has no \.fanout-dest marker.*--adopt/);
    assert.equal(await treeListing(co), before, "refusal touched nothing");
    const adopt = await s.client(["--dest", co, "--adopt"]);
    assert.deepEqual([adopt.code, adopt.stderr.includes("level=error")], [0, false], adopt.stderr);
    await assertSameTree(s.src, co, OURS);
    await assert.rejects(Deno.stat(`${co}/.git`), ".git dropped");
    assert.equal((await s.client(["--dest", co])).code, 0, "adopted for good");
  });
});

Deno.test("client: a source that lost its tree is refused (max_delete, empty, no marker)", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    const before = await treeListing(s.dest);
    // 30 files gone on the server: more than max_delete.
    for (let i = 0; i < 30; i++) {
      await Deno.remove(`${s.src}/dir${i % 5}/sub${i % 3}/file${i}.txt`);
    }
    await writeTree(s.src, { "a.txt": "changed too\n" });
    const many = await s.client(["--max-delete", "20"]);
    assert.equal(many.code, 4);
    assert.match(
      many.stderr,
      /^fanout: refusing to sync .*: it would delete 30 entries, more than client.max_delete \(20\); nothing changed/,
    );
    assert.equal(await treeListing(s.dest), before, "dest untouched, not even the changed file");
    assert.equal((await s.status()).exit_code, 4);
    // Allowed when within the limit.
    assert.equal((await s.client(["--max-delete", "30"])).code, 0);
    await assertSameTree(s.src, s.dest, OURS);

    const synced = await treeListing(s.dest);
    const hide = `${lab.dir}/hidden`;
    await Deno.rename(`${s.src}/.fanout-version`, `${lab.dir}/marker`);
    const noMarker = await s.client();
    assert.equal(noMarker.code, 4);
    assert.match(noMarker.stderr, /has no \.fanout-version while dest holds seq 1/);
    assert.equal(await treeListing(s.dest), synced);

    await Deno.mkdir(hide);
    for await (const e of Deno.readDir(s.src)) {
      await Deno.rename(`${s.src}/${e.name}`, `${hide}/${e.name}`);
    }
    const empty = await s.client(["--max-delete", "100000"]);
    assert.equal(empty.code, 4);
    assert.match(empty.stderr, /the source .* is empty/);
    assert.equal(await treeListing(s.dest), synced);
  });
});

Deno.test("client: --check lists drift, exit 0 in sync and 1 when not, changing nothing", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    const absent = await s.client(["--check"]);
    assert.equal(absent.code, 1);
    assert.match(absent.stdout, /missing {2}a\.txt/);
    assert.equal((await s.client()).code, 0);
    const ok = await s.client(["--check"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /is in sync with rsync:\/\/.*\ndest: seq 1 \(c0ffee1 main\); source: seq 1/,
    );

    await Deno.writeTextFile(`${s.dest}/a.txt`, "edited locally\n");
    await Deno.remove(`${s.dest}/b.txt`);
    await Deno.writeTextFile(`${s.dest}/local.txt`, "mine\n");
    await Deno.writeTextFile(`${s.dest}/dir1/café.txt`, "local\n");
    const before = await treeListing(s.dest);
    const drift = await s.client(["--check"]);
    assert.equal(drift.code, 1, drift.stderr);
    assert.match(drift.stdout, /differs from .* in 5 entries \(2 changed, 1 missing, 2 extra\):/);
    assert.match(drift.stdout, /^ {2}extra {4}dir1\/café\.txt$/m);
    assert.match(drift.stdout, /^ {2}changed {2}a\.txt \(.*size.*\)$/m);
    assert.match(drift.stdout, /^ {2}missing {2}b\.txt$/m);
    assert.match(drift.stdout, /^ {2}extra {4}local\.txt$/m);
    assert.doesNotMatch(drift.stdout, /fanout-dest|~tmp~/);

    const json = await s.client(["--check", "--json"]);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout);
    assert.equal(report.in_sync, false);
    assert.deepEqual(report.missing.map((i: { path: string }) => i.path), ["b.txt"]);
    assert.deepEqual(report.extra.map((i: { path: string }) => i.path).sort(), [
      "dir1/café.txt",
      "local.txt",
    ]);
    assert.equal(report.changed[0].path, "a.txt");
    assert.equal(report.source_version.seq, 1);
    assert.equal(await treeListing(s.dest), before, "--check changed nothing");
    // Names rsync prints escaped are synced all the same (by a whole-tree pass).
    await writeTree(s.src, { "ünïcode/naïve.txt": "x\n" });
    assert.equal((await s.client()).code, 0);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal((await s.client(["--check"])).code, 0);

    const bad = await s.client(["--json"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--json goes with --check/);
  });
});

Deno.test("client: the server unreachable: one clear line, exit 3, dest untouched", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    await Deno.writeTextFile(`${s.dest}/a.txt`, "local edit\n");
    const before = await treeListing(s.dest);
    const nowhere = `rsync://${lab.ip(99)}:${lab.port(lab.ip(99))}/plugins/`;
    const t0 = Date.now();
    const r = await s.client(["--source", nowhere, "--retries", "1"]);
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /^fanout: cannot sync from rsync:\/\/.* \(2 attempts\): rsync exit 10 \(error in socket I\/O\): .*Connection refused.*; dest unchanged\n$/,
    );
    assert.ok(Date.now() - t0 >= 700, "waited before retrying");
    assert.equal(await treeListing(s.dest), before);
    const st = await s.status();
    assert.equal(st.exit_code, 3);
    assert.match(st.error as string, /Connection refused/);
    assert.equal(st.mode, "failed");

    // Not a connection failure: no retry, rsync's own words.
    const typo = await s.client([
      "--source",
      s.url.replace("/plugins/", "/plugns/"),
      "--retries",
      "3",
    ]);
    assert.equal(typo.code, 3);
    assert.match(typo.stderr, /rsync exit 5 .*@ERROR: Unknown module 'plugns'/);
    assert.equal(await treeListing(s.dest), before);
  });
});

Deno.test("client: when the comparison and the transfer reach servers at two versions, dest ends at one of them", async () => {
  await withLab(async (lab) => {
    // Behind a balancer each rsync connection may reach another server, and
    // while a version travels the servers hold different ones. fanout's proxy
    // holds a client to one server for a while (proxy.affinity); off here,
    // it is the round robin of a balancer without it.
    const dest = `${lab.dir}/apps/plugins`;
    await lab.fleet({
      replicas: ["rsync2", "rsync3"],
      proxy: { backends: "[rsync2, rsync3]", version_grace: "1h", affinity: "0s" },
      client: { dest, retries: 0 },
    });
    const v1 = {
      "a.txt": "a1\n",
      "b.txt": "b1\n",
      "gone/x.txt": "x\n",
      ".fanout-version": marker(1),
    };
    const [r2, r3] = [lab.hosts.rsync2.path, lab.hosts.rsync3.path];
    await writeTree(r2, v1);
    assert.equal((await sh("cp", ["-a", `${r2}/.`, r3])).code, 0, "the same tree, mtimes too");
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    await lab.proxy();
    const client = () =>
      lab.run(["--role", "client", "-c", lab.fleetFile, "--name", NAME, "--no-splay"]);
    assert.equal((await client()).code, 0);
    await assertSameTree(r2, dest, OURS);

    // rsync2 got version 2, rsync3 already version 3 (which deletes gone/ and adds c.txt).
    await writeTree(r2, { "b.txt": "b2\n", ".fanout-version": marker(2) });
    await Deno.remove(`${r3}/gone`, { recursive: true });
    await writeTree(r3, { "b.txt": "b3\n", "c.txt": "c3\n", ".fanout-version": marker(3) });
    // Round robin: line it up so the comparison reaches rsync2 and the transfer rsync3.
    const px = lab.hosts.proxy;
    const served = async () => {
      const st = JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
      return st.backends.map((b: { connections: number }) => b.connections).join(",");
    };
    for (let i = 0; i < 2; i++) {
      const before = await served();
      const probe = await rsync(["--list-only", `rsync://${px.ip}:${px.port}/plugins/a.txt`]);
      assert.equal(probe.code, 0, probe.stderr);
      const [n2, n3] = (await served()).split(",").map(Number);
      const [b2, b3] = before.split(",").map(Number);
      if (n3 > b3 && n2 === b2) break; // rsync3 took the probe: rsync2 is next
    }
    const r = await client();
    assert.equal(r.code, 0, r.stderr);
    const d2 = await diffTrees(r2, dest, OURS);
    const d3 = await diffTrees(r3, dest, OURS);
    assert.ok(d2 === "" || d3 === "", `dest is neither version 2 nor version 3:\n${d3}`);
  });
});

Deno.test("client: a proxy with no healthy server for a moment is retried, not a failure", async () => {
  await withLab(async (lab) => {
    const dest = `${lab.dir}/apps/plugins`;
    await lab.fleet({
      replicas: ["rsync2"],
      proxy: { backends: "[rsync2]" },
      // Retries over ~15 s (1, 2, 4, 8 s): room for a replica to start on a busy machine.
      client: { dest, retries: 4 },
    });
    await writeTree(lab.hosts.rsync2.path, { "a.txt": "a\n", ".fanout-version": marker(1) });
    // The proxy is up, its only server not yet (a restart, a flood's timeouts).
    await lab.proxy();
    const run = lab.run(["--role", "client", "-c", lab.fleetFile, "--name", NAME, "--no-splay"]);
    // The server comes back once the proxy has turned the client away.
    const px = lab.hosts.proxy;
    await waitFor("the client's first attempt refused", async () => {
      const st = JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
      return st.connections.refused_no_backend > 0;
    }, 30_000);
    await lab.server("replica", "rsync2");
    const r = await run;
    assert.deepEqual([r.code, r.stderr], [0, ""], "retried once the server is back");
    await assertSameTree(lab.hosts.rsync2.path, dest, OURS);
  });
});

Deno.test("client: --watch picks up a new version within its interval, holding the lock", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { watch_interval: "100ms" } });
    const w = lab.spawn([
      "--role",
      "client",
      "-c",
      lab.fleetFile,
      "--name",
      NAME,
      "--no-splay",
      "--source",
      s.url,
      "--watch",
      "--log-level",
      "debug",
    ]);
    await waitFor("first sync", async () => (await s.status()).mode === "sync", 15_000);
    await assertSameTree(s.src, s.dest, OURS);
    const cron = await s.client();
    assert.deepEqual([cron.code, cron.stderr], [5, ""], "cron runs step aside for --watch");

    const syncedTo = (seq: number) =>
      waitFor(
        `version ${seq} synced`,
        async () => {
          const st = await s.status();
          return st.exit_code === 0 && (st.version as { seq: number }).seq === seq;
        },
        10_000,
        20,
      );
    await writeTree(s.src, { "a.txt": "alpha v2\n", "new/file.txt": "new\n" });
    await Deno.remove(`${s.src}/b.txt`);
    await writeTree(s.src, { ".fanout-version": marker(2) });
    await syncedTo(2);
    await assertSameTree(s.src, s.dest, OURS);
    // Between its tree walks, a version the log lists is fetched by the log.
    await landVersion(s, 3, { write: { "c.txt": "c\n" }, paths: ["c.txt"], deleted: [] });
    await syncedTo(3);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal((await w.stop("SIGTERM")).code, 0);
    assert.match(w.stderr, /msg=synced .*version="seq 2/);
    assert.match(w.stderr, /msg="caught up by the version log".*to="seq 3/);
  });
});

Deno.test("client: --atomic swaps whole trees, keeps client.keep, rolls back and stays", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { keep: 2 } });
    // Start as a plain mirror: switching to --atomic keeps it as a tree.
    assert.equal((await s.client()).code, 0);
    const trees = `${lab.dir}/apps/.plugins.trees`;
    const live = async () => await Deno.realPath(s.dest);
    const publish = async (seq: number, change: Record<string, string>) => {
      await writeTree(s.src, change);
      await writeTree(s.src, { ".fanout-version": marker(seq) });
    };

    await publish(2, { "a.txt": "alpha v2\n" });
    const a2 = await s.client(["--atomic"]);
    assert.deepEqual([a2.code, a2.stderr], [0, ""]);
    assert.ok((await Deno.lstat(s.dest)).isSymlink);
    assert.ok((await live()).startsWith(`${trees}/`));
    await assertSameTree(s.src, `${s.dest}/`, OURS);
    const t2 = await live();
    // Unchanged files are hard links into the previous tree, not copies.
    const names = (await Array.fromAsync(Deno.readDir(trees))).map((e) => e.name).sort();
    assert.equal(names.length, 2);
    assert.match(names[0], /-before-atomic$/);
    const oldB = await Deno.stat(`${trees}/${names[0]}/b.txt`);
    assert.equal((await Deno.stat(`${t2}/b.txt`)).ino, oldB.ino);
    assert.notEqual(
      (await Deno.stat(`${t2}/a.txt`)).ino,
      (await Deno.stat(`${trees}/${names[0]}/a.txt`)).ino,
    );

    // A no-op makes no new tree.
    assert.equal((await s.client(["--atomic"])).code, 0);
    assert.equal(await live(), t2);

    await publish(3, { "a.txt": "alpha v3 (bad)\n" });
    assert.equal((await s.client(["--atomic"])).code, 0);
    const t3 = await live();
    assert.notEqual(t3, t2);
    assert.equal((await Array.fromAsync(Deno.readDir(trees))).length, 2, "client.keep trees");

    const rb = await s.client(["--atomic", "--rollback"]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /rolled back .* from seq 3 \(c0ffee3 main\) to seq 2 \(c0ffee2 main\)/);
    assert.equal(await live(), t2);
    assert.equal(await Deno.readTextFile(`${s.dest}/a.txt`), "alpha v2\n");
    // Cron runs leave the rollback in place while the source still has seq 3…
    assert.equal((await s.client(["--atomic"])).code, 0);
    assert.equal((await s.status()).mode, "pinned");
    assert.equal(await live(), t2);
    // …and a rollback past the oldest kept tree is refused.
    const tooFar = await s.client(["--atomic", "--rollback"]);
    assert.equal(tooFar.code, 2);
    assert.match(tooFar.stderr, /no tree older than the live one/);
    // A newer version ends the pin.
    await publish(4, { "a.txt": "alpha v4 (fixed)\n" });
    assert.equal((await s.client(["--atomic"])).code, 0);
    assert.equal(await Deno.readTextFile(`${s.dest}/a.txt`), "alpha v4 (fixed)\n");
    await assertSameTree(s.src, `${s.dest}/`, OURS);

    const combo = await s.client(["--atomic", "--backup-dir", `${lab.dir}/bk`]);
    assert.equal(combo.code, 2);
    assert.match(combo.stderr, /client.atomic and client.backup_dir do not go together/);
  });
});

Deno.test("client: the rendered cron line runs a silent, working client", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    const bin = await lab.wrapper();
    const r = await lab.run([
      "render",
      "cron",
      "--role",
      "client",
      "-c",
      lab.fleetFile,
      "--name",
      NAME,
      "--source",
      s.url,
      "--splay",
      "1ms",
      "--set",
      `binary=${bin}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split("\n").find((l) => /^[*\d]/.test(l))!;
    const fields = line.split(/\s+/);
    assert.equal(fields[5], "root");
    const command = fields.slice(6).join(" ");
    assert.ok(command.startsWith(`${bin} --role client`), command);
    const ran = await sh("/bin/sh", ["-c", command], { cwd: "/" });
    assert.deepEqual([ran.code, ran.stdout, ran.stderr], [0, "", ""]);
    await assertSameTree(s.src, s.dest, OURS);
  });
});

Deno.test("client: a drift applied from a server at another version gets the whole tree, not a mix", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    await Deno.writeTextFile(`${s.dest}/a.txt`, "my local edit\n");
    // The real rsync behind a wrapper that lands version 2 on the server
    // right before the list of drifted paths is sent: the comparison saw
    // version 1, the transfer reaches version 2 (behind a balancer: another
    // server, or a push in between). Version 2 changes a.txt and b.txt.
    const wrapper = await rsyncWrapper(
      lab,
      "rsync-version-lands",
      `case "$*" in *--files-from=*)
  echo "a, version 2" > "${s.src}/a.txt"
  echo "b, version 2" > "${s.src}/b.txt"
  printf '%s\\n' '${marker(2)}' > "${s.src}/.fanout-version" ;;
esac
`,
    );
    const r = await s.client(["--set", `rsync.path=${wrapper}`]);
    assert.deepEqual([r.code, r.stderr], [0, ""]);
    // Not a.txt of version 2 under version 1's marker: all of version 2.
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal(await Deno.readTextFile(`${s.dest}/b.txt`), "b, version 2\n");
  });
});

Deno.test("client: killed after a drift list brought another version's marker, the next run still gets the whole tree", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    await Deno.writeTextFile(`${s.dest}/a.txt`, "my local edit\n");
    // As above, version 2 lands right before the list is sent, so the list
    // brings a.txt and the marker of version 2 but not b.txt. The client is
    // then killed as the whole-tree sync starts: dest holds version 2's
    // marker over version 1's b.txt, and the next run must not trust it.
    const seen = `${lab.dir}/list-was-sent`;
    const wrapper = await rsyncWrapper(
      lab,
      "rsync-version-lands-then-killed",
      `case "$*" in
*--files-from=*)
  echo "a, version 2" > "${s.src}/a.txt"
  echo "b, version 2" > "${s.src}/b.txt"
  printf '%s\\n' '${marker(2)}' > "${s.src}/.fanout-version"
  touch "${seen}" ;;
*--delete*)
  [ -e "${seen}" ] && kill -9 $PPID && exit 1 ;;
esac
`,
    );
    const killed = await s.client(["--set", `rsync.path=${wrapper}`]);
    assert.notEqual(killed.code, 0, "the client was killed");
    assert.equal(readMarker(s.dest)?.seq, 2, "the list brought version 2's marker");
    assert.equal(await Deno.readTextFile(`${s.dest}/b.txt`), "beta\n");

    const r = await s.client();
    assert.deepEqual([r.code, r.stderr], [0, ""]);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal(await Deno.readTextFile(`${s.dest}/b.txt`), "b, version 2\n");
  });
});

Deno.test("client: a version landing between rsync's listing and its sending of the marker: compared again, not trusted", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { verify_every: "1h" } });
    assert.equal((await s.client()).code, 0);
    // Version 3 adds new.txt, with no log entry: the whole tree is compared.
    await writeTree(s.src, { "new.txt": "new in version 3\n" });
    await Deno.writeTextFile(`${s.src}/.fanout-version`, marker(3));
    // The end state of the race (plain rsync --delay-updates leaves it too,
    // and behind a proxy the reads before and after the transfer may reach
    // other servers, which widens the window): the listing was made before
    // version 3 landed (no new.txt, the older marker's mtime), the marker's
    // bytes were read after it. The wrapper makes the first transfer so.
    const { wrapper, once } = await listedBeforeVersion(lab, s, 3, "--delete", "new.txt");
    const r = await s.client(["--set", `rsync.path=${wrapper}`, "--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsNow(once), "the wrapper made the first transfer");
    assert.match(r.stderr, /a version landed while the tree was being read; comparing again/);
    await assertSameTree(s.src, s.dest, OURS);
    const st = await s.status();
    assert.equal((st.version as { seq: number }).seq, 3);
    assert.notEqual(st.verified_at, null, "the second comparison held still");
  });
});

Deno.test("client: a catch-up whose listing predates the version it names falls back to the whole tree", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { verify_every: "1h" } });
    assert.equal((await s.client()).code, 0);
    await landVersion(s, 2, { write: { "a.txt": "alpha v2\n" }, paths: ["a.txt"], deleted: [] });
    // As above, for the listed transfer of a catch-up: the listing saw a.txt
    // as it was before version 2 (so rsync skipped it), the marker's bytes
    // came after.
    const { wrapper, once } = await listedBeforeVersion(lab, s, 2, "--files-from=", "a.txt");
    const r = await s.client(["--set", `rsync.path=${wrapper}`, "--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsNow(once), "the wrapper made the listed transfer");
    assert.match(r.stderr, /the source did not match its version log; comparing the whole tree/);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal(await Deno.readTextFile(`${s.dest}/a.txt`), "alpha v2\n");
  });
});

/**
 * Writes an executable rsync wrapper named `name` into the lab dir: the shell
 * lines `before` run first (the arguments are "$@"), then the real rsync
 * unless they exit. Returns its path.
 */
async function rsyncWrapper(lab: Lab, name: string, before: string): Promise<string> {
  const path = `${lab.dir}/${name}`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${before}exec rsync "$@"\n`, { mode: 0o755 });
  return path;
}

/**
 * An rsync wrapper whose first transfer into dest with `kind` among its
 * arguments ends as a version landing in the middle of it leaves dest:
 * `missing` was not in the listing, and the marker keeps an mtime from
 * before version `seq` (its bytes are the new ones). `once` appears when it
 * did so.
 */
async function listedBeforeVersion(
  lab: Lab,
  s: Setup,
  seq: number,
  kind: "--delete" | "--files-from=",
  missing: string,
): Promise<{ wrapper: string; once: string }> {
  const at = Date.parse(JSON.parse(marker(seq)).published_at) / 1000 - 60;
  const once = `${lab.dir}/raced`;
  const wrapper = await rsyncWrapper(
    lab,
    `rsync-listed-before-version-${seq}`,
    `for last; do :; done
case "$*" in *--dry-run*) exec rsync "$@" ;; esac
case "$*" in *${kind}*)
  if [ ! -e "${once}" ] && [ "$last" = "${s.dest}/" ]; then
    touch "${once}"
    rsync --exclude=/${missing} "$@" || exit $?
    touch -d @${at} "${s.dest}/.fanout-version"
    exit 0
  fi ;;
esac
`,
  );
  return { wrapper, once };
}

Deno.test("client: a drift listing a path the other version removed gets the whole tree, not exit 3", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    assert.equal((await s.client()).code, 0);
    await Deno.writeTextFile(`${s.dest}/a.txt`, "my local edit\n");
    // As above, but version 2 removes a.txt, the drifted path the list
    // names: rsync on that server fails the list (exit 23), which must not
    // end the client's run with exit 3.
    const wrapper = await rsyncWrapper(
      lab,
      "rsync-version-removes",
      `case "$*" in *--files-from=*)
  rm -f "${s.src}/a.txt"
  printf '%s\\n' '${marker(2)}' > "${s.src}/.fanout-version" ;;
esac
`,
    );
    const r = await s.client(["--set", `rsync.path=${wrapper}`, "--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /a listed path is gone on the server; syncing the whole tree/);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal(existsNow(`${s.dest}/a.txt`), false);
  });
});

/**
 * Lands version `seq` on the server as the publisher does: the changed tree,
 * then the version log with its entry, then the marker; waits until the
 * server announces it.
 */
async function landVersion(
  s: Setup,
  seq: number,
  change: { write?: Record<string, string>; remove?: string[]; paths: string[]; deleted: string[] },
  opts: { from?: number } = {},
): Promise<void> {
  for (const p of change.remove ?? []) await Deno.remove(`${s.src}/${p}`, { recursive: true });
  await writeTree(s.src, change.write ?? {});
  const log = await Deno.readTextFile(`${s.src}/.fanout-changes`).catch(() => "");
  const from = parseMarker(marker(opts.from ?? seq - 1));
  const entry = newEntry(from, parseMarker(marker(seq))!, change);
  await Deno.writeTextFile(`${s.src}/.fanout-changes`, appendEntry(log, entry));
  await Deno.writeTextFile(`${s.src}/.fanout-version`, marker(seq));
  await waitFor(`the server announces seq ${seq}`, async () => {
    const list = await sh("rsync", [s.url.replace(/[^/]+\/$/, "")]);
    return new RegExp(`fanout-version seq=${seq} `).test(list.stdout);
  });
}

Deno.test("client: a new version is fetched by the version log: the listed paths only, no tree walk", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { verify_every: "1h" } });
    assert.equal((await s.client()).code, 0);
    const verified = (await s.status()).verified_at;
    // A local edit outside the change: only a tree walk would overwrite it.
    await Deno.writeTextFile(`${s.dest}/b.txt`, "my local edit\n");
    // Version 2: a change, a deletion, a new directory, a directory that became a file.
    await landVersion(s, 2, {
      write: { "a.txt": "alpha v2\n", "newdir/x.txt": "x\n" },
      remove: ["dir0/sub0/file0.txt", "dir1/sub1"],
      paths: ["a.txt", "newdir/", "newdir/x.txt", "dir1/sub1"],
      deleted: ["dir0/sub0/file0.txt", "dir1/sub1/", "dir1/sub1/file1.txt", "dir1/sub1/file16.txt"],
    });
    await writeTree(s.src, { "dir1/sub1": "now a file\n" });
    const backups = `${lab.dir}/backups`;
    const r = await s.client(["--log-level", "debug", "--backup-dir", backups]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /msg="caught up by the version log".*versions=1 paths=4 deleted=3/);
    assert.doesNotMatch(r.stderr, /--dry-run|comparing the whole tree/);
    await assertSameTree(s.src, s.dest, [...OURS, "b.txt"]);
    assert.equal(await Deno.readTextFile(`${s.dest}/b.txt`), "my local edit\n");
    let st = await s.status();
    assert.deepEqual(
      [st.mode, (st.version as { seq: number }).seq, st.files_deleted, st.verified_at],
      ["sync", 2, 3, verified],
      "a catch-up is no verification",
    );
    assert.ok((st.files_changed as number) >= 3, `files_changed ${st.files_changed}`);
    // What the version overwrote and deleted is kept when asked.
    const kept = st.backup_dir as string;
    assert.ok(kept.startsWith(`${backups}/`), kept);
    assert.equal(await Deno.readTextFile(`${kept}/a.txt`), "alpha v1\n");
    assert.equal(await Deno.readTextFile(`${kept}/dir0/sub0/file0.txt`), "v1 file 0\n");

    // Two versions at once follow the chain; a third with a gap before it
    // (no entry from 4 to 5) walks the tree: the local edit goes.
    await landVersion(s, 3, { write: { "c.txt": "c\n" }, paths: ["c.txt"], deleted: [] });
    await landVersion(s, 4, { remove: ["c.txt"], paths: [], deleted: ["c.txt"] });
    const two = await s.client(["--log-level", "debug"]);
    assert.match(two.stderr, /caught up by the version log".*versions=2 paths=0 deleted=1/);
    await assertSameTree(s.src, s.dest, [...OURS, "b.txt"]);
    await landVersion(s, 6, { write: { "d.txt": "d\n" }, paths: ["d.txt"], deleted: [] }, {
      from: 5,
    });
    const gap = await s.client(["--log-level", "debug"]);
    assert.equal(gap.code, 0, gap.stderr);
    assert.match(gap.stderr, /the version log cannot say.*reason="no chain of entries"/);
    await assertSameTree(s.src, s.dest, OURS);
    st = await s.status();
    assert.equal(st.mode, "sync");
    assert.notEqual(st.verified_at, verified, "the tree walk verified");

    // A log naming a path the source lacks is not trusted either.
    await landVersion(s, 7, {
      write: { "e.txt": "e\n" },
      paths: ["e.txt", "ghost.txt"],
      deleted: [],
    });
    const ghost = await s.client(["--log-level", "debug"]);
    assert.equal(ghost.code, 0, ghost.stderr);
    assert.match(ghost.stderr, /the source did not match its version log/);
    await assertSameTree(s.src, s.dest, OURS);

    // Deletions past client.max_delete go to the comparison, which refuses.
    await landVersion(s, 8, {
      remove: ["dir2"],
      paths: [],
      deleted: ["dir2/", ...Object.keys(files(40)).filter((p) => p.startsWith("dir2/"))],
    });
    const many = await s.client(["--max-delete", "3", "--log-level", "debug"]);
    assert.equal(many.code, 4, many.stderr);
    assert.match(many.stderr, /deletions, more than client.max_delete/);
    assert.match(many.stderr, /refusing to sync .*client.max_delete \(3\); nothing changed/);
    assert.ok(await Deno.stat(`${s.dest}/dir2`));
  });
});

Deno.test("client: a version log read on one server and a transfer from another version end whole", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab, { client: { verify_every: "1h" } });
    assert.equal((await s.client()).code, 0);
    await landVersion(s, 2, { write: { "a.txt": "alpha v2\n" }, paths: ["a.txt"], deleted: [] });
    // Version 3 lands right before the listed transfer (behind a balancer:
    // another server), changing b.txt, which version 2's list does not name.
    const wrapper = await rsyncWrapper(
      lab,
      "rsync-version-lands",
      `case "$*" in *client-files-from*)
  echo "b, version 3" > "${s.src}/b.txt"
  printf '%s\\n' '${marker(3).trim()}' > "${s.src}/.fanout-version" ;;
esac
`,
    );
    const r = await s.client(["--set", `rsync.path=${wrapper}`, "--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /the source did not match its version log/);
    await assertSameTree(s.src, s.dest, OURS);
    assert.equal(await Deno.readTextFile(`${s.dest}/b.txt`), "b, version 3\n");
    assert.equal(((await s.status()).version as { seq: number }).seq, 3);
  });
});

Deno.test("client: the fleet cache is used only while the file, the flags and the build are the same", async () => {
  await withLab(async (lab) => {
    const s = await setup(lab);
    const cacheDir = `${lab.dir}/.cache/fanout`;
    const cached = async () => {
      const names = [];
      for await (const e of Deno.readDir(cacheDir)) names.push(e.name);
      assert.equal(names.length, 1, names.join(" "));
      assert.match(names[0], /^fleet-client-[0-9a-f]{8}\.json$/);
      return `${cacheDir}/${names[0]}`;
    };
    const first = await s.client();
    assert.equal(first.code, 0, first.stderr);
    const entry = await cached();
    assert.equal((await Deno.stat(entry)).mode! & 0o777, 0o600);
    assert.equal(JSON.parse(await Deno.readTextFile(entry)).fleet.client.dest, s.dest);

    // An edit to the fleet file is seen at once: here, a new dest.
    const dest2 = `${lab.dir}/apps/other`;
    const text = await Deno.readTextFile(lab.fleetFile);
    await Deno.writeTextFile(lab.fleetFile, text.replace(s.dest, dest2));
    const moved = await s.client();
    assert.equal(moved.code, 0, moved.stderr);
    await assertSameTree(s.src, dest2, OURS);
    assert.equal(JSON.parse(await Deno.readTextFile(await cached())).fleet.client.dest, dest2);

    // A flag is part of the key: --dest wins over the cached file's dest.
    const dest3 = `${lab.dir}/apps/third`;
    const flagged = await s.client(["--dest", dest3]);
    assert.equal(flagged.code, 0, flagged.stderr);
    await assertSameTree(s.src, dest3, OURS);

    // A fleet file broken after it was cached is reported, not papered over.
    await Deno.writeTextFile(lab.fleetFile, text.replace("tree: plugins", "tree: [plugins"));
    const broken = await s.client();
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /fanout\.yaml.*not valid YAML/);
    await Deno.writeTextFile(lab.fleetFile, text);

    // A damaged cache file is ignored and rewritten.
    for (const e of Deno.readDirSync(cacheDir)) {
      Deno.writeTextFileSync(`${cacheDir}/${e.name}`, "{");
    }
    const again = await s.client();
    assert.equal(again.code, 0, again.stderr);
    const ks = [];
    for (const e of Deno.readDirSync(cacheDir)) {
      ks.push(JSON.parse(Deno.readTextFileSync(`${cacheDir}/${e.name}`)).fleet.client.dest);
    }
    assert.ok(ks.includes(s.dest), ks.join(" "));

    // An entry from another build (or for other inputs) is not used.
    const file = await cached();
    const stale = JSON.parse(await Deno.readTextFile(file));
    const staleDest = `${lab.dir}/apps/stale`;
    stale.key = JSON.stringify({ ...JSON.parse(stale.key), version: "0.0.1+other" });
    stale.fleet.client.dest = staleDest;
    await Deno.writeTextFile(file, JSON.stringify(stale));
    const fresh = await s.client();
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(existsNow(staleDest), false);

    // No usable cache dir (XDG_CACHE_HOME relative, HOME unset): runs all the same.
    const bare = await lab.run(
      ["--role", "client", "-c", lab.fleetFile, "--name", NAME, "--no-splay", "--source", s.url],
      { env: { XDG_CACHE_HOME: "relative", HOME: "" } },
    );
    assert.equal(bare.code, 0, bare.stderr);
  });
});
