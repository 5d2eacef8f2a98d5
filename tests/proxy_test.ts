// The proxy end to end: real rsync daemons (started by the server roles), the
// real rsync client, fanout --role proxy, and real nginx and HAProxy with the
// configs fanout renders.
import assert from "node:assert/strict";
import {
  assertSameTree,
  http,
  type Lab,
  type Proc,
  rsync,
  sh,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";

const TREE = {
  "a.txt": "alpha\n",
  "dir/b.txt": "beta\n",
  "dir/deeper/c.bin": "c".repeat(50_000),
};

/** Writes TREE into every server's path (before the roles start). */
async function plantTrees(lab: Lab, extra: Record<string, string> = {}) {
  for (const h of Object.values(lab.hosts)) {
    if (h.path) await writeTree(h.path, { ...TREE, ...extra });
  }
}

/** Rewrites the lab's fleet file. */
async function editFleet(lab: Lab, edit: (text: string) => string) {
  await Deno.writeTextFile(lab.fleetFile, edit(await Deno.readTextFile(lab.fleetFile)));
}

/** Adds `key: value` lines at the top of the proxy section. */
function proxyKeys(text: string, keys: Record<string, string | number | boolean>): string {
  const lines = Object.entries(keys).map(([k, v]) => `  ${k}: ${v}`).join("\n");
  return text.replace(/^proxy:\n/m, `proxy:\n${lines}\n`);
}

async function startProxy(
  lab: Lab,
  extra: string[] = [],
  denoFlags: string[] = [],
): Promise<Proc> {
  const p = lab.spawn(["--role", "proxy", "-c", lab.fleetFile, ...extra], { denoFlags });
  await p.waitFor(/msg=ready/);
  return p;
}

/** A client that sends `#list`, shuts its write side, and reads the answer to the end. */
async function listHalfClosed(lab: Lab): Promise<string> {
  const c = await Deno.connect({ hostname: lab.hosts.proxy.ip, port: lab.hosts.proxy.port });
  await c.write(new TextEncoder().encode("@RSYNCD: 30.0\n#list\n"));
  await c.closeWrite();
  let answer = "";
  const buf = new Uint8Array(4096);
  for (let n = await c.read(buf); n !== null; n = await c.read(buf)) {
    answer += new TextDecoder().decode(buf.subarray(0, n));
  }
  c.close();
  return answer;
}

const proxyUrl = (lab: Lab) => `rsync://${lab.hosts.proxy.ip}:${lab.hosts.proxy.port}/plugins/`;

function pull(lab: Lab, dest: string, extra: string[] = []) {
  return rsync(["-a", ...extra, proxyUrl(lab), `${lab.dir}/${dest}/`]);
}

interface BackendStatus {
  name: string;
  state: string;
  in_rotation: boolean;
  connections: number;
  lagging: boolean;
  version: { seq: number } | null;
  failures: { checks: number; connects: number };
  bytes_to_client: number;
}
interface ProxyStatus {
  healthy: boolean;
  problem: string | null;
  rotation: string[];
  degraded: string | null;
  newest_seq: number | null;
  connections: { active: number; refused_max_connections: number; refused_no_backend: number };
  backends: BackendStatus[];
}

async function status(lab: Lab): Promise<ProxyStatus> {
  const px = lab.hosts.proxy;
  return JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
}

function healthz(lab: Lab) {
  return http(`http://${lab.hosts.proxy.ip}:${lab.hosts.proxy.health}/healthz`);
}

function metrics(lab: Lab) {
  return http(`http://${lab.hosts.proxy.ip}:${lab.hosts.proxy.health}/metrics`).then((r) => r.body);
}

/**
 * Pulls once (from the address `from`, else the default one) and says which
 * backend served it (from the per-backend counts). The proxy holds one
 * address to one backend for `proxy.affinity`: pulls meant to spread come
 * from addresses of their own.
 */
async function pullAndWhich(lab: Lab, dest: string, from?: string): Promise<string> {
  const before = await status(lab);
  const r = await pull(lab, dest, from ? [`--address=${from}`] : []);
  assert.equal(r.code, 0, r.stderr);
  const after = await status(lab);
  const grew = after.backends.filter((b) =>
    b.connections > (before.backends.find((x) => x.name === b.name)?.connections ?? 0)
  );
  assert.equal(grew.length, 1, JSON.stringify(after.backends));
  return grew[0].name;
}

function marker(seq: number): string {
  return JSON.stringify({
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: "2026-01-01T00:00:00Z",
  }) + "\n";
}

Deno.test("proxy: pulls from different clients land identical and alternate; a wedged backend is taken out, a killed one costs no pull", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    await lab.server("primary", "rsync1");
    const r2 = await lab.server("replica", "rsync2");
    const proxy = await startProxy(lab);
    // Every other test here runs the default engine too: the native copy engine on this machine.
    assert.match(proxy.stderr, /msg=ready .*engine=copy/);

    const served: string[] = [];
    for (let i = 0; i < 4; i++) {
      served.push(await pullAndWhich(lab, `out${i}`, lab.ip(20 + i)));
      await assertSameTree(`${lab.dir}/out${i}`, lab.hosts.rsync1.path);
    }
    assert.notEqual(served[0], served[1]);
    assert.deepEqual(served, [served[0], served[1], served[0], served[1]]);

    // Half-close passes through: a client that shuts its write side still gets its answer.
    assert.match(await listHalfClosed(lab), /^plugins\s.*\n@RSYNCD: EXIT\n$/m);

    // Wedged: the daemon still accepts (the kernel does) but never greets.
    const r2status = JSON.parse(
      (await http(`http://${lab.hosts.rsync2.ip}:${lab.hosts.rsync2.health}/status`)).body,
    );
    const daemonPid = r2status.daemon.pid as number;
    Deno.kill(daemonPid, "SIGSTOP");
    try {
      await waitFor(
        "rsync2 down",
        async () => (await status(lab)).backends.find((b) => b.name === "rsync2")?.state === "down",
      );
      const st = await status(lab);
      assert.deepEqual(st.rotation, ["rsync1"]);
      for (let i = 0; i < 3; i++) assert.equal(await pullAndWhich(lab, `w${i}`), "rsync1");
    } finally {
      Deno.kill(daemonPid, "SIGCONT");
    }
    await waitFor("rsync2 back", async () => (await status(lab)).rotation.length === 2);

    // Killed: the host's daemon and fanout die at once; no client may notice.
    Deno.kill(-daemonPid, "SIGKILL");
    r2.kill("SIGKILL");
    await r2.status();
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => pull(lab, `k${i}`)),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    await sleep(500); // more than one check interval (200ms)
    for (let i = 0; i < 4; i++) assert.equal(await pullAndWhich(lab, `after${i}`), "rsync1");
    const st = await status(lab);
    const b2 = st.backends.find((b) => b.name === "rsync2")!;
    assert.equal(b2.state, "down");
    assert.ok(b2.failures.checks + b2.failures.connects > 0);
    const m = await metrics(lab);
    assert.match(m, /^fanout_proxy_backend_up\{backend="rsync2"\} 0$/m);
    assert.match(
      m,
      /^fanout_proxy_backend_bytes_total\{backend="rsync1",direction="to_client"\} [1-9]\d*$/m,
    );
  });
});

