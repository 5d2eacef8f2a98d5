// The rsyncd.conf of the daemon behind a PROXY-protocol proxy, as each rsync
// version needs it: 3.5+ trusts a PROXY header only from `proxy protocol
// hosts`; 3.2.x does not know that parameter. The real daemons of both
// versions (unpacked under /opt/rsyncs when present) greet through it.
import assert from "node:assert/strict";
import { parseFleet } from "../lib/config/mod.ts";
import { ConfigError, exists, Logger } from "../lib/core/mod.ts";
import {
  knowsProxyProtocolHosts,
  probeRsyncd,
  PROXY_V1_UNKNOWN,
  proxyProtocolPeers,
  renderProxiedConf,
  RsyncDaemon,
} from "../lib/rsync/mod.ts";
import { rsyncOf, withLab } from "./_helpers.ts";

const ID = { asRoot: false, uid: "0", gid: "0" };

/** A fleet with one replica behind a PROXY-protocol proxy whose `proxy:` keys are `proxy`. */
function fleetText(proxy: string, replica = "10.0.0.3"): string {
  return [
    "tree: plugins",
    "primary: {name: rsync1, address: 10.0.0.2, path: /srv/plugins}",
    `replicas: [{name: rsync2, address: ${replica}, path: /srv/plugins}]`,
    `proxy: {proxy_protocol: true, ${proxy}}`,
    "",
  ].join("\n");
}

async function replica(proxy: string, replicaIp?: string) {
  const fleet = await parseFleet(fleetText(proxy, replicaIp), "fanout.yaml");
  return { fleet, self: fleet.replicas[0] };
}

const hostsLine = (conf: string) => /^proxy protocol hosts = (.*)$/m.exec(conf)?.[1] ?? null;

Deno.test("render rsyncd: proxy protocol hosts is known from rsync 3.5.0 on", () => {
  const table: [string, boolean][] = [
    ["3.1.3", false],
    ["3.2.7", false],
    ["3.3.0", false],
    ["3.4.1", false],
    ["3.4.4", false],
    ["3.5.0", true],
    ["3.10.2", true],
    ["4.0.0", true],
  ];
  for (const [v, known] of table) assert.equal(knowsProxyProtocolHosts(v), known, v);
});

