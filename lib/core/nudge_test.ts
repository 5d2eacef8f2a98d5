// A nudge ends a wait early, and a poke with nobody waiting is kept for the next wait.
import assert from "node:assert/strict";
import { Nudge } from "./nudge.ts";

Deno.test("nudge: a poke ends a long wait", async () => {
  const n = new Nudge();
  const waiting = n.wait(60_000);
  n.poke();
  assert.equal(await waiting, true);
});

Deno.test("nudge: a poke while nobody waits ends the next wait at once, only that one", async () => {
  const n = new Nudge();
  n.poke();
  n.poke();
  assert.equal(await n.wait(60_000), true);
  assert.equal(await n.wait(1), false, "both pokes were one");
});

Deno.test("nudge: the wait ends at its time, or when the signal aborts", async () => {
  const n = new Nudge();
  assert.equal(await n.wait(1), false);
  const ac = new AbortController();
  const waiting = n.wait(60_000, ac.signal);
  ac.abort();
  assert.equal(await waiting, false);
  assert.equal(await n.wait(60_000, ac.signal), false, "an aborted signal does not wait");
});