Deno.test("proxy: the splice and deno engines carry the same pulls; without FFI, auto falls back to deno and a native engine refuses to start", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    const big = new Uint8Array(3_000_000);
    for (let o = 0; o < big.length; o += 65536) crypto.getRandomValues(big.subarray(o, o + 65536));
    await plantTrees(lab);
    for (const h of [lab.hosts.rsync1, lab.hosts.rsync2]) {
      await Deno.writeFile(`${h.path}/big.bin`, big);
    }
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");

    const cases: { extra: string[]; deno: string[]; engine: string; warn?: RegExp }[] = [
      { extra: ["--set", "proxy.engine=deno"], deno: [], engine: "deno" },
      {
        extra: [],
        deno: ["--deny-ffi"],
        engine: "deno",
        warn:
          /level=warn msg="proxy engine: deno, not the native copy engine" .*FFI is not permitted \(run with --allow-ffi\)/,
      },
      { extra: ["--set", "proxy.engine=splice"], deno: [], engine: "splice" },
    ];
    for (const [i, c] of cases.entries()) {
      const proxy = await startProxy(lab, c.extra, c.deno);
      assert.match(proxy.stderr, new RegExp(`msg=ready .*engine=${c.engine}`));
      if (c.warn) assert.match(proxy.stderr, c.warn);
      const served = [
        await pullAndWhich(lab, `e${i}a`, lab.ip(20)),
        await pullAndWhich(lab, `e${i}b`, lab.ip(21)),
      ];
      assert.notEqual(served[0], served[1]);
      for (const d of [`e${i}a`, `e${i}b`]) {
        await assertSameTree(`${lab.dir}/${d}`, lab.hosts.rsync1.path);
      }
      assert.match(await listHalfClosed(lab), /^plugins\s.*\n@RSYNCD: EXIT\n$/m);
      Deno.kill(proxy.pid, "SIGTERM");
      assert.equal((await proxy.status()).code, 0, proxy.stderr);
    }

    // Asked for splice where it cannot work: exit 2 and why, before listening.
    const r = await lab.run([
      "--role",
      "proxy",
      "-c",
      lab.fleetFile,
      "--set",
      "proxy.engine=splice",
    ], {
      denoFlags: ["--deny-ffi"],
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^fanout: proxy\.engine is splice, but FFI is not permitted \(run with --allow-ffi\)$/m,
    );
    // A value that is no engine: named, with the choices.
    const bad = await lab.run([
      "--role",
      "proxy",
      "-c",
      lab.fleetFile,
      "--set",
      "proxy.engine=fast",
    ]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(
      bad.stderr,
      /proxy\.engine: expected "auto", "copy", "splice" or "deno", got "fast"/,
    );
  });
});

