// Per-host splay: deterministic, in range, spread evenly over the window.
import assert from "node:assert/strict";
import { sleep, splayDelay } from "./splay.ts";

Deno.test("splay: the same host always gets the same delay, within [0, splay)", () => {
  for (const name of ["web1", "web2", "db-17.example.com", "", "ü"]) {
    const d = splayDelay(name, 30_000);
    assert.equal(d, splayDelay(name, 30_000));
    assert.ok(d >= 0 && d < 30_000, `${name}: ${d}`);
    assert.ok(Number.isInteger(d));
  }
  assert.equal(splayDelay("web1", 0), 0);
  assert.ok(splayDelay("web1", 1) === 0);
});

Deno.test("splay: 500 hosts spread over the window (no thundering herd)", () => {
  const buckets = new Array(10).fill(0);
  for (let i = 1; i <= 500; i++) buckets[Math.floor(splayDelay(`web${i}`, 30_000) / 3000)]++;
  // Each 3 s slice gets 50 hosts on average; a poor hash piles them up.
  for (const b of buckets) assert.ok(b >= 25 && b <= 75, `uneven: ${buckets.join(",")}`);
  const seconds = new Set(
    Array.from({ length: 500 }, (_, i) => Math.floor(splayDelay(`web${i}`, 30_000) / 1000)),
  );
  assert.equal(seconds.size, 30, "every second of the window is used");
});

Deno.test("splay: sleep ends early on abort", async () => {
  const ac = new AbortController();
  const t0 = Date.now();
  setTimeout(() => ac.abort(), 20);
  assert.equal(await sleep(10_000, ac.signal), false);
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(await sleep(1), true);
});
