// A deadline calls its expiry once when the time is up, and never after the
// exchange said it was done.
import assert from "node:assert/strict";
import { deadline } from "./deadline.ts";

const aborted = (s: AbortSignal) =>
  new Promise<void>((r) => s.aborted ? r() : s.addEventListener("abort", () => r()));

Deno.test("deadline: expires once, aborting its signal with a timeout", async () => {
  let calls = 0;
  const dl = deadline(1, () => calls++);
  assert.equal(dl.expired, false);
  await aborted(dl.signal);
  assert.equal(dl.expired, true);
  assert.equal(calls, 1);
  assert.equal((dl.signal.reason as Error).name, "TimeoutError");
  dl.done();
  dl.done();
  assert.equal(calls, 1);
});

Deno.test("deadline: done() first means onExpire is never called", async () => {
  let calls = 0;
  const dl = deadline(1, () => calls++);
  dl.done();
  await aborted(dl.signal);
  assert.equal(calls, 0);
  assert.equal(dl.expired, true, "the signal itself still times out");
});

Deno.test("deadline: without onExpire it is a plain timeout signal", async () => {
  const dl = deadline(1);
  await aborted(dl.signal);
  assert.equal(dl.expired, true);
});