Deno.test("proxy: with no healthy backend the rsync client prints the proxy's @ERROR; /healthz is 503", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    await startProxy(lab);
    const r = await pull(lab, "out");
    assert.equal(r.code, 5, r.stderr);
    assert.match(
      r.stderr,
      // A check that the busy machine did not answer in time is as down as a refused one.
      /^@ERROR: fanout proxy: no healthy rsync server \(rsync1: (connection refused|timed out after \d+ms); rsync2: (connection refused|timed out after \d+ms)\)$/m,
    );
    const h = await healthz(lab);
    assert.equal(h.status, 503);
    assert.match(h.body, /no healthy rsync server \(rsync1: (connection refused|timed out)/);
    assert.match(await metrics(lab), /^fanout_proxy_refused_total\{reason="no_backend"\} 1$/m);

    // A backend that comes up joins after `rise` checks.
    await lab.server("primary", "rsync1");
    await waitFor("healthy", async () => (await healthz(lab)).status === 200);
    const ok = await pull(lab, "out");
    assert.equal(ok.code, 0, ok.stderr);
    await assertSameTree(`${lab.dir}/out`, lab.hosts.rsync1.path);

    // Its listen address taken: exit 2 and one line saying so.
    const again = await lab.run(["--role", "proxy", "-c", lab.fleetFile]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /^fanout: proxy cannot listen on .*: address in use$/m);
  });
});

Deno.test("proxy: max_connections answers with an @ERROR; idle connections are closed", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [], proxy: true });
    await plantTrees(lab);
    await lab.server("primary", "rsync1");
    await startProxy(lab, ["--max-connections", "2", "--set", "proxy.idle_timeout=1s"]);
    const px = lab.hosts.proxy;
    const idle = await Promise.all(
      [1, 2].map(() => Deno.connect({ hostname: px.ip, port: px.port })),
    );
    try {
      const buf = new Uint8Array(256);
      for (const c of idle) {
        // Past the handshake (greeting and module), then silent.
        await c.write(new TextEncoder().encode("@RSYNCD: 30.0\nplugins\n"));
        assert.ok((await c.read(buf))! > 0, "greeting through the proxy");
      }
      const r = await pull(lab, "out");
      assert.equal(r.code, 5, r.stderr);
      assert.match(
        r.stderr,
        /^@ERROR: fanout proxy: too many connections \(max 2\); try again later$/m,
      );
      // The idle timeout closes both (the proxy's side: reads end).
      const t0 = Date.now();
      for (const c of idle) {
        let n: number | null = 0;
        while (n !== null) n = await c.read(buf).catch(() => null);
      }
      assert.ok(Date.now() - t0 < 3000, "closed within the idle timeout and a sweep");
    } finally {
      for (const c of idle) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
    const ok = await pull(lab, "out");
    assert.equal(ok.code, 0, ok.stderr);
    const m = await metrics(lab);
    assert.match(m, /^fanout_proxy_refused_total\{reason="max_connections"\} 1$/m);
    assert.match(m, /^fanout_proxy_idle_timeouts_total 2$/m);
  });
});

