// The rsyncd.conf of the daemon behind a PROXY-protocol proxy, as each rsync
// version needs it: 3.5+ trusts a PROXY header only from `proxy protocol
// hosts`; 3.2.x does not know that parameter. The real daemons of both
// versions (unpacked under /opt/rsyncs when present) greet through it; how
// the file is rendered is unit-tested in lib/rsyncd/proxied_daemon_test.ts.
import assert from "node:assert/strict";
import { parseFleet } from "../lib/config/mod.ts";
import { exists, Logger } from "../lib/core/mod.ts";
import { probeRsyncd, PROXY_V1_UNKNOWN } from "../lib/rsync/mod.ts";
import { renderProxiedConf, RsyncDaemon } from "../lib/rsyncd/mod.ts";
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
