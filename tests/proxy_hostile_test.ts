// The proxy against hostile clients and a lying server: one address cannot
// take every slot, silent or trickling sockets are cut and never reach a
// server (every engine), and a forged version marker on one replica does not
// take the fleet's traffic.
import assert from "node:assert/strict";
import { ConfigError } from "../lib/core/mod.ts";
import { parseFleet } from "../lib/config/mod.ts";
import {
  assertSameTree,
  http,
  type Lab,
  rsync,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";
import { floodFrom } from "./_flood.ts";
import { MARKER, markerOf, smallTree, Topology } from "./_fleet.ts";

const FLEET = `tree: plugins
primary: {name: rsync1, address: 10.0.0.10, path: /srv/plugins}
replicas:
  - {name: rsync2, address: 10.0.0.11, path: /srv/plugins}
proxy:
  listen: 10.0.0.20:873
`;

Deno.test("config: the proxy's hostile-input keys have defaults and are checked", async () => {
  const d = (await parseFleet(FLEET, "fanout.yaml")).proxy!;
  assert.deepEqual(
    [d.maxConnectionsPerSource, d.handshakeTimeout, d.versionMaxLead],
    [100, 10_000, 1],
  );
  const set = (await parseFleet(
    FLEET + "  max_connections_per_source: 500\n  handshake_timeout: 3s\n  version_max_lead: 0\n",
    "fanout.yaml",
  )).proxy!;
  assert.deepEqual(
    [set.maxConnectionsPerSource, set.handshakeTimeout, set.versionMaxLead],
    [500, 3_000, 0],
  );
  for (
    const bad of [
      "max_connections_per_source: 0",
      "handshake_timeout: soon",
      "version_max_lead: -1",
    ]
  ) {
    await assert.rejects(
      parseFleet(FLEET + `  ${bad}\n`, "fanout.yaml"),
      (e) => e instanceof ConfigError && e.message.includes(`proxy.${bad.split(":")[0]}`),
      bad,
    );
  }
});

const TREE = { "a.txt": "alpha\n", "dir/b.bin": "b".repeat(50_000) };
const enc = new TextEncoder();

interface Connections {
  active: number;
  handshaking: number;
  sources: number;
  refused_max_connections_per_source: number;
  handshake_timeouts: number;
  bad_handshakes: number;
  idle_timeouts: number;
}
interface Status {
  connections: Connections;
  rotation: string[];
  degraded: string | null;
  newest_seq: number | null;
  reference: { seq: number; from: string } | null;
  backends: {
    name: string;
    state: string;
    connections: number;
    lagging: boolean;
    distrusted: string | null;
  }[];
}

async function proxyStatus(lab: Lab): Promise<Status> {
  const px = lab.hosts.proxy;
  return JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
}

function pull(lab: Lab, dest: string, extra: string[] = []) {
  const px = lab.hosts.proxy;
  return rsync(["-a", ...extra, `rsync://${px.ip}:${px.port}/plugins/`, `${lab.dir}/${dest}/`]);
}

/**
 * A client that sends `head`, then one byte of `drip` every 200 ms (at most
 * 300: a minute) until the proxy closes it; resolves with how many it sent.
 */
async function trickle(lab: Lab, head: string, drip: string): Promise<number> {
  const c = await Deno.connect({ hostname: lab.hosts.proxy.ip, port: lab.hosts.proxy.port });
  let closed = false;
  const reader = (async () => {
    const buf = new Uint8Array(1024);
    try {
      while ((await c.read(buf)) !== null) { /* the greeting, @RSYNCD: OK */ }
    } catch { /* reset */ }
    closed = true;
  })();
  let sent = 0;
  try {
    if (head) await c.write(enc.encode(head));
    for (; !closed && sent < 300; sent++) {
      await c.write(enc.encode(drip[sent % drip.length]));
      await sleep(200);
    }
  } catch { /* the proxy closed it */ }
  await reader;
  c.close();
  assert.ok(closed, "the proxy closed the trickling client");
  return sent;
}

for (const engine of ["copy", "splice", "deno"]) {
  Deno.test(`proxy (${engine}): one address gets max_connections_per_source; silent, trickling and non-rsync clients are cut and never reach a server`, async () => {
    await withLab(async (lab) => {
      await lab.fleet({
        replicas: [],
        // Checks that a loaded machine's slowness does not fail.
        proxy: {
          engine,
          max_connections_per_source: 3,
          handshake_timeout: "60s",
          check_timeout: "3s",
          fall: 5,
        },
      });
      await writeTree(lab.hosts.rsync1.path, TREE);
      await lab.server("primary", "rsync1");
      const hostile = lab.ip(77);

      // 1. One address holds its 3 slots silently; its 4th is refused, a
      // real client elsewhere is served, and nothing of it reached rsync1.
      let proxy = await lab.proxy();
      const held = floodFrom(hostile, lab.hosts.proxy, 3);
      try {
        assert.equal(held.opened, 3, held.errors.join("; "));
        await waitFor("3 held", async () => (await proxyStatus(lab)).connections.active === 3);
        const refused = await rsync([
          "-a",
          `--address=${hostile}`,
          `rsync://${lab.hosts.proxy.ip}:${lab.hosts.proxy.port}/plugins/`,
          `${lab.dir}/refused/`,
        ]);
        assert.equal(refused.code, 5, refused.stderr);
        assert.match(
          refused.stderr,
          new RegExp(
            `^@ERROR: fanout proxy: too many connections from ${hostile} \\(max 3\\); try again later$`,
            "m",
          ),
        );
        const ok = await pull(lab, "real");
        assert.equal(ok.code, 0, ok.stderr);
        await assertSameTree(`${lab.dir}/real`, lab.hosts.rsync1.path);

        const web = await Deno.connect({
          hostname: lab.hosts.proxy.ip,
          port: lab.hosts.proxy.port,
        });
        await web.write(enc.encode("GET / HTTP/1.0\r\n\r\n"));
        let said = "";
        const buf = new Uint8Array(1024);
        for (let n = await web.read(buf); n !== null; n = await web.read(buf)) {
          said += new TextDecoder().decode(buf.subarray(0, n));
        }
        web.close();
        assert.match(said, /^@ERROR: fanout proxy: not an rsync client greeting$/m);

        const st = await proxyStatus(lab);
        assert.equal(st.connections.sources, 1, JSON.stringify(st.connections));
        assert.equal(st.connections.handshaking, 3);
        assert.equal(st.connections.refused_max_connections_per_source, 1);
        assert.equal(st.connections.bad_handshakes, 1);
        assert.equal(st.backends[0].connections, 1, "only the real client reached rsync1");
        const m = (await http(`http://${lab.hosts.proxy.ip}:${lab.hosts.proxy.health}/metrics`))
          .body;
        assert.match(m, /^fanout_proxy_refused_total\{reason="max_connections_per_source"\} 1$/m);
        assert.match(m, /^fanout_proxy_handshake_failures_total\{reason="bad"\} 1$/m);
      } finally {
        held.close();
      }
      assert.equal((await proxy.stop()).code, 0);

      // 2. Short deadlines: silent sockets and a greeting that trickles are
      // cut at handshake_timeout, a client trickling after its handshake (the
      // server sends nothing back) at idle_timeout; a real client meanwhile
      // gets its tree.
      proxy = await lab.proxy([
        "--set",
        "proxy.handshake_timeout=1s",
        "--set",
        "proxy.idle_timeout=1s",
      ]);
      const silent = floodFrom(hostile, lab.hosts.proxy, 2);
      try {
        const [inGreeting, afterHandshake, real] = await Promise.all([
          trickle(lab, "@RSYNCD: 30.0", " "),
          trickle(lab, "@RSYNCD: 30.0\nplugins\n", "x"),
          pull(lab, "during"),
        ]);
        assert.equal(real.code, 0, real.stderr);
        await assertSameTree(`${lab.dir}/during`, lab.hosts.rsync1.path);
        assert.ok(inGreeting > 0 && afterHandshake > 0);
        await waitFor("the silent ones cut", async () => {
          const c = (await proxyStatus(lab)).connections;
          return c.active === 0 && c.handshake_timeouts === 3 && c.idle_timeouts === 1;
        }, 20_000);
      } finally {
        silent.close();
      }
      assert.equal((await proxy.stop()).code, 0);
    });
  });
}

Deno.test("fleet: a forged marker with a huge seq on one replica takes no traffic; clients end at the real version", async () => {
  await withLab(async (lab) => {
    const t = await Topology.start(lab, {
      replicas: ["rsync2", "rsync3"],
      clients: ["c1", "c2"],
      proxy: { version_grace: "300ms", check_timeout: "3s", fall: 5 },
    });
    const v1 = await t.publish(smallTree(20, "v1"));
    await t.converged(v1, { clients: [] });
    const real = (await markerOf(lab.hosts.rsync1.path))!;

    const forged = `${lab.hosts.rsync2.path}/${MARKER}`;
    const text = JSON.parse(await Deno.readTextFile(forged));
    await Deno.writeTextFile(forged, JSON.stringify({ ...text, seq: 999_999_999_999 }) + "\n");
    await waitFor("rsync2 distrusted", async () => {
      return (await proxyStatus(lab)).backends.find((b) => b.name === "rsync2")!.distrusted !==
        null;
    });
    // Past the grace period: nobody lags behind the forgery.
    await sleep(600);
    const st = await proxyStatus(lab);
    assert.deepEqual(st.rotation, ["rsync1", "rsync3"], JSON.stringify(st));
    assert.equal(st.newest_seq, real.seq);
    assert.deepEqual(st.reference, { seq: real.seq, from: "primary rsync1", primary: true });
    assert.equal(
      st.backends.find((b) => b.name === "rsync2")!.distrusted,
      `claims seq 999999999999, more than 1 past seq ${real.seq} (primary rsync1)`,
    );
    assert.deepEqual(st.backends.filter((b) => b.lagging).map((b) => b.name), []);

    for (let round = 0; round < 2; round++) {
      for (const c of t.clients) {
        const r = await t.runClient(c);
        assert.deepEqual([r.code, r.stderr], [0, ""], c);
        assert.equal(await t.divergence(t.dest(c), v1), "");
        assert.equal((await markerOf(t.dest(c)))!.seq, real.seq, `${c}: the real version`);
      }
    }
    assert.equal(
      (await proxyStatus(lab)).backends.find((b) => b.name === "rsync2")!.connections,
      0,
      "no client reached the forger",
    );

    // The next publish overwrites the forgery: rsync2 is believed again.
    const v2 = await t.publish(smallTree(20, "v2"));
    await t.converged(v2);
    await waitFor("rsync2 back", async () => {
      const s = await proxyStatus(lab);
      return s.rotation.includes("rsync2") &&
        s.backends.find((b) => b.name === "rsync2")!.distrusted === null;
    });
    await t.shutdown();
  }, { tmpfs: true });
});
