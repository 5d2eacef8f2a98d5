// The primary's watcher and push engine, end to end: real daemons on
// loopback aliases, real files, every replica compared with diff -r.
import assert from "node:assert/strict";
import {
  canLowerInotify,
  converged,
  diffTrees,
  http,
  type Lab,
  primaryWithWatches,
  rsync,
  sh,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";

/**
 * A primary holding `a.txt` and one replica in sync with it, reconciling
 * only hourly (what arrives comes from events); returns the primary's tree.
 */
async function primaryAndOneReplica(lab: Lab): Promise<string> {
  await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h" } });
  const src = lab.hosts.rsync1.path;
  await writeTree(src, { "a.txt": "a\n" });
  await lab.server("replica", "rsync2");
  await lab.server("primary", "rsync1");
  await converged(lab, ["rsync2"]);
  return src;
}

async function status(lab: Lab, name = "rsync1") {
  const h = lab.hosts[name];
  return JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body);
}

Deno.test("primary: every kind of change reaches both replicas", async () => {
  await withLab(async (lab) => {
    // Deno reports no event for a symlink whose target is outside the tree
    // (denoland/deno#27560): that one arrives with the reconcile.
    await lab.fleet({ push: { reconcile: "2s" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "keep.txt": "start\n", "old/a.txt": "a\n", "old/b.txt": "b\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const primary = await lab.server("primary", "rsync1");
    assert.match(primary.stderr, /msg=watching .*backend=inotify/);
    await converged(lab, ["rsync2", "rsync3"]);

    // create, modify, delete, rename
    await writeTree(src, { "new.txt": "new\n" });
    await Deno.writeTextFile(`${src}/keep.txt`, "changed\n");
    await Deno.remove(`${src}/old/b.txt`);
    await Deno.rename(`${src}/old/a.txt`, `${src}/old/renamed.txt`);
    await converged(lab, ["rsync2", "rsync3"]);

    // a new directory with files inside, a deep tree, odd names
    await Deno.mkdir(`${src}/fresh/x/y/z`, { recursive: true });
    await writeTree(src, {
      "fresh/one.txt": "1\n",
      "fresh/x/y/z/deep.txt": "deep\n",
      "with space/file name.txt": "spaces\n",
      "ünïcødé/ñ.txt": "unicode\n",
      "glob[1]*?.txt": "wildcards\n",
    });
    // symlinks (relative and absolute: copied as links, never followed)
    await Deno.symlink("keep.txt", `${src}/link-rel`);
    await Deno.symlink("/etc/passwd", `${src}/link-abs`);
    // mode changes
    await Deno.chmod(`${src}/new.txt`, 0o600);
    await Deno.chmod(`${src}/fresh`, 0o750);
    await converged(lab, ["rsync2", "rsync3"]);
    assert.equal(Deno.lstatSync(`${lab.hosts.rsync2.path}/link-abs`).isSymlink, true);
    assert.equal(Deno.statSync(`${lab.hosts.rsync3.path}/new.txt`).mode! & 0o777, 0o600);

    // a directory moved, then deleted
    await Deno.rename(`${src}/fresh`, `${src}/moved`);
    await converged(lab, ["rsync2", "rsync3"]);
    await Deno.remove(`${src}/moved`, { recursive: true });
    await Deno.remove(`${src}/ünïcødé`, { recursive: true });
    await converged(lab, ["rsync2", "rsync3"]);

    // Both ok once the pushes in flight end (the 2 s reconcile may be running
    // a whole push at any moment: "pushing" in between is no failure).
    const states = (st: { replicas: { name: string; state: string }[] }) =>
      st.replicas.map((r) => [r.name, r.state]);
    await waitFor(
      "both replicas ok",
      async () => JSON.stringify(states(await status(lab))) === '[["rsync2","ok"],["rsync3","ok"]]',
    );
    const st = await status(lab);
    assert.equal(st.watch.mode, "events");
    const m = (await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/metrics`)).body;
    assert.match(m, /fanout_pushes_total\{replica="rsync2",kind="scoped",result="ok"\} \d+/);
    assert.match(primary.stderr, /msg=pushed .*replica=rsync2 kind=scoped/);
  });
});

Deno.test("primary: the version marker reaches replicas last and is reported", async () => {
  await withLab(async (lab) => {
    await lab.fleet();
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"]);
    const marker = {
      seq: 7,
      commit: "0123456789abcdef",
      ref: "main",
      published_at: new Date().toISOString(),
    };
    await writeTree(src, { "b.txt": "b\n" });
    await Deno.writeTextFile(`${src}/.fanout-version`, JSON.stringify(marker) + "\n");
    await converged(lab, ["rsync2", "rsync3"]);
    const st = await waitFor("acked version", async () => {
      const s = await status(lab);
      return s.replicas.every((r: { version: { seq: number } | null }) => r.version?.seq === 7)
        ? s
        : null;
    });
    assert.equal(st.tree.version.seq, 7);
    const r2 = await waitFor("replica reports seq 7", async () => {
      const s = await status(lab, "rsync2");
      return s.tree.version?.seq === 7 ? s : null;
    }, 5000);
    assert.equal(r2.tree.version.commit, marker.commit);
    // Written here unstamped; every replica's copy carries published_at as
    // its mtime (lib/version/marker_stamp.ts).
    for (const r of ["rsync2", "rsync3"] as const) {
      const st = await Deno.stat(`${lab.hosts[r].path}/.fanout-version`);
      assert.equal(st.mtime?.getTime(), Date.parse(marker.published_at), r);
    }

    // A marker of 600 MiB (a careless or hostile writer of the primary's
    // tree; sparse here) is no marker: read no further than 4 KiB, never
    // sent as one by the whole push of a restart, and the tree's changes
    // still go.
    const before = await Deno.readTextFile(`${lab.hosts.rsync2.path}/.fanout-version`);
    await primary.stop("SIGTERM");
    await Deno.truncate(`${src}/.fanout-version`, 600 << 20);
    await writeTree(src, { "c.txt": "c\n" });
    await lab.server("primary", "rsync1");
    await waitFor("c.txt on both replicas", async () => {
      const got = await Promise.all(
        ["rsync2", "rsync3"].map((r) =>
          Deno.readTextFile(`${lab.hosts[r].path}/c.txt`).catch(() => "")
        ),
      );
      return got.every((t) => t === "c\n");
    });
    for (const r of ["rsync2", "rsync3"] as const) {
      assert.equal(await Deno.readTextFile(`${lab.hosts[r].path}/.fanout-version`), before, r);
    }
  });
});

Deno.test("primary: 5,000 files created at once converge exactly", async () => {
  await withLab(async (lab) => {
    await lab.fleet();
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "seed.txt": "seed\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"]);
    const r = await sh("sh", [
      "-c",
      `cd ${src} && for d in $(seq 1 50); do mkdir d$d; for f in $(seq 1 100); do echo $d-$f > d$d/f$f; done; done`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await converged(lab, ["rsync2", "rsync3"], 30_000);
  });
});

Deno.test("primary: a replica down while changes keep coming converges when it returns", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ push: { retry_min: "100ms", retry_max: "500ms" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n" });
    let r2 = await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"]);
    await r2.stop();
    for (let i = 0; i < 20; i++) {
      await writeTree(src, { [`while-down/${i}.txt`]: `${i}\n` });
      if (i === 5) await Deno.remove(`${src}/a.txt`);
      await sleep(20);
    }
    await converged(lab, ["rsync3"]);
    await primary.waitFor(/msg="push failed" .*replica=rsync2/);
    // Each retry is a push in flight, and still "failing" (not "pushing").
    for (let i = 0; i < 5; i++) {
      const st = await status(lab);
      assert.equal(st.replicas.find((r: { name: string }) => r.name === "rsync2").state, "failing");
      await sleep(100);
    }
    const h = await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/healthz`);
    assert.equal(h.status, 200, "one failing replica does not make the primary unhealthy");
    r2 = await lab.server("replica", "rsync2");
    await converged(lab, ["rsync2"]);
    await primary.waitFor(/msg="replica back" .*replica=rsync2/);
  });
});

Deno.test("primary: a relay chain primary -> rsync2 -> rsync3 converges", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }] });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n", "d/b.txt": "b\n" });
    await lab.server("replica", "rsync3");
    const relay = await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"]);
    await writeTree(src, { "d/c.txt": "c\n", "e/f.txt": "f\n" });
    await Deno.remove(`${src}/a.txt`);
    await converged(lab, ["rsync2", "rsync3"]);
    assert.match(relay.stderr, /msg=pushed .*replica=rsync3/);

    // rsync3 takes writes from its upstream rsync2 only, not from the primary.
    const h3 = lab.hosts.rsync3;
    const refused = await rsync([
      "-a",
      `--address=${lab.hosts.rsync1.ip}`,
      `--password-file=${lab.password}`,
      `${src}/`,
      `rsync://fanout@${h3.ip}:${h3.port}/plugins-push/`,
    ]);
    assert.equal(refused.code, 5, refused.stderr);
  });
});

