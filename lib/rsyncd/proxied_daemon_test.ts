// The rsyncd.conf of the daemon behind a PROXY-protocol proxy, as each rsync
// version needs it: 3.5+ trusts a PROXY header only from `proxy protocol
// hosts`, which must name the proxy; 3.2.x does not know that parameter.
// (Real daemons of both versions greet through it in tests/render_rsyncd_test.ts.)
import assert from "node:assert/strict";
import { knowsProxyProtocolHosts } from "./daemon.ts";
import { proxyProtocolPeers, renderProxiedConf } from "./proxied_daemon.ts";
import { parseFleet } from "../config/mod.ts";
import { ConfigError } from "../core/mod.ts";

const ID = { asRoot: false, uid: "0", gid: "0" };

/** The replica of a fleet whose one replica is behind a PROXY-protocol proxy with `proxyKeys`. */
async function replica(proxyKeys: string, address = "10.0.0.3", replicaKeys = "") {
  const fleet = await parseFleet(
    `tree: plugins
primary: {name: rsync1, address: 10.0.0.2, path: /srv/plugins}
replicas: [{name: rsync2, address: ${address}, path: /srv/plugins${replicaKeys}}]
proxy: {proxy_protocol: true, ${proxyKeys}}
`,
    "fanout.yaml",
  );
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
    ["", false],
    ["garbage", false],
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
  const c = await replica("listen: 10.0.0.9:873", "10.0.0.3", ", proxy_listen: '0.0.0.0:874'");
  assert.deepEqual(proxyProtocolPeers(c.fleet, c.self), ["10.0.0.9", "127.0.0.1"]);
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
