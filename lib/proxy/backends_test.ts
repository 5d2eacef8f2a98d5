// The backend pool's state machine, rotation and version lag, driven check by
// check with a scripted check result and clock (the end-to-end behaviour with
// real daemons is in proxy_test.ts).
import assert from "node:assert/strict";
import { type Backend, BackendPool } from "./backends.ts";
import { backendSpecs, parseFleet } from "../config/mod.ts";
import { Logger } from "../core/mod.ts";
import type { VersionMarker } from "../version/mod.ts";

interface Script {
  ok: Record<string, boolean>;
  seq: Record<string, number | null | undefined>;
  now: number;
  /** The monotonic clock, when the test drives one apart from the wall clock. */
  mono: number;
  lines: string[];
}

function pool(
  names: string[],
  opts: { fall?: number; rise?: number; grace?: number; affinity?: number; mono?: boolean } = {},
) {
  const s: Script = { ok: {}, seq: {}, now: 1_000_000, mono: 5_000, lines: [] };
  for (const n of names) s.ok[n] = true;
  const p = new BackendPool(
    names.map((name, i) => ({
      name,
      addr: { host: "127.0.0.1", port: 1000 + i },
      health: { host: "127.0.0.1", port: 2000 + i },
    })),
    {
      fall: opts.fall ?? 2,
      rise: opts.rise ?? 2,
      versionGrace: opts.grace ?? 10_000,
      affinity: opts.affinity,
      checkTimeout: 100,
      module: "plugins",
      proxyProtocol: false,
      log: new Logger({ sink: (l) => s.lines.push(l) }),
      now: () => s.now,
      // One scripted clock times both, unless a test steps them apart.
      monotonic: opts.mono ? () => s.mono : () => s.now,
      check: (b: Backend) =>
        Promise.resolve({ ok: s.ok[b.name], ms: 1, error: s.ok[b.name] ? null : "refused" }),
      readVersion: (b: Backend) => {
        const seq = s.seq[b.name];
        if (seq === undefined) return Promise.reject(new Error("no status"));
        return Promise.resolve(seq === null ? null : marker(seq));
      },
    },
  );
  return { p, s };
}

const marker = (seq: number): VersionMarker => ({
  seq,
  commit: "c0ffee",
  ref: "main",
  published_at: "2026-01-01T00:00:00Z",
});
const names = (bs: readonly Backend[]) => bs.map((b) => b.name);
const picks = (p: BackendPool, n: number) => Array.from({ length: n }, () => p.pick()?.name);

Deno.test("pool: the first check decides; then fall and rise count", async () => {
  const { p, s } = pool(["a", "b"]);
  s.ok.b = false;
  await p.checkAll();
  assert.equal(p.backends[0].state, "up");
  assert.equal(p.backends[1].state, "down");
  assert.deepEqual(picks(p, 3), ["a", "a", "a"]);

  s.ok.b = true;
  await p.checkAll();
  assert.equal(p.backends[1].state, "down", "one pass is not rise=2");
  await p.checkAll();
  assert.equal(p.backends[1].state, "up");
  assert.deepEqual(picks(p, 4), ["a", "b", "a", "b"]);

  s.ok.a = false;
  await p.checkAll();
  assert.equal(p.backends[0].state, "up", "one failure is not fall=2");
  s.ok.a = true;
  await p.checkAll();
  s.ok.a = false;
  await p.checkAll();
  assert.equal(p.backends[0].state, "up", "failures must be consecutive");
  await p.checkAll();
  assert.equal(p.backends[0].state, "down");
  assert.match(p.backends[0].reason!, /2 failed checks: refused/);
  assert.deepEqual(names(p.rotation), ["b"]);
  assert.ok(s.lines.some((l) => /msg="backend down".*backend=a/.test(l)));
});

Deno.test("pool: round robin alternates and skips what was tried", async () => {
  const { p } = pool(["a", "b", "c"]);
  await p.checkAll();
  assert.deepEqual(picks(p, 6), ["a", "b", "c", "a", "b", "c"]);
  const tried = new Set([p.backends[1]]);
  assert.equal(p.pick(tried)?.name, "a");
  assert.equal(p.pick(new Set(p.backends)), null);
});