Deno.test("proxy: SIGTERM drains: a running transfer finishes, new clients are turned away", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [], proxy: true });
    const big = new Uint8Array(1_500_000);
    for (let o = 0; o < big.length; o += 65536) crypto.getRandomValues(big.subarray(o, o + 65536));
    await plantTrees(lab);
    await Deno.writeFile(`${lab.hosts.rsync1.path}/big.bin`, big);
    await lab.server("primary", "rsync1");

    for (const cut of [false, true]) {
      const proxy = await startProxy(lab, cut ? ["--set", "proxy.drain_timeout=300ms"] : []);
      const dest = cut ? "cut" : "drained";
      // ~1.5 s at 1000 KB/s.
      const transfer = pull(lab, dest, ["--bwlimit=1000"]);
      await waitFor(
        "transfer running",
        async () => (await status(lab)).backends[0].bytes_to_client > 100_000,
        // A loaded machine can take seconds to start the rsync client.
        30_000,
      );
      Deno.kill(proxy.pid, "SIGTERM");
      await proxy.waitFor(/msg=draining/);
      if (!cut) {
        const h = await healthz(lab);
        assert.equal(h.status, 503);
        assert.match(h.body, /draining/);
        await assert.rejects(
          Deno.connect({ hostname: lab.hosts.proxy.ip, port: lab.hosts.proxy.port }),
          Deno.errors.ConnectionRefused,
        );
      }
      const r = await transfer;
      const st = await proxy.status();
      assert.equal(st.code, 0, proxy.stderr);
      assert.match(proxy.stderr, /msg=stopped/);
      if (cut) {
        assert.notEqual(r.code, 0, "cut by the drain timeout");
        assert.match(proxy.stderr, /msg="drain timed out; connections cut" .*cut=1/);
      } else {
        assert.equal(r.code, 0, r.stderr);
        await assertSameTree(`${lab.dir}/${dest}`, lab.hosts.rsync1.path);
        assert.doesNotMatch(proxy.stderr, /connections cut/);
      }
    }
  });
});

Deno.test("proxy: a lagging backend leaves the rotation and returns when it catches up", async () => {
  await withLab(async (lab) => {
    // Two replicas, no primary running: nothing pushes, so each tree's version is the test's to set.
    await lab.fleet({ replicas: ["rsync2", "rsync3"], proxy: true });
    await plantTrees(lab, { ".fanout-version": marker(1) });
    const r2 = await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    await startProxy(lab, ["--backends", "rsync2,rsync3", "--set", "proxy.version_grace=500ms"]);
    await waitFor("both at seq 1", async () => {
      const st = await status(lab);
      return st.newest_seq === 1 && st.rotation.length === 2;
    });

    const { rsync2, rsync3 } = lab.hosts;
    await Deno.writeTextFile(`${rsync2.path}/.fanout-version`, marker(2));
    await waitFor("rsync3 out", async () => (await status(lab)).rotation.join() === "rsync2");
    const st = await status(lab);
    const b3 = st.backends.find((b) => b.name === "rsync3")!;
    assert.equal(b3.lagging, true);
    assert.equal(b3.version?.seq, 1);
    for (let i = 0; i < 3; i++) {
      assert.equal(await pullAndWhich(lab, `v${i}`), "rsync2");
      assert.equal(await Deno.readTextFile(`${lab.dir}/v${i}/.fanout-version`), marker(2));
    }

    await Deno.writeTextFile(`${rsync3.path}/.fanout-version`, marker(2));
    await waitFor("rsync3 back", async () => (await status(lab)).rotation.length === 2);

    // The newest goes away: the newest left serves, and /status says why.
    await Deno.writeTextFile(`${rsync2.path}/.fanout-version`, marker(3));
    await waitFor("rsync3 out again", async () => (await status(lab)).rotation.join() === "rsync2");
    await r2.stop();
    await waitFor("rsync3 serves", async () => (await status(lab)).rotation.join() === "rsync3");
    const degraded = await status(lab);
    assert.match(
      degraded.degraded ?? "",
      /serving seq 2: seq 3 was seen on rsync2, which is not up/,
    );
    const r = await pull(lab, "stale");
    assert.equal(r.code, 0, r.stderr);
  });
});

