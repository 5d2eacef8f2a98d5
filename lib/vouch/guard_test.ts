import assert from "node:assert/strict";
import { Logger } from "../core/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import { RepairPace, type TreeChecker, TreeGuard, type Vouch } from "./mod.ts";

function markerOf(seq: number): VersionMarker {
  return { seq, commit: `c${seq}`, ref: "main", published_at: "2026-12-04T00:00:00.000Z" };
}

const verified = (seq: number): Vouch => ({
  state: "verified",
  marker: markerOf(seq),
  by: "walk",
  hashed: 1,
});
const why = (seq: number) => `the tree is not version ${seq}'s manifest at "a.txt"`;
const refused = (seq: number): Vouch => ({
  state: "refused",
  marker: markerOf(seq),
  why: why(seq),
  path: "a.txt",
});

/** A checker answering what `next` says, recording whether each check was whole. */
class FakeChecker implements TreeChecker {
  next: Vouch = { state: "unchecked", marker: null, why: "no version yet" };
  wholes: boolean[] = [];
  changes = 0;
  losses = 0;
  /** While set, a check waits for it. */
  hold: Promise<void> | null = null;
  async check(whole: boolean): Promise<Vouch> {
    this.wholes.push(whole);
    if (this.hold) await this.hold;
    return this.next;
  }
  changed(): void {
    this.changes++;
  }
  lost(): void {
    this.losses++;
  }
  settled(): Promise<void> {
    return Promise.resolve();
  }
}

interface Rig {
  guard: TreeGuard;
  checker: FakeChecker;
  clock: { now: number };
  announced: (VersionMarker | null)[];
  logs: { level: string; msg: string }[];
  repairs: { signal: AbortSignal; done: (failed: string | null) => void }[];
  watched: { now: boolean };
  /** While true, `announce` throws (a daemon's config not rewritten, say). */
  announceFails: { now: boolean };
}

function rig(opts: { upstream?: boolean } = {}): Rig {
  const checker = new FakeChecker();
  const clock = { now: 1_000_000 };
  const announced: (VersionMarker | null)[] = [];
  const logs: { level: string; msg: string }[] = [];
  const repairs: Rig["repairs"] = [];
  const watched = { now: true };
  const announceFails = { now: false };
  const log = new Logger({ format: "json", sink: (line) => logs.push(JSON.parse(line)) });
  const guard = new TreeGuard({
    checker,
    announce: (v) => {
      announced.push(v);
      if (announceFails.now) {
        return Promise.reject(new Error("rsyncd.conf: no space left on device"));
      }
      return Promise.resolve();
    },
    repair: opts.upstream === false ? null : {
      upstream: "rsync1",
      run: (signal) => new Promise((done) => repairs.push({ signal, done })),
    },
    watched: () => watched.now,
    reconcileMs: 600_000,
    pollMs: 60_000,
    log,
    now: () => clock.now,
    pace: new RepairPace([10_000, 300_000]),
  });
  return { guard, checker, clock, announced, logs, repairs, watched, announceFails };
}

async function tick(r: Rig): Promise<void> {
  r.guard.tick();
  await r.guard.idle();
}

Deno.test("guard: the first check announces what it finds, even none; the same version again announces nothing", async () => {
  const r = rig();
  assert.equal(r.guard.state, "unchecked");
  assert.deepEqual(r.guard.checkStatus(), { state: "pending" });
  await tick(r);
  assert.equal(r.guard.state, "vouched");
  assert.deepEqual(r.announced, [null]);
  r.checker.next = verified(1);
  await tick(r);
  await tick(r);
  assert.deepEqual(r.announced, [null, markerOf(1)]);
  assert.equal(r.guard.version?.seq, 1);
  assert.deepEqual(r.guard.checkStatus(), { state: "verified", by: "walk", hashed: 1 });
  assert.equal(r.guard.problem(), null);
});

