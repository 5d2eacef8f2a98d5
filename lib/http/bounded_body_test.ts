// A peer's body is read up to a cap and no further: an endless stream, a
// huge declared length or a lying one costs at most the cap.
import assert from "node:assert/strict";
import { MAX_STATUS_BODY, readLimited } from "./bounded_body.ts";

const enc = new TextEncoder();

/** An endless body that records whether the reader cancelled it. */
function endless(chunk = 64 * 1024) {
  const state = { pulled: 0, cancelled: false };
  const bytes = new Uint8Array(chunk).fill(0x20);
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      state.pulled += bytes.length;
      c.enqueue(bytes);
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { stream, state };
}

Deno.test("readLimited: a body within the cap is its text; exactly the cap too", async () => {
  assert.equal(await readLimited(new Response('{"role":"replica"}'), 100), '{"role":"replica"}');
  assert.equal(await readLimited(new Response("x".repeat(100)), 100), "x".repeat(100));
  assert.equal(await readLimited(new Response(null), 100), "");
  assert.equal(
    await readLimited(new Request("http://x/", { method: "POST", body: "report" }), 100),
    "report",
  );
});

Deno.test("readLimited: one byte past the cap is null", async () => {
  assert.equal(await readLimited(new Response("x".repeat(101)), 100), null);
  assert.equal(await readLimited(new Response(""), 0), "");
  assert.equal(await readLimited(new Response("x"), 0), null);
});

Deno.test("readLimited: an endless body stops at the cap and is cancelled", async () => {
  const { stream, state } = endless();
  assert.equal(await readLimited(new Response(stream), MAX_STATUS_BODY), null);
  assert.equal(state.cancelled, true);
  assert.ok(state.pulled <= MAX_STATUS_BODY + 3 * 64 * 1024, `${state.pulled} bytes pulled`);
});

Deno.test("readLimited: a declared length past the cap is refused before any byte is read", async () => {
  const { stream, state } = endless();
  const res = new Response(stream, { headers: { "content-length": String(MAX_STATUS_BODY + 1) } });
  assert.equal(await readLimited(res, MAX_STATUS_BODY), null);
  assert.equal(state.cancelled, true);
  assert.ok(state.pulled <= 3 * 64 * 1024, `${state.pulled} bytes pulled`);
});

Deno.test("readLimited: a declared length that lies small is no way past the cap", async () => {
  const { stream, state } = endless(1000);
  const res = new Response(stream, { headers: { "content-length": "10" } });
  assert.equal(await readLimited(res, 10_000), null);
  assert.equal(state.cancelled, true);
  // A declared length that is not a number is ignored: the bytes count.
  const odd = new Response("abc", { headers: { "content-length": "lots" } });
  assert.equal(await readLimited(odd, 10), "abc");
});

Deno.test("readLimited: UTF-8 split across chunks decodes whole; bad bytes do not throw", async () => {
  const bytes = enc.encode("café 日本");
  const split = new ReadableStream<Uint8Array>({
    start(c) {
      for (const b of bytes) c.enqueue(new Uint8Array([b]));
      c.close();
    },
  });
  assert.equal(await readLimited(new Response(split), 100), "café 日本");
  assert.equal(await readLimited(new Response(new Uint8Array([0xff, 0x41])), 100), "\ufffdA");
});
