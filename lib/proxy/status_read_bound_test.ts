// A backend's /status is read bounded: a hostile or broken health port
// answering an endless or huge body is a failed version read with a reason,
// not a proxy filling its memory. (The fleet view's reads of a relay's
// /status: lib/fleet/service_test.ts.)
import assert from "node:assert/strict";
import { MAX_STATUS_BODY } from "../http/mod.ts";
import { Backend, readStatusVersion } from "./backends.ts";

const chunk = new Uint8Array(64 * 1024).fill(0x20);

/** A /status on 127.0.0.1: "endless" streams spaces forever, "declared" says 2 MiB up front. */
async function withStatus(
  kind: "endless" | "declared" | "ok",
  fn: (port: number) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    () => {
      if (kind === "ok") {
        return Response.json({
          role: "replica",
          tree: { version: null },
          replicas: [],
        });
      }
      if (kind === "declared") return new Response(new Uint8Array(2 * MAX_STATUS_BODY).fill(0x20));
      return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }));
    },
  );
  try {
    await fn(server.addr.port);
  } finally {
    ac.abort();
    await server.finished;
  }
}

const backend = (port: number) =>
  new Backend({
    name: "rsync2",
    addr: { host: "127.0.0.1", port: 1 },
    health: { host: "127.0.0.1", port },
  }, 0);

for (const kind of ["endless", "declared"] as const) {
  Deno.test(`proxy: a backend's ${kind} huge /status is a failed version read`, async () => {
    await withStatus(kind, async (port) => {
      await assert.rejects(
        readStatusVersion(backend(port), 10_000),
        /\/status is larger than 1048576 bytes/,
      );
    });
  });
}

Deno.test("proxy: a backend's small /status still reads", async () => {
  await withStatus("ok", async (port) => {
    assert.equal(await readStatusVersion(backend(port), 10_000), null);
  });
});
