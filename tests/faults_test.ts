// Servers under faults and hostile input: every fault ends with exact
// convergence and no process left behind; nothing hostile gets in or out.
import assert from "node:assert/strict";
import {
  converged,
  http,
  type Lab,
  rsync,
  sh,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";

/** A tree big enough that a push takes a while: `n` files of `size` bytes. */
async function bigTree(dir: string, n: number, size: number): Promise<void> {
  const r = await sh("python3", [
    "-c",
    `
import os
root = ${JSON.stringify(dir)}
blob = os.urandom(${size})
for i in range(${n}):
    d = f"{root}/big/{i // 100}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i}", "wb") as fh: fh.write(blob[: ${size} - (i % 7)])
`,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

async function noDaemonLeft(lab: Lab): Promise<void> {
  const left = await sh("pgrep", ["-f", `${lab.dir}/state/`]);
  assert.equal(left.code, 1, `processes left behind:\n${left.stdout}`);
}

Deno.test("fault: a replica killed with SIGKILL during a large push converges after it returns", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ push: { retry_min: "200ms", retry_max: "1s" } });
    await writeTree(lab.hosts.rsync1.path, { "seed.txt": "seed\n" });
    let r2 = await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"], 30_000);
    await bigTree(lab.hosts.rsync1.path, 3000, 64 * 1024);
    // The host dies: fanout and its daemon, no goodbyes.
    await primary.waitFor(/msg=pushed .*replica=rsync2 kind=scoped|push failed/, 30_000).catch(
      () => {},
    );
    const st = JSON.parse(
      (await http(`http://${lab.hosts.rsync2.ip}:${lab.hosts.rsync2.health}/status`)).body,
    );
    r2.kill("SIGKILL");
    if (st.daemon.pid) Deno.kill(-st.daemon.pid, "SIGKILL");
    await r2.status();
    await sleep(500);
    r2 = await lab.server("replica", "rsync2");
    await converged(lab, ["rsync2", "rsync3"], 60_000);
    assert.equal(
      (await sh("sh", ["-c", `find ${lab.hosts.rsync2.path} -name '.~tmp~' | wc -l`])).stdout
        .trim(),
      "0",
    );
  });
});

Deno.test("fault: the primary restarted mid-push converges", async () => {
  await withLab(async (lab) => {
    await lab.fleet();
    await writeTree(lab.hosts.rsync1.path, { "seed.txt": "seed\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    let primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"], 30_000);
    await bigTree(lab.hosts.rsync1.path, 2000, 64 * 1024);
    await sleep(200);
    await primary.stop("SIGTERM");
    assert.equal(primary.exited?.code, 0, primary.stderr);
    primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"], 60_000);
  });
});

Deno.test("fault: a replica's disk read-only for a while, then writable again", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], push: { retry_min: "200ms", retry_max: "500ms" } });
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"], 30_000);
    const tree = lab.hosts.rsync2.path;
    const ro = await sh("sh", [
      "-c",
      `mount --bind ${tree} ${tree} && mount -o remount,ro,bind ${tree}`,
    ]);
    if (ro.code !== 0) {
      console.log(`skipped: cannot remount read-only here (${ro.stderr.trim()})`);
      return;
    }
    try {
      await writeTree(lab.hosts.rsync1.path, { "while-ro.txt": "ro\n", "d/e.txt": "e\n" });
      await primary.waitFor(/msg="push failed" .*replica=rsync2/, 15_000);
      const st = JSON.parse(
        (await http(`http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/status`)).body,
      );
      assert.equal(st.replicas[0].state, "failing");
      assert.match(st.replicas[0].last_error, /rsync exit \d+/);
    } finally {
      // Lazy: a daemon child may still have its cwd in the mount.
      await sh("umount", ["-l", tree]);
    }
    await converged(lab, ["rsync2"], 30_000);
  });
});

Deno.test("fault: a directory tree moved and deleted while pushing converges", async () => {
  await withLab(async (lab) => {
    // 1,400 files really go: more than the default max_delete guard allows.
    await lab.fleet({ push: { max_delete: 100_000, max_delete_percent: 100 } });
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "seed.txt": "seed\n" });
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2", "rsync3"], 30_000);
    await bigTree(src, 1500, 16 * 1024);
    await Deno.rename(`${src}/big`, `${src}/moved`);
    await sleep(50);
    await Deno.mkdir(`${src}/other`);
    await Deno.rename(`${src}/moved/3`, `${src}/other/3`);
    await Deno.remove(`${src}/moved`, { recursive: true });
    await converged(lab, ["rsync2", "rsync3"], 60_000);
  });
});