Deno.test("proxy: PROXY protocol: the second daemon logs the real client; pushes still use the first", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    const proxied: Record<string, number> = {};
    await editFleet(lab, (text) => {
      for (const h of [lab.hosts.rsync1, lab.hosts.rsync2]) {
        proxied[h.name] = lab.port(h.ip);
        text = text.replace(
          new RegExp(`^( +)listen: ${h.ip}:${h.port}\n`, "m"),
          `$1listen: ${h.ip}:${h.port}\n$1proxy_listen: ${h.ip}:${proxied[h.name]}\n`,
        );
      }
      return proxyKeys(text, { proxy_protocol: true });
    });
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    await startProxy(lab);
    // Round robin sends one client to each only once both passed their checks.
    await waitFor("both in rotation", async () => (await status(lab)).rotation.length === 2);
    const clients = [lab.ip(9), lab.ip(10)];
    const seen = new Set<string>();
    for (const [i, client] of clients.entries()) {
      const r = await pull(lab, `out${i}`, [`--address=${client}`]);
      assert.equal(r.code, 0, r.stderr);
      await assertSameTree(`${lab.dir}/out${i}`, lab.hosts.rsync1.path);
    }
    for (const name of ["rsync1", "rsync2"]) {
      const logText = await Deno.readTextFile(`${lab.dir}/state/${name}/proxied/rsyncd.log`);
      const real = [...logText.matchAll(/rsync on plugins\/ from \S+ \((\S+)\)/g)].map((m) => m[1]);
      assert.ok(real.length > 0, `${name} served a pull:\n${logText}`);
      for (const c of real) {
        assert.ok(clients.includes(c), `${name} saw a real client, not ${c}`);
        seen.add(c);
      }
      const conf = await Deno.readTextFile(`${lab.dir}/state/${name}/proxied/rsyncd.conf`);
      assert.match(conf, /^proxy protocol = yes$/m);
      assert.doesNotMatch(conf, /plugins-push/, "read module only");
    }
    assert.deepEqual([...seen].sort(), [...clients].sort(), "each daemon saw its own client");
    // The first daemon takes plain connections: the primary's pushes still land.
    await Deno.writeTextFile(`${lab.hosts.rsync1.path}/pushed.txt`, "pushed\n");
    await waitFor(
      "the push to rsync2",
      () => Deno.readTextFile(`${lab.hosts.rsync2.path}/pushed.txt`).catch(() => null),
    );
    const h1 = lab.hosts.rsync1;
    const list = await rsync([`rsync://${h1.ip}:${h1.port}/`]);
    assert.equal(list.code, 0, list.stderr);
    // The second one wants the header, so nothing reaches it around the proxy.
    const around = await rsync([`rsync://${h1.ip}:${proxied.rsync1}/plugins/`, `${lab.dir}/x/`]);
    assert.notEqual(around.code, 0);
  });
});