Deno.test("pool: a client address keeps its backend for the affinity window while it is in rotation; other addresses round robin", async () => {
  const { p, s } = pool(["a", "b"], { grace: 60_000, affinity: 10_000 });
  s.seq = { a: 1, b: 2 };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"], "a lags within the grace: both in rotation");
  const from = (client: string, n: number, tried?: Set<Backend>) =>
    Array.from({ length: n }, () => p.pick(tried, client)?.name);
  assert.deepEqual(from("10.0.0.1", 3), ["a", "a", "a"]);
  assert.deepEqual([...from("10.0.0.2", 2), ...from("10.0.0.3", 1)], ["b", "b", "a"]);
  assert.deepEqual(p.affinity, { window: 10_000, clients: 3 });
  // Tried for this connection (its connect failed): the next one, which the client keeps.
  assert.equal(p.pick(new Set([p.backends[0]]), "10.0.0.1")?.name, "b");
  assert.deepEqual(from("10.0.0.1", 2), ["b", "b"]);
  // Out of rotation: not used; the client gets the normal pick and keeps it.
  s.ok.b = false;
  await p.checkAll();
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a"]);
  assert.deepEqual([...from("10.0.0.1", 2), ...from("10.0.0.2", 1)], ["a", "a", "a"]);
  s.ok.b = true;
  await p.checkAll();
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"]);
  assert.deepEqual(from("10.0.0.1", 2), ["a", "a"]);
  // The window is not extended by use: past it, the round robin decides again.
  s.now += 9_999;
  assert.deepEqual(from("10.0.0.1", 1), ["a"]);
  s.now += 1;
  assert.equal(p.affinity.clients, 0);
  assert.notEqual(p.pick(undefined, "10.0.0.1"), p.pick(undefined, "10.0.0.7"));
  // Off: plain round robin for everyone.
  const off = pool(["a", "b"]);
  await off.p.checkAll();
  assert.deepEqual(
    Array.from({ length: 4 }, () => off.p.pick(undefined, "10.0.0.1")?.name),
    ["a", "b", "a", "b"],
  );
  assert.deepEqual(off.p.affinity, { window: 0, clients: 0 });
});

Deno.test("pool: a failed connect takes a backend down until rise checks pass", async () => {
  const { p } = pool(["a", "b"]);
  await p.checkAll();
  p.markFailed(p.backends[0], "connection refused");
  assert.equal(p.backends[0].state, "down");
  assert.equal(p.backends[0].connectFailures, 1);
  assert.deepEqual(names(p.rotation), ["b"]);
  await p.checkAll();
  assert.equal(p.backends[0].state, "down");
  await p.checkAll();
  assert.equal(p.backends[0].state, "up");
  p.markFailed(p.backends[0], "x");
  p.markFailed(p.backends[1], "y");
  assert.equal(p.pick(), null);
  assert.equal(p.whyNone(), "a: connect failed: x; b: connect failed: y");
});

Deno.test("pool: a lagging backend leaves after the grace period and returns when caught up", async () => {
  const { p, s } = pool(["a", "b"], { grace: 5_000 });
  s.seq = { a: 3, b: 3 };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"]);
  s.seq.a = 4;
  await p.checkAll();
  assert.equal(p.newestSeq, 4);
  assert.deepEqual(names(p.rotation), ["a", "b"], "within the grace period");
  s.now += 5_000;
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a"]);
  assert.equal(p.backends[1].lagging, true);
  assert.ok(s.lines.some((l) => /backend lags; out of rotation.*backend=b seq=3 newest=4/.test(l)));
  s.seq.b = 4;
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"]);
  assert.equal(p.degraded, null);
});

Deno.test("pool: a wall clock stepped back (NTP) while a backend lags keeps it in rotation no longer than the grace period", async () => {
  const { p, s } = pool(["a", "b"], { grace: 5_000, mono: true });
  s.seq = { a: 3, b: 3 };
  await p.checkAll();
  s.seq.a = 4;
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"], "within the grace period");
  // An hour back on the wall clock, the grace period's length on the monotonic one.
  s.now -= 3_600_000;
  s.mono += 5_000;
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a"]);
  assert.ok(
    s.lines.some((l) => /backend lags; out of rotation.*for=5(\.0)?s/.test(l)),
    s.lines.join("\n"),
  );
});

