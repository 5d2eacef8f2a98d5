// The primary's memory-bound defences of POST /report: a per-host limit, a
// limit over all hosts, and the signatures already used. Driven by explicit
// clocks, never the wall's.
import assert from "node:assert/strict";
import { GlobalRate, RateLimiter, ReplayCache } from "./report_guards.ts";

Deno.test("global rate: the rate over all hosts is a bucket that refills continuously", () => {
  const rate = new GlobalRate(120); // 2 a second
  for (let i = 0; i < 120; i++) assert.equal(rate.take(1000), 0);
  assert.equal(rate.take(1000), 500);
  assert.equal(rate.take(1499), 1);
  assert.equal(rate.take(1500), 0);
  assert.equal(rate.take(1500), 500);
  // A quiet minute fills it again, never beyond its size.
  for (let i = 0; i < 120; i++) assert.equal(rate.take(3_600_000), 0);
  assert.ok(rate.take(3_600_000) > 0);
});

Deno.test("global rate: a flood that stops waits about a second, not a minute", () => {
  const rate = new GlobalRate(60); // 1 a second
  for (let i = 0; i < 60; i++) rate.take(0);
  for (let i = 0; i < 1000; i++) rate.take(10); // refused, each one
  assert.ok(rate.take(10) <= 1000, "refusals cost no tokens");
  assert.equal(rate.take(1010), 0);
});

Deno.test("rate limiter: limit events per key per window; each key on its own", () => {
  const rl = new RateLimiter(2, 60_000);
  assert.equal(rl.take("web1", 1000), 0);
  assert.equal(rl.take("web1", 2000), 0);
  assert.equal(rl.take("web1", 3000), 60_000 + 1000 - 3000, "until the first ages out");
  assert.equal(rl.take("web2", 3000), 0);
  assert.equal(rl.take("web1", 60_999), 1, "the wait it said, to the millisecond");
  assert.equal(rl.take("web1", 61_000), 0);
  // Refused tries are not counted against the host.
  for (let i = 0; i < 100; i++) rl.take("web3", 100_000);
  assert.equal(rl.take("web3", 160_000), 0);
});

Deno.test("rate limiter: a crowd of hosts is forgotten once their window passes", () => {
  const rl = new RateLimiter(1, 1000);
  for (let i = 0; i < 10_000; i++) rl.take(`host${i}`, 0);
  // A window later every one of them is a stranger again.
  for (let i = 0; i < 10_000; i += 997) assert.equal(rl.take(`host${i}`, 1000), 0);
});

Deno.test("replay cache: a signature is good once within the window", () => {
  const rc = new ReplayCache(300_000);
  assert.equal(rc.remember("sig-a", 1000, 1000), true);
  assert.equal(rc.remember("sig-a", 1000, 2000), false);
  assert.equal(rc.remember("sig-b", 1500, 2000), true);
  // Long after, the old one is swept (a report that old is refused as stale anyway).
  assert.equal(rc.remember("sig-c", 1_000_000, 1_000_000), true);
  assert.equal(rc.remember("sig-a", 1000, 1_000_000), true);
  assert.equal(rc.remember("sig-c", 1_000_000, 1_000_001), false);
});