Deno.test("guard: a refused tree announces none, says why, and holding its version again is logged", async () => {
  const r = rig({ upstream: false });
  r.checker.next = verified(1);
  await tick(r);
  r.checker.next = refused(1);
  await tick(r);
  assert.equal(r.guard.state, "refused");
  assert.deepEqual(r.announced, [markerOf(1), null]);
  assert.equal(r.guard.problem(), `announcing no version: ${why(1)}`);
  assert.deepEqual(r.guard.checkStatus(), {
    state: "refused",
    why: why(1),
    path: "a.txt",
  });
  await tick(r);
  r.checker.next = verified(2);
  await tick(r);
  assert.equal(r.guard.state, "vouched");
  assert.deepEqual(r.announced, [markerOf(1), null, markerOf(2)]);
  assert.deepEqual(r.logs.map((l) => `${l.level} ${l.msg}`), [
    "warn announcing no version: the tree is not the version its marker names",
    "info the tree holds its version again",
  ]);
});

Deno.test("guard: checks are whole every reconcile while watched, every poll interval unwatched, every 5 s refused", async () => {
  const r = rig({ upstream: false });
  r.checker.next = verified(1);
  await tick(r);
  r.clock.now += 599_999;
  await tick(r);
  r.clock.now += 1;
  await tick(r);
  assert.deepEqual(r.checker.wholes, [true, false, true]);
  r.watched.now = false;
  r.clock.now += 600_000;
  await tick(r); // whole (due), next in a poll interval
  r.clock.now += 60_000;
  await tick(r);
  assert.deepEqual(r.checker.wholes.slice(3), [true, true]);
  r.checker.next = refused(1);
  r.clock.now += 60_000;
  await tick(r);
  r.clock.now += 4_999;
  await tick(r);
  r.clock.now += 1;
  await tick(r);
  assert.deepEqual(r.checker.wholes.slice(5), [true, false, true]);
});

Deno.test("guard: a refusal that lasts 5 s repairs from upstream; checks wait for the repair, then the tree is checked whole", async () => {
  const r = rig();
  r.checker.next = verified(1);
  await tick(r);
  r.checker.next = refused(1);
  await tick(r);
  r.clock.now += 4_999;
  await tick(r);
  assert.equal(r.guard.state, "refused", "a push landing may refuse the tree for a moment");
  assert.equal(r.repairs.length, 0);
  r.clock.now += 1;
  r.guard.tick();
  while (r.repairs.length === 0) await Promise.resolve();
  assert.equal(r.guard.state, "repairing");
  assert.equal(r.repairs.length, 1);
  const checks = r.checker.wholes.length;
  r.guard.tick();
  r.guard.markerChanged();
  assert.equal(r.checker.wholes.length, checks, "no check while the tree is rewritten");
  r.checker.next = verified(1);
  r.repairs[0].done(null);
  await r.guard.idle();
  assert.deepEqual(r.checker.wholes.slice(checks), [true], "one whole check after");
  assert.equal(r.guard.state, "vouched");
  assert.deepEqual(r.announced, [markerOf(1), null, markerOf(1)]);
  assert.deepEqual(r.logs.map((l) => l.msg), [
    "announcing no version: the tree is not the version its marker names",
    "repairing the tree from upstream",
    "the tree holds its version again",
  ]);
});

Deno.test("guard: a repair that fails is logged, and the next waits at the repair pace", async () => {
  const r = rig();
  r.checker.next = refused(1);
  await tick(r);
  r.clock.now += 5_000;
  r.guard.tick();
  while (r.repairs.length === 0) await Promise.resolve();
  r.repairs[0].done("rsync: connection refused");
  await r.guard.idle();
  assert.equal(r.guard.state, "refused");
  r.clock.now += 9_999;
  await tick(r);
  assert.equal(r.repairs.length, 1, "the first wait is 10 s");
  r.clock.now += 1;
  r.guard.tick();
  while (r.repairs.length === 1) await Promise.resolve();
  assert.equal(r.guard.state, "repairing");
  assert.deepEqual(
    r.logs.filter((l) => l.level === "warn").map((l) => l.msg),
    [
      "announcing no version: the tree is not the version its marker names",
      "repair from upstream failed",
    ],
  );
  await r.guard.stop();
  assert.equal(r.repairs[1].signal.aborted, true, "the stop aborts the repair");
  r.repairs[1].done(null);
  await r.guard.idle();
  assert.equal(r.guard.state, "stopped");
});