Deno.test("proxy: PROXY protocol: hosts allow sees the real client", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    await editFleet(lab, (text) => proxyKeys(text, { proxy_protocol: true, backends: "[rsync2]" }));
    // rsync2's second daemon, as fanout renders it, with hosts allow narrowed to one client.
    const { daemonIdentity, renderProxiedConf } = await import("../lib/rsyncd/mod.ts");
    const { requireRsync } = await import("../lib/rsync/mod.ts");
    const { loadFleet, findServer } = await import("../lib/config/mod.ts");
    const fleet = await loadFleet(lab.fleetFile);
    const self = findServer(fleet, "rsync2")!;
    const allowed = lab.ip(9);
    const stateDir = `${lab.dir}/state/rsync2/proxied`;
    await Deno.mkdir(stateDir, { recursive: true });
    const conf = renderProxiedConf(fleet, self, await daemonIdentity(fleet, self), {
      rsyncVersion: await requireRsync(),
      stateDir,
    }).replace("hosts allow = *", `hosts allow = ${allowed}`);
    await Deno.writeTextFile(`${stateDir}/rsyncd.conf`, conf);
    const daemon = new Deno.Command("rsync", {
      args: ["--daemon", "--no-detach", `--config=${stateDir}/rsyncd.conf`],
      stderr: "null",
      detached: true,
    }).spawn();
    try {
      await startProxy(lab);
      await waitFor("in rotation", async () => (await status(lab)).rotation.length === 1);
      const ok = await pull(lab, "ok", [`--address=${allowed}`]);
      assert.equal(ok.code, 0, ok.stderr);
      await assertSameTree(`${lab.dir}/ok`, lab.hosts.rsync2.path);
      const other = lab.ip(10);
      const no = await pull(lab, "no", [`--address=${other}`]);
      assert.equal(no.code, 5);
      assert.match(
        no.stderr,
        new RegExp(
          `@ERROR: access denied to plugins from \\S+ \\(${other.replaceAll(".", "\\.")}\\)`,
        ),
      );
    } finally {
      Deno.kill(-daemon.pid, "SIGTERM");
      await daemon.status;
    }
  });
});

Deno.test("proxy: SIGHUP re-reads the backend list", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    await editFleet(lab, (text) => proxyKeys(text, { backends: "[rsync1]" }));
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    const proxy = await startProxy(lab);
    // The configured backends, whatever their health (a busy machine can time a check out).
    const configured = async () => (await status(lab)).backends.map((b) => b.name).sort();
    assert.deepEqual(await configured(), ["rsync1"]);
    await editFleet(lab, (text) => text.replace("  backends: [rsync1]\n", ""));
    Deno.kill(proxy.pid, "SIGHUP");
    await proxy.waitFor(/msg="backends reloaded" .*added=rsync2/);
    assert.deepEqual(await configured(), ["rsync1", "rsync2"]);
    await waitFor("both", async () => (await status(lab)).rotation.length === 2);
    const a = await pullAndWhich(lab, "a", lab.ip(20));
    const b = await pullAndWhich(lab, "b", lab.ip(21));
    assert.deepEqual([a, b].sort(), ["rsync1", "rsync2"]);

    // A broken file is reported and the current backends are kept.
    await editFleet(lab, (text) => proxyKeys(text, { backends: "[nope]" }));
    Deno.kill(proxy.pid, "SIGHUP");
    await proxy.waitFor(
      /msg="reload failed; keeping the current backends" .*no server named \\"nope\\"/,
    );
    assert.deepEqual(await configured(), ["rsync1", "rsync2"]);
  });
});