Deno.test("hostile: links out of the tree and device files stay inside on every host", async () => {
  await withLab(async (lab) => {
    await lab.fleet();
    const src = lab.hosts.rsync1.path;
    await writeTree(src, { "ok.txt": "ok\n" });
    await Deno.symlink("/etc", `${src}/abs-link`);
    await Deno.symlink("../../../../../../etc/passwd", `${src}/rel-escape`);
    const dev = await sh("mknod", [`${src}/null-dev`, "c", "1", "3"]);
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    await lab.server("primary", "rsync1");
    await waitFor("ok.txt on replicas", async () => {
      for (const r of ["rsync2", "rsync3"]) {
        if (!(await Deno.stat(`${lab.hosts[r].path}/ok.txt`).catch(() => null))) return false;
        if (!(await Deno.lstat(`${lab.hosts[r].path}/rel-escape`).catch(() => null))) return false;
      }
      return true;
    });
    for (const r of ["rsync2", "rsync3"]) {
      const p = lab.hosts[r].path;
      assert.equal(Deno.lstatSync(`${p}/abs-link`).isSymlink, true, "a link stays a link");
      assert.equal(Deno.readLinkSync(`${p}/abs-link`), "/etc");
      assert.equal(Deno.lstatSync(`${p}/rel-escape`).isSymlink, true);
      if (dev.code === 0) {
        assert.equal(
          await Deno.lstat(`${p}/null-dev`).catch(() => null),
          null,
          "device files are not copied",
        );
      }
    }
    // A reader of the read module gets links, never what they point at.
    const h = lab.hosts.rsync2;
    const out = `${lab.dir}/reader`;
    const pull = await rsync(["-a", `rsync://${h.ip}:${h.port}/plugins/`, `${out}/`]);
    assert.equal(pull.code, 0, pull.stderr);
    assert.equal(Deno.lstatSync(`${out}/abs-link`).isSymlink, true);
    assert.equal(await Deno.lstat(`${out}/passwd`).catch(() => null), null);
  });
});

Deno.test("hostile: writes to any module from a host not allowed, or without the password, are refused", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    // The replica holds the tree before it is attacked: "untouched" then means it.
    await waitFor("a.txt on rsync2", async () => {
      return (await Deno.readTextFile(`${lab.hosts.rsync2.path}/a.txt`).catch(() => "")) === "a\n";
    });
    const evil = `${lab.dir}/evil`;
    await writeTree(evil, { "a.txt": "evil\n" });
    const noPw = `${lab.dir}/empty.pw`;
    await Deno.writeTextFile(noPw, "wrong\n", { mode: 0o600 });
    for (const host of ["rsync1", "rsync2"]) {
      const h = lab.hosts[host];
      const allowed = host === "rsync1" ? lab.ip(250) : lab.hosts.rsync1.ip;
      const cases: [string, string[], RegExp][] = [
        [
          "foreign address",
          [`--address=${lab.ip(66)}`, `--password-file=${lab.password}`],
          /@ERROR/,
        ],
        ["no password", [`--address=${allowed}`, `--password-file=${noPw}`], /@ERROR: auth failed/],
      ];
      for (const [what, args, re] of cases) {
        const r = await rsync([
          "-a",
          ...args,
          `${evil}/`,
          `rsync://fanout@${h.ip}:${h.port}/plugins-push/`,
        ]);
        assert.equal(r.code, 5, `${host} ${what}: ${r.stderr}`);
        assert.match(r.stderr, re);
      }
      const ro = await rsync([
        "-a",
        `--address=${allowed}`,
        `${evil}/`,
        `rsync://${h.ip}:${h.port}/plugins/`,
      ]);
      assert.notEqual(ro.code, 0, `${host}: the read module refuses uploads`);
      assert.equal(await Deno.readTextFile(`${h.path}/a.txt`), "a\n", `${host} untouched`);
    }
  });
});

Deno.test("hostile: the health endpoint is read-only, survives junk, and never shows a secret", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "a\n" });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    const h = lab.hosts.rsync1;
    const base = `http://${h.ip}:${h.health}`;
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      for (const path of ["/healthz", "/status", "/metrics"]) {
        const r = await http(`${base}${path}`, {
          method,
          body: method === "DELETE" ? undefined : "x",
        });
        assert.equal(r.status, 405, `${method} ${path}`);
      }
    }
    const head = await fetch(`${base}/healthz`, { method: "HEAD" });
    await head.body?.cancel();
    assert.equal(head.status, 200);
    // Junk on the wire: garbage, a huge header, a half request, then a good one.
    for (
      const junk of [
        "\x00\x01\x02garbage\r\n\r\n",
        `GET /${"a".repeat(70_000)} HTTP/1.1\r\n\r\n`,
        "GET /status HTTP/1.1\r\nHost",
      ]
    ) {
      const c = await Deno.connect({ hostname: h.ip, port: h.health });
      await c.write(new TextEncoder().encode(junk)).catch(() => {});
      await sleep(50);
      c.close();
    }
    assert.equal((await http(`${base}/healthz`)).status, 200);
    assert.equal((await http(`${base}/nope`)).status, 404);
    const secret = "lab-secret-1234";
    for (const path of ["/status", "/metrics", "/"]) {
      assert.ok(!(await http(`${base}${path}`)).body.includes(secret), `${path} shows no secret`);
    }
    assert.ok(!primary.stderr.includes(secret), "no secret in the logs");
    const cmdlines = await sh("sh", ["-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"]);
    assert.ok(!cmdlines.stdout.includes(secret), "no secret in any process title");
  });
});

Deno.test("faults leave no process behind", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "a\n" });
    const r2 = await lab.server("replica", "rsync2");
    const p = await lab.server("primary", "rsync1");
    await converged(lab, ["rsync2"], 30_000);
    await p.stop();
    await r2.stop();
    await noDaemonLeft(lab);
  });
});