Deno.test("guard: a primary (no upstream) refused stays refused, never repairing", async () => {
  const r = rig({ upstream: false });
  r.checker.next = refused(1);
  for (let i = 0; i < 5; i++) {
    await tick(r);
    r.clock.now += 60_000;
  }
  assert.equal(r.guard.state, "refused");
  assert.deepEqual(r.announced, [null]);
});

Deno.test("guard: what asks for a check while one runs gets one more after it, not one each", async () => {
  const r = rig();
  r.checker.next = verified(1);
  let release = () => {};
  r.checker.hold = new Promise((done) => release = done);
  r.guard.tick();
  assert.equal(r.guard.state, "checking");
  r.guard.tick();
  r.guard.markerChanged();
  r.guard.tick();
  r.checker.hold = null;
  release();
  await r.guard.idle();
  assert.equal(r.checker.wholes.length, 2);
  assert.equal(r.guard.state, "vouched");
});

Deno.test("guard: the watcher's paths and losses go to the checker; start ticks until the stop", async () => {
  const r = rig();
  r.guard.changed([{ path: "a.txt", deep: false }]);
  r.guard.lost();
  assert.deepEqual([r.checker.changes, r.checker.losses], [1, 1]);
  let fire: () => void = () => {};
  let stopped = false;
  const guard = new TreeGuard({
    checker: r.checker,
    announce: () => Promise.resolve(),
    repair: null,
    watched: () => true,
    reconcileMs: 600_000,
    pollMs: 60_000,
    log: new Logger({ sink: () => {} }),
    every: (ms, fn) => {
      assert.equal(ms, 1_000);
      fire = fn;
      return () => stopped = true;
    },
  });
  guard.start();
  await guard.idle();
  fire();
  await guard.idle();
  assert.equal(r.checker.wholes.length, 2);
  await guard.stop();
  assert.equal(stopped, true);
  fire();
  await guard.idle();
  assert.equal(r.checker.wholes.length, 2, "nothing checked once stopped");
  assert.equal(guard.state, "stopped");
});

Deno.test("guard: an announcement that fails is made again at the next check, never taken as made", async () => {
  const r = rig();
  r.checker.next = verified(1);
  await tick(r);
  assert.deepEqual(r.announced, [markerOf(1)]);
  // The tree is refused, and telling the daemons so fails: they go on
  // announcing version 1, which the tree no longer holds.
  r.checker.next = refused(1);
  r.announceFails.now = true;
  await tick(r);
  assert.deepEqual(r.announced, [markerOf(1), null]);
  assert.ok(r.logs.some((l) => l.msg === "version not refreshed"));
  r.announceFails.now = false;
  await tick(r);
  assert.deepEqual(r.announced, [markerOf(1), null, null]);
  await tick(r);
  assert.deepEqual(r.announced, [markerOf(1), null, null]);
  await r.guard.stop();
});

Deno.test("guard: a wall clock stepped back (NTP) does not put off the whole checks by the step", async () => {
  const wall = Date.now;
  const step = { back: 0 };
  Date.now = () => wall() - step.back;
  const checker = new FakeChecker();
  checker.next = verified(1);
  const guard = new TreeGuard({
    checker,
    announce: () => Promise.resolve(),
    repair: null,
    watched: () => true,
    reconcileMs: 20,
    pollMs: 20,
    log: new Logger({ sink: () => {} }),
    every: () => () => {},
  });
  try {
    guard.tick();
    await guard.idle();
    assert.deepEqual(checker.wholes, [true]);
    step.back = 3_600_000;
    await new Promise((r) => setTimeout(r, 40));
    guard.tick();
    await guard.idle();
    assert.deepEqual(checker.wholes, [true, true], "a whole check is due 20 ms on");
  } finally {
    Date.now = wall;
    await guard.stop();
  }
});