Deno.test("pool: when the newest backend goes down, the newest left serves, and /status says so", async () => {
  const { p, s } = pool(["a", "b", "c"], { grace: 0, fall: 1 });
  s.seq = { a: 7, b: 6, c: 5 };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a"]);
  s.ok.a = false;
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["b"]);
  assert.match(p.degraded!, /serving seq 6: seq 7 was seen on a, which is not up/);
});

Deno.test("pool: unknown versions count as behind once one is known; a status blip keeps the last", async () => {
  const { p, s } = pool(["a", "b"], { grace: 0 });
  s.seq = { a: undefined, b: undefined };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "b"], "nobody's version known: all serve");
  s.seq = { a: 2, b: undefined };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a"]);
  s.seq = { a: undefined, b: 2 };
  await p.checkAll();
  assert.equal(p.backends[0].seq, 2, "the last known version is kept");
  assert.match(p.backends[0].versionError!, /no status/);
  assert.deepEqual(names(p.rotation), ["a", "b"]);
  s.seq = { a: null, b: 2 };
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["b"], "a tree without a marker is older than any");
});

Deno.test("pool: SIGHUP update keeps known backends and adds new ones after a check", async () => {
  const { p, s } = pool(["a", "b"]);
  s.ok.c = true;
  await p.checkAll();
  p.backends[0].connections = 5;
  const r = p.update([
    { name: "a", addr: { host: "127.0.0.1", port: 1000 }, health: null },
    { name: "c", addr: { host: "127.0.0.1", port: 1002 }, health: null },
  ]);
  assert.deepEqual(r, { added: ["c"], removed: ["b"] });
  assert.equal(p.backends[0].connections, 5);
  assert.deepEqual(names(p.rotation), ["a"], "c is new until checked");
  await p.checkAll();
  assert.deepEqual(names(p.rotation), ["a", "c"]);
});

Deno.test("backendSpecs: PROXY protocol sends the proxy to proxy_listen; wildcards dial the address", async () => {
  const fleet = await parseFleet(
    `tree: t
primary: {name: r1, address: 10.0.0.2, listen: "0.0.0.0:873", path: /t}
replicas:
  - {name: r2, address: 10.0.0.3, path: /t, proxy_listen: "10.0.0.3:9000"}
proxy: {listen: "10.0.0.9:873", proxy_protocol: true}
`,
    "f.yaml",
  );
  assert.deepEqual(backendSpecs(fleet), [
    {
      name: "r1",
      addr: { host: "10.0.0.2", port: 874 },
      health: { host: "10.0.0.2", port: 8873 },
    },
    {
      name: "r2",
      addr: { host: "10.0.0.3", port: 9000 },
      health: { host: "10.0.0.3", port: 8873 },
    },
  ]);
});

Deno.test("pool: served is the oldest version in rotation; a notice's recheck moves it without a check round", async () => {
  const { p, s } = pool(["a", "b"]);
  s.seq = { a: 3, b: 3 };
  await p.checkAll();
  assert.equal(p.served?.seq, 3);
  s.seq.a = 4;
  await p.recheckVersion("a");
  assert.equal(p.backends[0].seq, 4, "read again at once");
  assert.equal(p.served?.seq, 3, "b, in rotation, still serves 3");
  s.seq.b = 4;
  await p.recheckVersion("b");
  assert.equal(p.served?.seq, 4);
  await p.recheckVersion("nobody");
  assert.equal(p.backends[0].lastCheck?.at, p.backends[1].lastCheck?.at, "no health check ran");
});

Deno.test("pool: a version read that started first never overwrites one that started later", async () => {
  const gates: ((seq: number) => void)[] = [];
  const p = new BackendPool([{
    name: "a",
    addr: { host: "127.0.0.1", port: 1000 },
    health: { host: "127.0.0.1", port: 2000 },
  }], {
    fall: 2,
    rise: 2,
    versionGrace: 10_000,
    checkTimeout: 100,
    module: "plugins",
    proxyProtocol: false,
    log: new Logger({ sink: () => {} }),
    check: () => Promise.resolve({ ok: true, ms: 1, error: null }),
    readVersion: () => new Promise((r) => gates.push((seq) => r(marker(seq)))),
  });
  const slow = p.recheckVersion("a"); // a round's read: started first, answers last
  const fast = p.recheckVersion("a"); // a notice's read
  gates[1](5);
  await fast;
  gates[0](4);
  await slow;
  assert.equal(p.backends[0].seq, 5);
});
