// A slow mass deletion: a runaway cleanup job removes a share of the tree each
// delete_window, under push.max_delete and push.max_delete_percent every time.
// Window after window, most of the tree goes downstream, no publish between.
import assert from "node:assert/strict";
import { DeleteGuard } from "./delete_guard.ts";

Deno.test("delete guard: most of the tree going over several windows, with no publish, is blocked", () => {
  const window = 600_000;
  const g = new DeleteGuard({ maxDelete: 1000, maxDeletePercent: 50, hold: 2_000, window });
  g.entries = 2000; // the last whole push counted the tree
  let t = 0, n = 0, released = 0;
  // Each window: 40% of what is left (under 50%, under 1000), then quiet.
  for (let round = 0; round < 6 && g.state !== "blocked"; round++) {
    const left = g.entries!;
    const batch = Array.from(
      { length: Math.floor(left * 0.4) },
      () => ({ path: `f${n++}`, deep: false, gone: true }),
    );
    g.hold(batch, t);
    const s = g.step(t + 20_000);
    if (s.kind === "release") released += s.changes.length;
    t += window + 30_000;
  }
  assert.ok(
    released <= 1000,
    `${released} of 2000 entries went downstream, window by window (guard ${g.state})`,
  );
});

Deno.test("delete guard: a publish starts the loss count again", () => {
  const window = 600_000;
  const g = new DeleteGuard({ maxDelete: 1000, maxDeletePercent: 50, hold: 2_000, window });
  const gone = (p: string) => ({ path: p, deep: false, gone: true });
  g.entries = 100;
  g.hold(Array.from({ length: 40 }, (_, i) => gone(`a${i}`)), 0);
  assert.equal(g.step(20_000).kind, "release");
  assert.equal(g.lost, 40);
  g.lift(); // a publish; its whole push counts the new tree
  g.entries = 60;
  assert.equal(g.lost, 0);
  g.hold(Array.from({ length: 20 }, (_, i) => gone(`b${i}`)), window * 2);
  assert.equal(g.state, "holding", "20 of 60 since the publish is no mass deletion");
  assert.equal(g.step(window * 2 + 20_000).kind, "release");
  // Without a publish, the next 20 make 40 of 60: blocked, and /status says since when.
  g.hold(Array.from({ length: 20 }, (_, i) => gone(`c${i}`)), window * 4);
  assert.equal(g.state, "blocked");
  assert.match(g.reason!, /40 of 60 entries: .* since the last publish/);
});

Deno.test("delete guard: the loss a whole run's count shows is measured against the baseline", () => {
  const g = new DeleteGuard({
    maxDelete: 1000,
    maxDeletePercent: 50,
    hold: 2_000,
    window: 600_000,
  });
  assert.equal(g.lossAt(10), 0, "no baseline before a whole push");
  g.entries = 2000;
  assert.equal(g.baseline, 2000);
  g.entries = 1200; // a later whole push: the baseline stays
  assert.equal(g.baseline, 2000);
  assert.equal(g.lossAt(900), 1100);
  assert.equal(g.lossAt(2500), 0);
});