Deno.test("primary: an empty source is never pushed; replicas keep their files", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n", "d/b.txt": "b\n" });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    // An unmounted disk: the mount point is there, and empty.
    await sh("sh", ["-c", `rm -rf ${src}/* ${src}/.[!.]*`]);
    const h = await waitFor("503", async () => {
      const r = await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/healthz`);
      return r.status === 503 ? r : null;
    });
    assert.match(h.body, /source tree .* is empty \(unmounted disk\?\); not pushing/);
    await primary.waitFor(/msg="not pushing"/);
    await sleep(300);
    assert.equal(
      await Deno.readTextFile(`${lab.hosts.rsync2.path}/d/b.txt`),
      "b\n",
      "replica untouched",
    );
    // The disk comes back: pushing resumes.
    await writeTree(src, { "a.txt": "a\n", "d/b.txt": "b\n", "c.txt": "c\n" });
    await converged(lab, ["rsync2"]);
  });
});

Deno.test("primary: a push that would delete more than max_delete is refused, then allowed once", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { max_delete: 10 } });
    const src = lab.hosts.rsync1.path;
    const files: Record<string, string> = { "keep.txt": "k\n" };
    for (let i = 0; i < 30; i++) files[`many/${i}.txt`] = `${i}\n`;
    await writeTree(src, files);
    await lab.server("replica", "rsync2");
    let primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    // A rename deletes as many entries as it creates: not a loss, not refused.
    await Deno.rename(`${src}/many`, `${src}/renamed`);
    await converged(lab, ["rsync2"]);
    await Deno.rename(`${src}/renamed`, `${src}/many`);
    await converged(lab, ["rsync2"]);
    await Deno.remove(`${src}/many`, { recursive: true });
    // The watcher's deletions are held, counted, and blocked past the limit.
    await primary.waitFor(
      /msg="mass deletion suspected: deletions held, not pushed" .*max_delete 10/,
    );
    assert.equal(
      (await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/healthz`)).status,
      503,
    );
    // Restarted, the whole push's dry run counts them and refuses.
    await primary.stop();
    primary = await lab.server("primary", "rsync1");
    await primary.waitFor(/msg="push refused" .*replica=rsync2 deletes=31 creates=0 max_delete=10/);
    const h = await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/healthz`);
    assert.equal(h.status, 503);
    assert.match(
      h.body,
      /push to rsync2 refused: would delete 31 entries and create 0: 31 net, more than push\.max_delete 10; nothing was deleted/,
    );
    const left = [...Deno.readDirSync(`${lab.hosts.rsync2.path}/many`)].length;
    assert.equal(left, 30, "nothing deleted on the replica");
    await primary.stop();
    primary = await lab.server("primary", "rsync1", ["--allow-mass-delete"]);
    await converged(lab, ["rsync2"]);
  });
});

Deno.test("primary: out of inotify watches: one clear message, periodic full pushes", async () => {
  // A user namespace has its own inotify limits: set them tiny there only.
  if (!(await canLowerInotify())) return;
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { poll_interval: "300ms" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a/1.txt": "1\n", "b/2.txt": "2\n", "c/3.txt": "3\n" });
    await lab.server("replica", "rsync2");
    const primary = primaryWithWatches(lab, 2);
    try {
      await waitFor(
        "fallback message",
        () =>
          /out of inotify watches: raise the limit with sysctl -w fs\.inotify\.max_user_watches/
            .test(primary.stderr()),
        15_000,
      );
      await converged(lab, ["rsync2"]);
      await writeTree(src, { "later.txt": "later\n" });
      await converged(lab, ["rsync2"]);
    } finally {
      await primary.stop();
    }
  });
});

Deno.test("primary: symbolic links are never followed by the watcher", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a/b.txt": "b\n" });
    await Deno.symlink("/", `${src}/root-link`);
    await Deno.symlink("/usr", `${src}/a/usr-link`);
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    const st = await status(lab);
    assert.equal(st.watch.dirs, 2, "the tree has two directories; links add none");
    assert.equal(Deno.lstatSync(`${lab.hosts.rsync2.path}/root-link`).isSymlink, true);
  });
});

Deno.test("primary: a storm of 20,000 files in one second converges exactly", async () => {
  await withLab(async (lab) => {
    await lab.fleet();
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "seed.txt": "seed\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"]);
    const r = await sh("python3", [
      "-c",
      `
