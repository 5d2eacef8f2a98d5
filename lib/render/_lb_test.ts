// What the nginx and HAProxy renderers share: the proxy section as a view,
// with durations both read and addresses as each writes them.
import assert from "node:assert/strict";
import { lbDuration, lbView, proxyOf } from "./_lb.ts";
import { commonOptions, parseFleet } from "../config/mod.ts";
import { ConfigError } from "../core/mod.ts";

const opts = commonOptions({ logLevel: "warn" });
const FLEET = `tree: plugins
primary: {name: rsync1, address: 10.0.0.2, path: /srv/plugins}
replicas:
  - {name: rsync2, address: "fd00::3", path: /srv/plugins}
proxy: {listen: "10.0.0.5:873", backends: [rsync1, rsync2], interval: 1500ms}
`;

Deno.test("lbDuration: whole seconds when exact, else milliseconds", () => {
  assert.equal(lbDuration(0), "0s");
  assert.equal(lbDuration(2000), "2s");
  assert.equal(lbDuration(1500), "1500ms");
  assert.equal(lbDuration(1), "1ms");
  assert.equal(lbDuration(86_400_000), "86400s");
});

Deno.test("proxyOf: a fleet without a proxy section is a config error naming the kind", async () => {
  const fleet = await parseFleet(FLEET.replace(/^proxy:.*\n/m, ""), "/etc/fanout/fanout.yaml");
  assert.throws(
    () => proxyOf({ fleet, opts }, "haproxy"),
    (e) =>
      e instanceof ConfigError && e.exitCode === 2 &&
      /^\/etc\/fanout\/fanout\.yaml: proxy: missing: render haproxy needs a proxy section/.test(
        e.message,
      ),
  );
});

Deno.test("lbView: every backend by its address as the renderer writes it; the proxy's limits", async () => {
  const fleet = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
  const input = { fleet, opts };
  const proxy = proxyOf(input, "nginx");
  const view = lbView(input, proxy, (h, p) => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`));
  assert.equal(view.listen, "10.0.0.5:873");
  assert.equal(view.module, fleet.modules.read);
  assert.deepEqual(view.servers.map((s) => s.name), ["rsync1", "rsync2"]);
  assert.match(view.servers[1].addr, /^\[fd00::3\]:\d+$/);
  assert.equal(view.interval, "1500ms");
  assert.equal(view.tries, 2);
  assert.equal(view.max_connections, proxy.maxConnections);
  assert.match(view.rendered_by, /^# Rendered by fanout .* from \/etc\/fanout\/fanout\.yaml/);
  const haproxy = lbView(input, proxy, (h, p) => `${h}:${p}`);
  assert.match(haproxy.servers[1].addr, /^fd00::3:\d+$/, "HAProxy splits at the last colon");
});
