// The replica role end to end: a real rsync daemon on a loopback alias,
// rendered by fanout, with hosts allow and auth exercised for real.
import assert from "node:assert/strict";
import { http, type Lab, rsync, sh, waitFor, withLab, writeTree } from "./_helpers.ts";

async function startReplica(lab: Lab) {
  await lab.fleet({ replicas: ["rsync2"] });
  const r2 = lab.hosts.rsync2;
  await writeTree(r2.path, { "a.txt": "alpha\n", "dir/b.txt": "beta\n" });
  const proc = await lab.server("replica", "rsync2");
  return { r2, proc, url: (m: string) => `rsync://${r2.ip}:${r2.port}/${m}/` };
}

Deno.test("replica: serves /healthz and the read module to any address", async () => {
  await withLab(async (lab) => {
    const { r2, url } = await startReplica(lab);
    const h = await http(`http://${r2.ip}:${r2.health}/healthz`);
    assert.deepEqual(h, { status: 200, body: "ok\n" });
    for (const from of [lab.ip(9), lab.ip(77), "127.0.0.1"]) {
      const out = `${lab.dir}/pull-${from}`;
      const r = await rsync(["-a", `--address=${from}`, url("plugins"), out + "/"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(`${out}/dir/b.txt`), "beta\n");
    }
    const status = JSON.parse((await http(`http://${r2.ip}:${r2.health}/status`)).body);
    assert.equal(status.role, "replica");
    assert.equal(status.daemon.state, "up");
    assert.equal(status.upstream, "rsync1");
    assert.ok(!JSON.stringify(status).includes("lab-secret"), "no secret in /status");
    const metrics = (await http(`http://${r2.ip}:${r2.health}/metrics`)).body;
    assert.match(metrics, /^fanout_daemon_up 1$/m);
  });
});

Deno.test("replica: the write module takes its upstream with the password, nobody else", async () => {
  await withLab(async (lab) => {
    const { url } = await startReplica(lab);
    const src = `${lab.dir}/src`;
    await writeTree(src, { "new.txt": "pushed\n" });
    const push = (from: string, pw: string) =>
      rsync([
        "-a",
        `--address=${from}`,
        `--password-file=${pw}`,
        `${src}/`,
        url("fanout@127.0.0.1".length ? "plugins-push" : "")
          .replace("rsync://", "rsync://fanout@"),
      ]);

    const ok = await push(lab.hosts.rsync1.ip, lab.password);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await Deno.readTextFile(`${lab.hosts.rsync2.path}/new.txt`), "pushed\n");

    const other = await push(lab.ip(9), lab.password);
    assert.equal(other.code, 5, "another address is refused");
    assert.match(other.stderr, /@ERROR: access denied to plugins-push|Unknown module/);

    const wrong = `${lab.dir}/wrong.pw`;
    await Deno.writeTextFile(wrong, "not-the-password\n", { mode: 0o600 });
    const bad = await push(lab.hosts.rsync1.ip, wrong);
    assert.equal(bad.code, 5, "a wrong password is refused");
    assert.match(bad.stderr, /@ERROR: auth failed on module plugins-push/);

    const ro = await rsync(["-a", `--address=${lab.hosts.rsync1.ip}`, `${src}/`, url("plugins")]);
    assert.notEqual(ro.code, 0, "the read module refuses uploads");
    assert.match(ro.stderr, /read only|ERROR/i);
  });
});

Deno.test("replica: a burst of 600 connections at once is accepted (the daemon listens with a deep backlog)", async () => {
  await withLab(async (lab) => {
    const { r2 } = await startReplica(lab);
    // A balancer opens a connection per client: at :00, hundreds in the same
    // instant. A full accept queue drops SYNs (the retry comes 1 s later), and
    // a balancer's connect timeout then calls a healthy server down.
    // The daemon listens with a queue that holds them all (ss shows a
    // listening socket's backlog as Send-Q): what keeps a SYN from being
    // dropped, whatever the machine's load makes of each connect's time.
    const ss = await sh("ss", ["-Hltn", `src ${r2.ip}:${r2.port}`]);
    const backlog = Number(ss.stdout.trim().split(/\s+/)[2]);
    assert.ok(backlog >= 600, `listen backlog: ${ss.stdout}`);
    const conns: Deno.TcpConn[] = [];
    await Promise.all(Array.from({ length: 600 }, async () => {
      try {
        conns.push(await Deno.connect({ hostname: r2.ip, port: r2.port }));
      } catch {
        /* counted below */
      }
    }));
    for (const c of conns) c.close();
    assert.equal(conns.length, 600);
  });
});

Deno.test("replica: a killed daemon is restarted; /healthz is 503 in between", async () => {
  await withLab(async (lab) => {
    const { r2, proc } = await startReplica(lab);
    const status = JSON.parse((await http(`http://${r2.ip}:${r2.health}/status`)).body);
    const pid = status.daemon.pid as number;
    Deno.kill(pid, "SIGKILL");
    const down = await waitFor(
      "503",
      async () => {
        const h = await http(`http://${r2.ip}:${r2.health}/healthz`);
        return h.status === 503 ? h : null;
      },
      3000,
      5,
    );
    assert.match(down.body, /rsync daemon (down|starting)/);
    await waitFor(
      "200 again",
      async () => (await http(`http://${r2.ip}:${r2.health}/healthz`)).status === 200,
    );
    const after = JSON.parse((await http(`http://${r2.ip}:${r2.health}/status`)).body);
    assert.notEqual(after.daemon.pid, pid);
    assert.equal(after.daemon.restarts, 1);
    await proc.waitFor(/rsync daemon died; restarting/);
  });
});