import os
root = ${JSON.stringify(src)}
for d in range(200):
    os.mkdir(f"{root}/s{d}")
    for f in range(100):
        with open(f"{root}/s{d}/f{f}", "w") as fh: fh.write(f"{d}-{f}\\n")
`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await converged(lab, ["rsync2", "rsync3"], 60_000);
    assert.match(primary.stderr, /event burst/);
  });
});

Deno.test("primary: a file named like an rsync temp file (.env.sample) that goes away is deleted downstream", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h" } });
    const src = lab.hosts.rsync1.path;
    // rsync's temp files are named .<name>.XXXXXX, and so are some real files.
    await writeTree(src, {
      "seed.txt": "seed\n",
      ".env.sample": "KEY=\n",
      "conf/.htaccess.backup": "Deny from all\n",
    });
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    await Deno.remove(`${src}/.env.sample`);
    await Deno.rename(`${src}/conf/.htaccess.backup`, `${src}/conf/.htaccess`);
    await converged(lab, ["rsync2"]);
  });
});

Deno.test("primary: a reader of a replica never sees a file being received", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"]);
    const big = await sh("sh", [
      "-c",
      `for i in $(seq 1 40); do head -c 2000000 /dev/urandom > ${src}/big$i.bin; done`,
    ]);
    assert.equal(big.code, 0, big.stderr);
    const h = lab.hosts.rsync2;
    const seen = new Set<string>();
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      const l = await rsync(["-r", "--list-only", `rsync://${h.ip}:${h.port}/plugins/`]);
      for (const line of l.stdout.split("\n")) {
        const name = line.split(/\s+/).slice(4).join(" ");
        if (/\.fanout-tmp|\.~tmp~|(^|\/)\.[^/]+\.[A-Za-z0-9]{6}$/.test(name)) seen.add(name);
      }
      if ((await diffTrees(src, h.path)) === "") break;
    }
    assert.deepEqual([...seen], [], "files in flight were listed");
    await converged(lab, ["rsync2"]);
  });
});

