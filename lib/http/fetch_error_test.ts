// Why a fetch failed, in a few words, from fetch's real failures.
import assert from "node:assert/strict";
import { fetchFailure } from "./fetch_error.ts";

async function failureOf(url: string, init?: RequestInit): Promise<unknown> {
  try {
    const res = await fetch(url, init);
    await res.body?.cancel();
  } catch (e) {
    return e;
  }
  throw new Error(`${url} did not fail`);
}

Deno.test("fetchFailure: a refused connection, from a real fetch", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  assert.equal(
    fetchFailure(await failureOf(`http://127.0.0.1:${port}/status`)),
    "connection refused",
  );
});

Deno.test("fetchFailure: an aborted or timed-out fetch is 'timed out'", async () => {
  const ac = new AbortController();
  ac.abort();
  assert.equal(
    fetchFailure(await failureOf("http://127.0.0.1:9/", { signal: ac.signal })),
    "timed out",
  );
  const timeout = Object.assign(new Error("signal timed out"), { name: "TimeoutError" });
  assert.equal(fetchFailure(timeout), "timed out");
});

Deno.test("fetchFailure: the cause's last words, lower-cased, without the os error number", () => {
  const e = new TypeError("fetch failed", {
    cause: new Error(
      "error sending request for url (http://10.0.0.3:8873/status): client error (Connect): tcp connect error: Host is unreachable (os error 113)",
    ),
  });
  assert.equal(fetchFailure(e), "host is unreachable");
  assert.equal(fetchFailure(new Error("Plain message")), "plain message");
  assert.equal(fetchFailure("odd"), "odd");
  assert.equal(fetchFailure(undefined), "undefined");
});

Deno.test("fetchFailure: an acronym or a word in capitals keeps its case", () => {
  for (const kept of ["HTTP 500", "I/O error", "TLS handshake failed", "EOF", "X", ""]) {
    assert.equal(fetchFailure(new Error(kept)), kept);
  }
  assert.equal(fetchFailure(new Error("Étrange")), "étrange");
});
