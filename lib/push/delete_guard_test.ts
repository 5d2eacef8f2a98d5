// The mass-delete guard's state machine, as pure logic: held, released,
// blocked, restored, lifted; net counts and the proportional limit.
import assert from "node:assert/strict";
import { DeleteGuard, massDeleteReason } from "./delete_guard.ts";

const gone = (path: string) => ({ path, deep: true, gone: true });
const limits = { maxDelete: 10, maxDeletePercent: 50, hold: 100, window: 60_000 };

Deno.test("delete guard: deletions wait for quiet, then go together", () => {
  const g = new DeleteGuard(limits);
  g.entries = 1000;
  assert.equal(g.state, "pushing");
  g.hold([gone("a"), gone("b")], 0);
  assert.equal(g.state, "holding");
  assert.deepEqual(g.step(50), { kind: "wait", ms: 50 });
  g.hold([gone("c")], 80); // the quiet starts again
  assert.deepEqual(g.step(100), { kind: "wait", ms: 80 });
  const s = g.step(180);
  assert.equal(s.kind, "release");
  assert.deepEqual(s.kind === "release" && s.changes.map((c) => c.path), ["a", "b", "c"]);
  assert.equal(g.state, "pushing");
  assert.equal(g.net(180), 3, "sent deletions still count within the window");
  assert.equal(g.net(180 + 60_001), 0, "and no longer after it");
});

Deno.test("delete guard: a steady trickle still goes after 10× the hold", () => {
  const g = new DeleteGuard({ ...limits, maxDelete: 1000 });
  for (let t = 0; t <= 1500; t += 50) {
    g.hold([gone(`f${t}`)], t);
    if (g.step(t).kind === "release") {
      assert.ok(t >= 10 * limits.hold, `released at ${t} ms, before the cap`);
      return;
    }
  }
  assert.fail("never released");
});

Deno.test("delete guard: past max_delete within the window it blocks, nothing is released", () => {
  const g = new DeleteGuard(limits);
  g.hold(Array.from({ length: 8 }, (_, i) => gone(`a${i}`)), 0);
  assert.equal(g.step(200).kind, "release"); // 8 went
  g.hold([gone("b1"), gone("b2"), gone("b3")], 300); // 11 net within the window
  assert.equal(g.state, "blocked");
  assert.match(g.reason!, /^11 net, more than push\.max_delete 10 within 1m$/);
  assert.equal(g.step(10_000).kind, "blocked");
  // The files come back: the block lifts by itself, and what is left goes.
  assert.equal(g.restored((p) => p !== "b3", 10_000), true);
  assert.equal(g.state, "holding");
  const s = g.step(10_200);
  assert.deepEqual(s.kind === "release" && s.changes.map((c) => c.path), ["b3"]);
});

Deno.test("delete guard: creations offset deletions (a move is no loss)", () => {
  const g = new DeleteGuard(limits);
  g.created(30, 0);
  g.hold(Array.from({ length: 30 }, (_, i) => gone(`old/${i}`)), 0);
  assert.equal(g.state, "holding");
  assert.equal(g.net(0), 0);
});

Deno.test("delete guard: most of the tree going is blocked, a lift releases it", () => {
  const g = new DeleteGuard({ ...limits, maxDelete: 1000 });
  g.entries = 60;
  g.hold(Array.from({ length: 40 }, (_, i) => gone(`f${i}`)), 0);
  assert.equal(g.state, "blocked");
  assert.match(g.reason!, /40 of 60 entries: more than push\.max_delete_percent 50%/);
  assert.equal(g.lift().length, 40);
  assert.equal(g.state, "pushing");
  assert.equal(g.net(1), 0);
});

Deno.test("delete guard: the tree's size follows what was created since the last whole push", () => {
  const g = new DeleteGuard({ ...limits, maxDelete: 1000 });
  g.entries = 2; // a tiny tree at start
  g.created(400, 0); // then a directory of 400 arrives
  assert.equal(g.entries, 402);
  g.hold(Array.from({ length: 150 }, (_, i) => gone(`f${i}`)), 10_000_000);
  assert.equal(g.state, "holding", "150 of 402 is no mass deletion");
  g.entries = 500; // the next whole push counts again
  assert.equal(g.entries, 500);
});

Deno.test("delete guard: allowed (the flag, a publish) never blocks", () => {
  const g = new DeleteGuard(limits);
  g.allowed = true;
  g.hold(Array.from({ length: 50 }, (_, i) => gone(`f${i}`)), 0);
  assert.equal(g.state, "holding");
  assert.equal(g.step(100).kind, "release");
});

Deno.test("mass delete reason: absolute and proportional limits", () => {
  assert.equal(massDeleteReason(10, 10, 50, 15), null);
  assert.match(massDeleteReason(11, 10, 50, null)!, /11 net, more than push\.max_delete 10/);
  assert.equal(massDeleteReason(8, 1000, 50, 10), null, "a small tree's cleanup");
  assert.match(massDeleteReason(600, 1000, 50, 1000)!, /600 of 1000 entries/);
  assert.equal(massDeleteReason(500, 1000, 50, 1000), null);
  assert.equal(massDeleteReason(900, 1000, 100, 1000), null, "100% never applies");
  assert.equal(massDeleteReason(252, 1000, 100, 2), null, "not even past a stale count");
});

Deno.test("delete guard: after a lift, rebase takes the kept entries as the baseline; a whole push's stays", () => {
  const g = new DeleteGuard({ ...limits, maxDelete: 1000, maxDeletePercent: 100 });
  g.entries = 100;
  g.lift();
  assert.equal(g.baseline, null);
  g.created(20, 0); // the publish's new files
  g.rebase();
  assert.equal(g.baseline, 120);
  g.hold([gone("a"), gone("b")], 10);
  assert.equal(g.lost, 2, "held deletions count as lost");
  g.rebase();
  assert.equal(g.baseline, 120, "a baseline once set stays");
});