Deno.test("replica: SIGTERM leaves no rsync process behind", async () => {
  await withLab(async (lab) => {
    const { proc } = await startReplica(lab);
    const conf = `${lab.dir}/state/rsync2/rsyncd.conf`;
    assert.equal((await sh("pgrep", ["-f", conf])).code, 0, "daemon running");
    const st = await proc.stop("SIGTERM");
    assert.equal(st.code, 0, proc.stderr);
    assert.match(proc.stderr, /msg=stopped/);
    const left = await sh("pgrep", ["-f", conf]);
    assert.equal(left.code, 1, `left behind: ${left.stdout}`);
  });
});

Deno.test("replica: a stale daemon from a SIGKILLed run is replaced", async () => {
  await withLab(async (lab) => {
    const { proc } = await startReplica(lab);
    proc.kill("SIGKILL"); // only fanout's group: its daemon lives on
    await proc.status();
    const conf = `${lab.dir}/state/rsync2/rsyncd.conf`;
    assert.equal((await sh("pgrep", ["-f", conf])).code, 0, "the orphan daemon still runs");
    const again = await lab.server("replica", "rsync2");
    await again.waitFor(/stopping a stale rsync daemon/);
    await again.stop();
    assert.equal((await sh("pgrep", ["-f", conf])).code, 1);
  });
});

Deno.test("replica: world-readable secrets, a missing tree, a busy port: exit 2, clear line", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await Deno.chmod(lab.secrets, 0o644);
    const r = await lab.run(["--role", "replica", "-c", lab.fleetFile, "--name", "rsync2"]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /auth\.secrets_file: .*rsyncd\.secrets has mode 644, readable by group and others; expected 600 or 400/,
    );
    await Deno.chmod(lab.secrets, 0o600);

    await Deno.remove(lab.hosts.rsync2.path, { recursive: true });
    const t = await lab.run(["--role", "replica", "-c", lab.fleetFile, "--name", "rsync2"]);
    assert.equal(t.code, 2);
    assert.match(t.stderr, /the tree .*rsync2 does not exist/);
    await Deno.mkdir(lab.hosts.rsync2.path);

    const busy = Deno.listen({ hostname: lab.hosts.rsync2.ip, port: lab.hosts.rsync2.port });
    try {
      const b = await lab.run(["--role", "replica", "-c", lab.fleetFile, "--name", "rsync2"]);
      assert.equal(b.code, 2);
      assert.match(b.stderr, /rsync daemon did not start on [0-9.]+:\d+: .*(in use|bind)/i);
    } finally {
      busy.close();
    }
    const conf = `${lab.dir}/state/rsync2/rsyncd.conf`;
    assert.equal((await sh("pgrep", ["-f", conf])).code, 1);
  });
});

Deno.test("replica: missing rsync is one sentence that says how to install it", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const r = await lab.run([
      "--role",
      "replica",
      "-c",
      lab.fleetFile,
      "--name",
      "rsync2",
      "--set",
      "rsync.path=/nonexistent/rsync",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^fanout: rsync is not installed .*apt-get install rsync/);
  });
});

Deno.test("render rsyncd: the rendered file is accepted by a real daemon", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const r = await lab.run([
      "render",
      "rsyncd",
      "--role",
      "replica",
      "--name",
      "rsync2",
      "-c",
      lab.fleetFile,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /socket options = TCP_NODELAY/);
    assert.match(r.stdout, /reverse lookup = no/);
    assert.match(r.stdout, /^listen backlog = 1024$/m);
    assert.match(
      r.stdout,
      new RegExp(`hosts allow = ${lab.hosts.rsync1.ip.replaceAll(".", "\\.")}\\n`),
    );
    assert.match(r.stdout, /^# Rendered by fanout \d+\.\d+\.\d+\S* from .*fanout\.yaml/);
    await Deno.mkdir(`${lab.dir}/state/rsync2`, { recursive: true });
    const conf = `${lab.dir}/rendered.conf`;
    await Deno.writeTextFile(conf, r.stdout);
    const d = new Deno.Command("rsync", {
      args: ["--daemon", "--no-detach", `--config=${conf}`],
      detached: true,
      stderr: "null",
    }).spawn();
    try {
      const h = lab.hosts.rsync2;
      const list = await waitFor("module list", async () => {
        const l = await rsync([`rsync://${h.ip}:${h.port}/`]);
        return l.code === 0 ? l : null;
      });
      assert.match(list.stdout, /^plugins\s/m);
      assert.doesNotMatch(list.stdout, /plugins-push/, "the write module is not listed");
    } finally {
      Deno.kill(-d.pid, "SIGTERM");
      await d.status;
    }
  });
});

Deno.test("replica: the read module's comment announces the tree's version", async () => {
  await withLab(async (lab) => {
    const { r2 } = await startReplica(lab);
    const marker = {
      seq: 12,
      commit: "abcdef0123456789",
      ref: "main",
      published_at: "2026-11-25T21:00:00.000Z",
    };
    await Deno.writeTextFile(`${r2.path}/.fanout-version`, JSON.stringify(marker) + "\n");
    const list = await waitFor("version in the listing", async () => {
      const l = await rsync([`rsync://${r2.ip}:${r2.port}/`]);
      return /fanout-version seq=12 /.test(l.stdout) ? l.stdout : null;
    }, 5000);
    assert.match(
      list,
      /^plugins\s+plugins \(read only\) fanout-version seq=12 commit=abcdef0123456789 ref=main at=2026-11-25T21:00:00\.000Z$/m,
    );
  });
});