Deno.test("render nginx and haproxy: the configs pass nginx -t and haproxy -c and balance real pulls", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], proxy: true });
    await plantTrees(lab);
    await Deno.mkdir(`${lab.dir}/state/proxy`, { recursive: true });
    const render = async (kind: string, listen: string, extra: string[] = []) => {
      const r = await lab.run([
        "render",
        kind,
        "-c",
        lab.fleetFile,
        "--set",
        `proxy.listen=${listen}`,
        ...extra,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^# Rendered by fanout \d+\.\d+\.\d+ from .*fanout\.yaml/);
      const file = `${lab.dir}/${kind}${extra.length ? "-pp" : ""}.conf`;
      // The pid and error log go where a real host keeps them (/run, /var/log/nginx);
      // the lab's copy keeps them in the lab, so two suites at once share nothing.
      const inLab = r.stdout.replaceAll("/run/fanout-rsync-", `${lab.dir}/`)
        .replaceAll("/var/log/nginx/", `${lab.dir}/`);
      await Deno.writeTextFile(file, inLab);
      return { file, text: r.stdout };
    };
    const ngx = { ip: lab.ip(201), port: lab.port(lab.ip(201)) };
    const hap = { ip: lab.ip(202), port: lab.port(lab.ip(202)) };
    const n = await render("nginx", `${ngx.ip}:${ngx.port}`);
    const h = await render("haproxy", `${hap.ip}:${hap.port}`);
    assert.match(
      n.text,
      new RegExp(`server ${lab.hosts.rsync2.ip}:${lab.hosts.rsync2.port} max_fails=2`),
    );
    assert.match(h.text, /tcp-check expect string @RSYNCD:/);
    const nPP = await render("nginx", `${ngx.ip}:${ngx.port}`, [
      "--set",
      "proxy.proxy_protocol=true",
    ]);
    const hPP = await render("haproxy", `${hap.ip}:${hap.port}`, [
      "--set",
      "proxy.proxy_protocol=true",
    ]);
    assert.match(nPP.text, /proxy_protocol on;/);
    assert.match(hPP.text, /send-proxy check-send-proxy/);
    for (const f of [n.file, nPP.file]) {
      const t = await sh("nginx", ["-t", "-q", "-e", "stderr", "-c", f]);
      assert.equal(t.code, 0, t.stderr);
    }
    for (const f of [h.file, hPP.file]) {
      const t = await sh("haproxy", ["-c", "-q", "-f", f]);
      assert.equal(t.code, 0, t.stderr + t.stdout);
    }

    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    const procs = [
      new Deno.Command("nginx", {
        args: ["-c", n.file, "-e", "stderr", "-g", "daemon off;"],
        stdout: "null",
        stderr: "null",
        detached: true,
      }).spawn(),
      new Deno.Command("haproxy", {
        args: ["-f", h.file, "-db"],
        stdout: "null",
        stderr: "null",
        detached: true,
      }).spawn(),
    ];
    try {
      const served = async (name: string) =>
        ((await Deno.readTextFile(`${lab.dir}/state/${name}/rsyncd.log`)).match(
          /rsync on plugins\/ from/g,
        ) ?? []).length;
      // Which server served a pull from `from` (the rsync daemons' logs grew).
      const pullFrom = async (url: string, from: string, dest: string) => {
        const before = [await served("rsync1"), await served("rsync2")];
        const r = await waitFor(`a pull through ${url} from ${from}`, async () => {
          const r = await rsync(["-a", `--address=${from}`, url, dest]);
          return r.code === 0 ? r : null;
        });
        assert.equal(r.code, 0);
        await assertSameTree(dest, lab.hosts.rsync1.path);
        const grew = [await served("rsync1") - before[0], await served("rsync2") - before[1]];
        return grew[0] > 0 && grew[1] === 0
          ? "rsync1"
          : grew[1] > 0 && grew[0] === 0
          ? "rsync2"
          : "?";
      };
      for (const lb of [ngx, hap]) {
        const url = `rsync://${lb.ip}:${lb.port}/plugins/`;
        // One client's pulls reach one server; clients spread over both.
        const byClient = new Map<string, string>();
        for (let i = 0; i < 32 && new Set(byClient.values()).size < 2; i++) {
          const from = lab.ip(30 + i);
          const first = await pullFrom(url, from, `${lab.dir}/lb-${lb.port}-${i}a/`);
          const again = await pullFrom(url, from, `${lab.dir}/lb-${lb.port}-${i}b/`);
          assert.notEqual(first, "?", `one server served the pull from ${from}`);
          assert.equal(again, first, `${from}'s pulls through ${url} reach one server`);
          byClient.set(from, first);
        }
        assert.equal(new Set(byClient.values()).size, 2, `both servers serve through ${url}`);
      }
    } finally {
      for (const p of procs) {
        try {
          Deno.kill(-p.pid, "SIGTERM");
        } catch { /* gone */ }
        await p.status;
      }
    }
  });
});
