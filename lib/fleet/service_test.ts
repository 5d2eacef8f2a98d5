// What the fleet view takes from a relay, a server like any other: its
// /status read within bounds, and the replicas it lists checked field by
// field before they reach the page, /fleet.json or a terminal.
import assert from "node:assert/strict";
import { fetchStatus, pushedReplicas } from "./service.ts";
import type { ServerHost } from "../config/mod.ts";
import { MAX_STATUS_BODY } from "../http/mod.ts";

const spaces = new Uint8Array(64 * 1024).fill(0x20);
type Mode = "ok" | "endless" | "declared" | "error" | "junk";

/** A relay's health port on 127.0.0.1, answering /status as `mode()` says at each request. */
async function withRelay(mode: () => Mode, fn: (relay: ServerHost) => Promise<void>) {
  const ac = new AbortController();
  const answers: Record<Mode, () => Response> = {
    ok: () => Response.json({ role: "replica", replicas: [] }),
    endless: () => new Response(new ReadableStream({ pull: (c) => c.enqueue(spaces) })),
    declared: () => new Response(new Uint8Array(MAX_STATUS_BODY + 1).fill(0x20)),
    error: () => new Response("{}", { status: 500 }),
    junk: () => new Response("<html>not json</html>"),
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    () => answers[mode()](),
  );
  const health = { host: "127.0.0.1", port: server.addr.port };
  try {
    await fn({ name: "rsync2", address: "127.0.0.1", health } as ServerHost);
  } finally {
    ac.abort();
    await server.finished;
  }
}

Deno.test("fetchStatus: a relay's /status as JSON; a huge, failed or junk one is an error saying so", async () => {
  let mode: Mode = "ok";
  await withRelay(() => mode, async (relay) => {
    assert.deepEqual(await fetchStatus(relay), { role: "replica", replicas: [] });
    for (const huge of ["endless", "declared"] as const) {
      mode = huge;
      await assert.rejects(fetchStatus(relay), /^Error: \/status is larger than 1048576 bytes$/);
    }
    mode = "error";
    await assert.rejects(fetchStatus(relay), /^Error: HTTP 500$/);
    mode = "junk";
    await assert.rejects(fetchStatus(relay), /json/i);
  });
});

Deno.test("fetchStatus: nothing listening is 'connection refused'", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const relay = { name: "rsync2", address: "127.0.0.1", health: { host: "0.0.0.0", port } };
  await assert.rejects(fetchStatus(relay as ServerHost), /^Error: connection refused$/);
});

Deno.test("pushedReplicas: entries that fit are kept, field by field; the rest are left out", () => {
  const v = { seq: 3, commit: "c3", ref: "main", published_at: "2026-11-25T00:00:00Z" };
  assert.deepEqual(
    pushedReplicas([
      { name: "rsync3", state: "ok", version: v, lag_s: 1.5, last_error: null },
      { name: "rsync4", state: "failing", version: null, lag_s: NaN, last_error: "x".repeat(5000) },
      { name: "rsync5", state: "ok", version: { seq: "3" }, lag_s: 0 },
      { name: 5, state: "ok", version: null },
      { name: "rsync6", version: null },
      null,
      "rsync7",
      [],
      { name: "rsync8", state: "ok", lag_s: Infinity, last_error: 42 },
    ]),
    [
      { name: "rsync3", state: "ok", version: v, lag_s: 1.5, last_error: null },
      { name: "rsync4", state: "failing", version: null, lag_s: 0, last_error: "x".repeat(1000) },
    ],
  );
  for (const junk of [null, undefined, {}, "replicas", 42, { length: 3 }]) {
    assert.deepEqual(pushedReplicas(junk), [], String(junk));
  }
});

Deno.test("pushedReplicas: a relay listing without end is cut at a thousand", () => {
  const many = Array.from({ length: 100_000 }, (_, i) => ({
    name: `r${i}`,
    state: "ok",
    version: null,
  }));
  assert.equal(pushedReplicas(many).length, 1000);
});

Deno.test("pushedReplicas: a version with control characters is cleaned like any marker", () => {
  const [r] = pushedReplicas([{
    name: "rsync3",
    state: "ok",
    version: { seq: 1, commit: "c\x1b[2J", ref: "ma\nin", published_at: "t" },
  }]);
  assert.deepEqual(r.version, { seq: 1, commit: "c[2J", ref: "ma in", published_at: "t" });
});