Deno.test("primary: watches added for many new directories are merged, and nothing is missed", async () => {
  await withLab(async (lab) => {
    const src = await primaryAndOneReplica(lab);
    // One directory at a time: each gets a watch of its own, until a fresh
    // worker takes them all over (past 16 added watches).
    for (let i = 0; i < 40; i++) {
      await Deno.mkdir(`${src}/n${i}`);
      await sleep(30);
    }
    await converged(lab, ["rsync2"]);
    // Files in the first and the last new directories are still seen.
    await writeTree(src, {
      "n0/late.txt": "first\n",
      "n39/late.txt": "last\n",
      "n20/x/y.txt": "deep\n",
    });
    await converged(lab, ["rsync2"]);
    assert.equal((await status(lab)).watch.dirs, 42);
  });
});

Deno.test("primary: without FFI the watches come from Deno.watchFs, and changes still arrive", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1", [], { denoFlags: ["--deny-ffi"] });
    assert.match(primary.stderr, /msg=watching .*backend=watchFs/);
    await converged(lab, ["rsync2"]);
    await writeTree(src, { "b.txt": "b\n", "new/dir/c.txt": "c\n" });
    await Deno.writeTextFile(`${src}/a.txt`, "changed\n");
    await Deno.rename(`${src}/new`, `${src}/moved`);
    await converged(lab, ["rsync2"]);
    assert.equal(await Deno.readTextFile(`${lab.hosts.rsync2.path}/moved/dir/c.txt`), "c\n");
  });
});

