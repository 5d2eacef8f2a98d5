// The affinity table with a scripted clock: the window runs from the pick and
// later connections do not extend it, the table is bounded, and a backend the
// caller cannot use is not handed out. The pool's use of it: backends_test.ts.
import assert from "node:assert/strict";
import { AffinityTable } from "./affinity.ts";

function table(window: number, max?: number) {
  const clock = { now: 1_000_000 };
  const t = new AffinityTable<string>({ window, max, now: () => clock.now });
  return { t, clock };
}
const any = () => true;

Deno.test("affinity: a client stays with its backend for the window from the pick, not extended by later connections", () => {
  const { t, clock } = table(10_000);
  assert.equal(t.lookup("10.0.0.1", any), null);
  t.remember("10.0.0.1", "a");
  for (const at of [0, 4_000, 9_999]) {
    clock.now = 1_000_000 + at;
    assert.equal(t.lookup("10.0.0.1", any), "a", `at +${at}ms`);
  }
  assert.equal(t.lookup("10.0.0.2", any), null, "another address has no entry");
  clock.now = 1_000_000 + 10_000;
  assert.equal(t.lookup("10.0.0.1", any), null, "the window ran out although it was used");
  assert.equal(t.size, 0);
  // The next pick starts a new window.
  t.remember("10.0.0.1", "b");
  clock.now += 9_999;
  assert.equal(t.lookup("10.0.0.1", any), "b");
});

Deno.test("affinity: a backend the caller cannot use (out of rotation, tried) is not handed out; a new pick replaces the entry with a new window", () => {
  const { t, clock } = table(10_000);
  const rotation = new Set(["a", "b"]);
  const usable = (b: string) => rotation.has(b);
  t.remember("10.0.0.1", "a");
  rotation.delete("a");
  assert.equal(t.lookup("10.0.0.1", usable), null);
  clock.now += 6_000;
  t.remember("10.0.0.1", "b");
  rotation.add("a");
  clock.now += 6_000; // past the first entry's window, within the second's
  assert.equal(t.lookup("10.0.0.1", usable), "b");
  assert.equal(t.size, 1);
});

Deno.test("affinity: the table is bounded: expired entries are swept, the oldest evicted when full", () => {
  const { t, clock } = table(10_000, 3);
  for (const c of ["c1", "c2", "c3"]) {
    t.remember(c, "a");
    clock.now += 1_000;
  }
  t.remember("c4", "b");
  assert.equal(t.size, 3);
  assert.equal(t.lookup("c1", any), null, "the oldest went");
  assert.deepEqual(["c2", "c3", "c4"].map((c) => t.lookup(c, any)), ["a", "a", "b"]);
  // A renewed entry is the newest: the next eviction takes c3.
  t.remember("c2", "b");
  t.remember("c5", "a");
  assert.deepEqual(["c2", "c3", "c4", "c5"].map((c) => t.lookup(c, any)), ["b", null, "b", "a"]);
  // c4 was made at +3 s, c2 and c5 at +3 s too: all expire at +13 s, none before.
  clock.now = 1_000_000 + 12_999;
  assert.equal(t.size, 3);
  clock.now = 1_000_000 + 13_000;
  assert.equal(t.size, 0);
  // A flood of new addresses never holds more than the bound.
  for (let i = 0; i < 1_000; i++) t.remember(`flood${i}`, "a");
  assert.equal(t.size, 3);
});

Deno.test("affinity: a window of 0 is off: nothing remembered", () => {
  const { t } = table(0);
  assert.equal(t.enabled, false);
  t.remember("10.0.0.1", "a");
  assert.equal(t.lookup("10.0.0.1", any), null);
  assert.equal(t.size, 0);
});

Deno.test("affinity: a clock stepped back (NTP) ends the windows, never stretches them by the step", () => {
  const { t, clock } = table(10_000);
  t.remember("10.0.0.1", "a");
  t.remember("10.0.0.2", "b");
  clock.now -= 3_600_000;
  assert.equal(t.lookup("10.0.0.1", any), null);
  assert.equal(t.size, 0);
  t.remember("10.0.0.1", "b");
  clock.now += 10_000;
  assert.equal(t.lookup("10.0.0.1", any), null, "the new window is 10 s from its pick");
});
