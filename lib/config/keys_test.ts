import assert from "node:assert/strict";
import { type CamelKeys, fleetKeys, type RawFleet } from "./keys.ts";
import { Refused } from "./_key_types.ts";
import type {
  ClientConfig,
  Fleet,
  FleetViewConfig,
  ProxyConfig,
  PublisherHost,
  PushConfig,
  ServerHost,
} from "./config.ts";
import { parseFleet } from "./config.ts";

/** true when A and B are the same set of keys. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Fields<T> = keyof CamelKeys<T>;

// A key declared in keys.ts but missing from the Fleet types (or the other
// way round) fails the type check here. Fields not from keys: named after `|`.
const _drift: Record<string, true> = {
  fleet: true satisfies Same<Fields<RawFleet> | "file", keyof Fleet>,
  auth: true satisfies Same<Fields<RawFleet["auth"]>, keyof Fleet["auth"]>,
  rsync: true satisfies Same<Fields<RawFleet["rsync"]>, keyof Fleet["rsync"]>,
  modules: true satisfies Same<Fields<RawFleet["modules"]>, keyof Fleet["modules"]>,
  primary: true satisfies Same<
    Fields<RawFleet["primary"]> | "kind" | "upstream" | "stateDir",
    keyof ServerHost
  >,
  replicas: true satisfies Same<
    Fields<RawFleet["replicas"][number]> | "kind" | "stateDir",
    keyof ServerHost
  >,
  publisher: true satisfies Same<
    Fields<NonNullable<RawFleet["publisher"]>> | "stateDir",
    keyof PublisherHost
  >,
  proxy: true satisfies Same<
    Fields<NonNullable<RawFleet["proxy"]>> | "stateDir",
    keyof ProxyConfig
  >,
  client: true satisfies Same<Fields<RawFleet["client"]>, keyof ClientConfig>,
  push: true satisfies Same<Fields<RawFleet["push"]>, keyof PushConfig>,
  fleetView: true satisfies Same<Fields<RawFleet["fleet"]>, keyof FleetViewConfig>,
};

Deno.test("keys: every default passes its own key's check", () => {
  for (const k of fleetKeys()) {
    if (k.decl.fill !== "default") continue;
    const v = k.decl.type.check(k.decl.default);
    assert.ok(v !== undefined && !(v instanceof Refused), `${k.path}: default refused`);
  }
});

Deno.test("keys: every key has one line of docs, and a way to fill it when absent", () => {
  for (const k of fleetKeys()) {
    assert.ok(k.decl.doc.length > 0 && !k.decl.doc.includes("\n"), `${k.path}: doc`);
    if (k.decl.fill === "optional") assert.ok(k.decl.absent, `${k.path}: what absent means`);
  }
});

Deno.test("keys: flags resolve to the key paths they override", () => {
  const flags = fleetKeys().filter((k) => k.flag).map((k) => [k.path, k.flag!.at.join(".")]);
  assert.deepEqual(Object.fromEntries(flags), {
    "state_dir": "state_dir",
    "primary.address": "@host.address",
    "primary.listen": "@host.listen",
    "primary.health": "@host.health",
    "primary.path": "@host.path",
    "publisher.address": "publisher.address",
    "publisher.repo": "publisher.repo",
    "publisher.ref": "publisher.ref",
    "replicas[].address": "@host.address",
    "replicas[].listen": "@host.listen",
    "replicas[].health": "@host.health",
    "replicas[].path": "@host.path",
    "proxy.listen": "proxy.listen",
    "proxy.health": "proxy.health",
    "proxy.backends": "proxy.backends",
    "proxy.max_connections": "proxy.max_connections",
    "proxy.proxy_protocol": "proxy.proxy_protocol",
    "client.source": "client.source",
    "client.dest": "client.dest",
    "client.splay": "client.splay",
    "client.timeout": "client.timeout",
    "client.retries": "client.retries",
    "client.max_delete": "client.max_delete",
    "client.verify_every": "client.verify_every",
    "client.backup_dir": "client.backup_dir",
    "client.atomic": "client.atomic",
    "client.keep": "client.keep",
    "client.notify": "client.notify",
    "push.debounce": "push.debounce",
    "push.reconcile": "push.reconcile",
    "push.concurrency": "push.concurrency",
    "push.max_delete": "push.max_delete",
  });
});

Deno.test("keys: the defaults a fleet gets", async () => {
  const f = await parseFleet(
    "tree: t\nprimary: {name: p, address: 10.0.0.1, path: /srv/t}\n" +
      "publisher: {address: 10.0.0.5}\nreplicas: [{name: r, address: 10.0.0.2, path: /srv/t}]\n" +
      "proxy: {}\n",
    "f.yaml",
  );
  assert.equal(f.binary, "/usr/local/bin/fanout");
  assert.equal(f.stateDir, "/var/lib/fanout");
  assert.deepEqual([f.uid, f.gid], [null, null]);
  assert.deepEqual(f.modules, { read: "t", write: "t-push" });
  assert.deepEqual(f.auth, {
    user: "fanout",
    secretsFile: "/etc/fanout/rsyncd.secrets",
    passwordFile: "/etc/fanout/push.password",
    reportTokenFile: "/etc/fanout/report.token",
  });
  assert.deepEqual(f.rsync, { path: "rsync", timeout: 300_000, connectTimeout: 10_000 });
  assert.deepEqual(f.primary, {
    kind: "primary",
    name: "p",
    address: "10.0.0.1",
    listen: { host: "10.0.0.1", port: 873 },
    health: { host: "10.0.0.1", port: 8873 },
    proxyListen: { host: "10.0.0.1", port: 874 },
    path: "/srv/t",
    maxConnections: 1000,
    upstream: null,
    stateDir: "/var/lib/fanout/p",
  });
  assert.equal(f.replicas[0].maxConnections, 200);
  assert.equal(f.replicas[0].upstream, "p");
  assert.deepEqual(f.publisher, {
    name: "publisher",
    address: "10.0.0.5",
    repo: null,
    ref: "main",
    staging: "/var/lib/fanout/publisher/staging",
    lockTimeout: 300_000,
    stateDir: "/var/lib/fanout/publisher",
  });
  assert.deepEqual(f.proxy, {
    name: "proxy",
    listen: { host: "0.0.0.0", port: 873 },
    address: null,
    health: { host: "0.0.0.0", port: 8874 },
    backends: ["p", "r"],
    interval: 2_000,
    checkTimeout: 1_000,
    fall: 2,
    rise: 2,
    maxConnections: 1000,
    maxConnectionsPerSource: 100,
    handshakeTimeout: 10_000,
    idleTimeout: 300_000,
    drainTimeout: 30_000,
    versionGrace: 10_000,
    affinity: 10_000,
    versionMaxLead: 1,
    proxyProtocol: false,
    engine: "auto",
    stateDir: "/var/lib/fanout/proxy",
  });
  assert.deepEqual(f.client, {
    source: null,
    dest: null,
    splay: 30_000,
    timeout: 300_000,
    connectTimeout: 10_000,
    retries: 3,
    maxDelete: 500,
    verifyEvery: 0,
    backupDir: null,
    atomic: false,
    keep: 3,
    keepOwners: false,
    watchInterval: 2_000,
    notify: null,
    user: "root",
  });
  assert.deepEqual(f.push, {
    debounce: 0,
    maxDelay: 1_000,
    reconcile: 300_000,
    concurrency: 8,
    maxDelete: 1000,
    maxDeletePercent: 50,
    deleteHold: 2_000,
    deleteWindow: 600_000,
    exclude: [".git"],
    maxPaths: 1000,
    stormEvents: 200,
    pollInterval: 10_000,
    retryMin: 1_000,
    retryMax: 60_000,
  });
  assert.deepEqual(f.fleet, {
    retention: 7 * 86_400_000,
    silentAfter: 300_000,
    reportRate: 12,
    reportRateTotal: 6000,
    maxClients: 5000,
  });
  // A default list is the fleet's own: changing it changes no other fleet's.
  f.push.exclude.push("*.tmp");
  const g = await parseFleet("tree: t\nprimary: {name: p, address: 10.0.0.1, path: /srv/t}\n", "g");
  assert.deepEqual(g.push.exclude, [".git"]);
});