Deno.test("render rsyncd: rsync 3.5 lists the proxy and this host; 3.2 gets no such line", async () => {
  const { fleet, self } = await replica("listen: 10.0.0.9:873");
  const v35 = renderProxiedConf(fleet, self, ID, { rsyncVersion: "3.5.0", stateDir: "/s" });
  assert.match(v35, /^proxy protocol = yes$/m);
  // The proxy, then the replica's proxy_listen IP (its own readiness probe leaves from it).
  assert.equal(hostsLine(v35), "10.0.0.9 10.0.0.3");
  assert.match(v35, /^address = 10\.0\.0\.3\nport = 874$/m);

  const v32 = renderProxiedConf(fleet, self, ID, { rsyncVersion: "3.2.7", stateDir: "/s" });
  assert.match(v32, /^proxy protocol = yes$/m);
  assert.equal(hostsLine(v32), null);
  assert.doesNotMatch(v32, /proxy protocol hosts/);
  // Apart from that line and its comment, the two are the same file.
  const strip = (t: string) =>
    t.split("\n").filter((l) => !/proxy protocol hosts|^# rsync 3\.5|^# other connection/.test(l))
      .join("\n");
  assert.equal(strip(v35), strip(v32));
});

Deno.test("render rsyncd: proxy.address wins over a wildcard listen; loopback adds 127.0.0.1", async () => {
  const a = await replica("listen: 0.0.0.0:873, address: 10.0.0.9");
  assert.deepEqual(proxyProtocolPeers(a.fleet, a.self), ["10.0.0.9", "10.0.0.3"]);
  // On one machine every connection to 127.x leaves from 127.0.0.1.
  const b = await replica("listen: 127.0.0.200:873", "127.0.0.3");
  assert.deepEqual(proxyProtocolPeers(b.fleet, b.self), ["127.0.0.200", "127.0.0.3", "127.0.0.1"]);
  // A wildcard proxy_listen is probed at its loopback.
  const c = await parseFleet(
    fleetText("listen: 10.0.0.9:873").replace(
      "path: /srv/plugins}]",
      "path: /srv/plugins, proxy_listen: '0.0.0.0:874'}]",
    ),
    "fanout.yaml",
  );
  assert.deepEqual(proxyProtocolPeers(c, c.replicas[0]), ["10.0.0.9", "127.0.0.1"]);
  const d = await replica("listen: '[fd00::9]:873'", "fd00::3");
  assert.deepEqual(proxyProtocolPeers(d.fleet, d.self), ["fd00::9", "fd00::3"]);
});

Deno.test("render rsyncd: no proxy address with rsync 3.5 is a config error naming proxy.address; 3.2 renders", async () => {
  const { fleet, self } = await replica("listen: 0.0.0.0:873");
  assert.throws(
    () => renderProxiedConf(fleet, self, ID, { rsyncVersion: "3.5.0", stateDir: "/s" }),
    (e) =>
      e instanceof ConfigError &&
      /^fanout\.yaml: proxy\.address: missing: .*rsync 3\.5/.test(e.message),
  );
  const v32 = renderProxiedConf(fleet, self, ID, { rsyncVersion: "3.2.7", stateDir: "/s" });
  assert.match(v32, /^proxy protocol = yes$/m);
});

/** rsync 3.2 and 3.5 where this machine has them (tests/_helpers.ts rsyncOf). */
const RSYNCS = [await rsyncOf("3.2"), await rsyncOf("3.5")];

for (const [i, found] of RSYNCS.entries()) {
  const { version, bin } = found ?? { version: ["3.2", "3.5"][i], bin: "" };
  Deno.test({
    name:
      `render rsyncd: rsync ${version}'s daemon greets a PROXY header from 127.0.0.1 and logs no unknown parameter`,
    ignore: found === null,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "fanout-render-" });
      const lines: string[] = [];
      const port = freePort("127.0.0.1");
      const { fleet, self } = await replica("listen: 127.0.0.1:873", "127.0.0.1");
      self.proxyListen = { host: "127.0.0.1", port };
      self.path = dir;
      const render = () =>
        renderProxiedConf(fleet, self, ID, { rsyncVersion: version, stateDir: dir });
      await Deno.writeTextFile(`${dir}/rsyncd.conf`, render());
      const d = new RsyncDaemon({
        rsync: bin,
        confPath: `${dir}/rsyncd.conf`,
        listen: self.proxyListen,
        stateDir: dir,
        proxyProtocol: true,
        log: new Logger({ sink: (l) => lines.push(l) }),
        readyTimeout: 10_000,
      });
      try {
        await d.start();
        const r = await probeRsyncd(self.proxyListen, 5_000, { proxyHeader: PROXY_V1_UNKNOWN });
        assert.ok(r.ok, r.error);
        const log = await Deno.readTextFile(`${dir}/rsyncd.log`);
        assert.match(log, new RegExp(`rsyncd version ${version.replaceAll(".", "\\.")}`));
        assert.doesNotMatch(log, /unknown parameter|rejected/i);
      } finally {
        await d.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

function freePort(host: string): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test({
  name:
    "render rsyncd: a server with rsync 3.5 behind a proxy of unknown address exits 2 naming proxy.address; so does check-config",
  ignore: RSYNCS[1] === null,
  fn: async () => {
    await withLab(async (lab) => {
      await lab.fleet({ replicas: ["rsync2"], proxy: true });
      const flags = [
        "-c",
        lab.fleetFile,
        "--set",
        "proxy.proxy_protocol=true",
        "--set",
        `proxy.listen=0.0.0.0:${lab.port("0.0.0.0")}`,
        "--set",
        `rsync.path=${RSYNCS[1]?.bin}`,
      ];
      for (
        const args of [["--role", "replica", "--name", "rsync2"], [
          "check-config",
          "--role",
          "replica",
          "--name",
          "rsync2",
        ]]
      ) {
        const r = await lab.run([...args, ...flags]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /^fanout: .*fanout\.yaml: proxy\.address: missing: /m);
      }
      // Nothing was started or written for the second daemon.
      assert.equal(await exists(`${lab.dir}/state/rsync2/proxied/rsyncd.conf`), false);
    });
  },
});