Deno.test("primary: a file that goes away just before its push is not a failure", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h" } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "seed.txt": "seed\n" });
    // The real rsync behind a wrapper that removes `vanish*` files named in
    // a path list right before the run: the race of a file deleted between
    // the engine's check and rsync's walk, made certain.
    const wrapper = `${lab.dir}/rsync-racing`;
    await Deno.writeTextFile(
      wrapper,
      `#!/bin/sh
for a in "$@"; do
  case "$a" in --files-from=*)
    for p in $(tr '\\0' '\\n' < "\${a#--files-from=}"); do
      case "$p" in vanish*) rm -f "${src}/$p" ;; esac
    done ;;
  esac
done
exec rsync "$@"
`,
      { mode: 0o755 },
    );
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1", ["--set", `rsync.path=${wrapper}`]);
    await converged(lab, ["rsync2"]);
    await Deno.writeTextFile(`${src}/vanish.txt`, "gone soon\n");
    await Deno.writeTextFile(`${src}/stays.txt`, "here\n");
    await waitFor("stays.txt on rsync2", async () => {
      try {
        return (await Deno.readTextFile(`${lab.hosts.rsync2.path}/stays.txt`)) === "here\n";
      } catch {
        return false;
      }
    });
    await converged(lab, ["rsync2"]);
    const st = await status(lab);
    assert.equal(st.replicas[0].failures, 0, JSON.stringify(st.replicas[0]));
    assert.equal(st.replicas[0].last_error, null);
    assert.doesNotMatch(primary.stderr, /push failed/);
  });
});

Deno.test("primary: a new version marker never reaches a replica ahead of a change it has not pushed", async () => {
  await withLab(async (lab) => {
    const src = await primaryAndOneReplica(lab);
    // A change whose event never reaches the watcher (Deno drops the events
    // of a link pointing out of the tree, denoland/deno#27560; the kernel
    // drops events in a storm): the marker written after it must not go out
    // without it, or the replica claims a version it does not hold.
    await Deno.symlink("/etc/hostname", `${src}/unseen-link`);
    const marker = {
      seq: 2,
      commit: "feedc0de",
      ref: "main",
      published_at: new Date().toISOString(),
    };
    await Deno.writeTextFile(`${src}/.fanout-version`, JSON.stringify(marker) + "\n");
    const r2 = lab.hosts.rsync2.path;
    await waitFor("seq 2 on rsync2", async () => {
      try {
        return JSON.parse(await Deno.readTextFile(`${r2}/.fanout-version`)).seq === 2;
      } catch {
        return false;
      }
    });
    assert.equal(await Deno.readLink(`${r2}/unseen-link`), "/etc/hostname");
  });
});
