// The health endpoint as a client sees it, through the app itself: /healthz
// says ok or why not, /status is JSON, /metrics is Prometheus text, and the
// endpoint is read-only.
import assert from "node:assert/strict";
import { healthApp, type HealthSource, serveHealth } from "./health.ts";
import { Registry } from "./metrics.ts";
import { EnvironmentError, VERSION } from "../core/mod.ts";

function source(over: Partial<HealthSource> = {}): HealthSource {
  return {
    role: "replica",
    name: "rsync2",
    problem: () => null,
    status: () => ({ tree: { version: null } }),
    registry: new Registry(),
    ...over,
  };
}

Deno.test("health: /healthz is 200 ok, or 503 with the reason", async () => {
  let problem: string | null = null;
  const app = healthApp(source({ problem: () => problem }));
  let res = await app.request("/healthz");
  assert.deepEqual([res.status, await res.text()], [200, "ok\n"]);
  problem = "rsync daemon down: exited with code 10";
  res = await app.request("/healthz");
  assert.deepEqual([res.status, await res.text()], [503, `${problem}\n`]);
});

Deno.test("health: /status merges the role's fields into who, what version and how healthy", async () => {
  const app = healthApp(source({
    problem: () => "degraded",
    status: () => Promise.resolve({ replicas: [], name: "from-status" }),
  }));
  const res = await app.request("/status");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  assert.equal(body.role, "replica");
  assert.equal(body.fanout_version, VERSION);
  assert.equal(body.healthy, false);
  assert.equal(body.problem, "degraded");
  assert.deepEqual(body.replicas, []);
  assert.equal(body.name, "from-status", "the role's fields come last");
  assert.ok(!Number.isNaN(Date.parse(body.started_at)));
  assert.ok(Number.isInteger(body.uptime_s) && body.uptime_s >= 0);
});

Deno.test("health: /metrics is the registry in Prometheus' text format", async () => {
  const registry = new Registry();
  registry.counter("fanout_pushes_total", "Pushes.").inc();
  const res = await healthApp(source({ registry })).request("/metrics");
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.match(await res.text(), /^fanout_pushes_total 1$/m);
});

Deno.test("health: read-only: other methods get 405 with Allow; unknown paths 404", async () => {
  const app = healthApp(source());
  for (const path of ["/", "/healthz", "/status", "/metrics"]) {
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      const res = await app.request(path, { method, body: method === "DELETE" ? null : "x" });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.get("allow"), "GET, HEAD");
      await res.body?.cancel();
    }
  }
  for (const path of ["/nope", "/healthz/x", "/../etc/passwd", "/%00", `/${"a".repeat(10_000)}`]) {
    const res = await app.request(path);
    assert.deepEqual([res.status, await res.text()], [404, "not found\n"], path.slice(0, 30));
  }
  const root = await app.request("/");
  assert.equal(await root.text(), "fanout replica rsync2: /healthz /status /metrics\n");
});

Deno.test("health: a failing status is a bare 500, the error's words kept inside", async () => {
  const app = healthApp(source({
    status: () => {
      throw new Error("secret path /etc/fanout/rsync.secret");
    },
  }));
  const res = await app.request("/status");
  assert.deepEqual([res.status, await res.text()], [500, "internal error\n"]);
});

Deno.test("health: extend adds routes next to the built-in ones", async () => {
  const app = healthApp(source(), (a) => a.get("/fleet.json", (c) => c.json({ ok: true })));
  assert.deepEqual(await (await app.request("/fleet.json")).json(), { ok: true });
  assert.equal((await app.request("/healthz")).status, 200);
});

Deno.test("serveHealth: serves on the address; a taken one is an EnvironmentError naming it", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    assert.throws(
      () => serveHealth({ host: "127.0.0.1", port }, healthApp(source())),
      (e) =>
        e instanceof EnvironmentError &&
        e.message === `cannot serve health on 127.0.0.1:${port}: address in use`,
    );
  } finally {
    taken.close();
  }
  const server = serveHealth({ host: "127.0.0.1", port }, healthApp(source()));
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(await res.text(), "ok\n");
  } finally {
    await server.shutdown();
  }
});
