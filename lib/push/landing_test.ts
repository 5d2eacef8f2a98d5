// The wait for a landing transfer, with both clocks stepped by hand: it
// holds while the temp dir is fresh, ends at quiet, at a due version or at
// its longest, and keeps one timer per wait.
import assert from "node:assert/strict";
import { SERVER_TEMP_DIR } from "../core/mod.ts";
import { LandingWait } from "./landing.ts";

/** A source whose temp dir exists; `fresh` and `quiet` are wall times that make it so. */
function source(): { root: string; fresh: number; quiet: number } {
  const root = Deno.makeTempDirSync();
  Deno.mkdirSync(`${root}/${SERVER_TEMP_DIR}`);
  const mtime = Deno.statSync(`${root}/${SERVER_TEMP_DIR}`).mtime!.getTime();
  return { root, fresh: mtime + 100, quiet: mtime + 60_000 };
}

/** A wait on a fresh source with both clocks in `clocks`, and `done` to end it and remove the source. */
function wait(kicked: () => void = () => {}) {
  const s = source();
  const clocks = { wall: s.fresh, mono: 0 };
  const landing = new LandingWait({
    source: s.root,
    clock: () => clocks.wall,
    monotonic: () => clocks.mono,
    maxMs: 1_000,
    kick: kicked,
  });
  const done = () => {
    landing.stop();
    Deno.removeSync(s.root, { recursive: true });
  };
  return { s, clocks, landing, done };
}

Deno.test("landing wait: no temp dir, or a quiet one, holds nothing and asks nothing", () => {
  const { s, clocks, landing, done } = wait(() => assert.fail("no kick"));
  clocks.wall = s.quiet;
  assert.equal(landing.held(() => assert.fail("not asked")), false);
  Deno.removeSync(`${s.root}/${SERVER_TEMP_DIR}`);
  clocks.wall = s.fresh;
  assert.equal(landing.held(() => assert.fail("not asked")), false);
  done();
});

Deno.test("landing wait: a fresh temp dir holds, with one timer whose kick looks again", async () => {
  let kicks = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  const { clocks, landing, done } = wait(() => {
    kicks++;
    resolve();
  });
  assert.equal(landing.held(() => false), true);
  clocks.mono = 50;
  assert.equal(landing.held(() => false), true);
  await promise;
  assert.equal(kicks, 1);
  done();
  assert.equal(landing.held(() => false), false, "nothing held once stopped");
});

Deno.test("landing wait: it ends at its longest, and no second one starts before quiet", () => {
  const { s, clocks, landing, done } = wait();
  assert.equal(landing.held(() => false), true);
  clocks.mono = 1_000;
  assert.equal(landing.held(() => false), false);
  clocks.mono = 1_500;
  assert.equal(landing.held(() => false), false);
  clocks.wall = s.quiet;
  assert.equal(landing.held(() => false), false);
  clocks.wall = s.fresh;
  assert.equal(landing.held(() => false), true, "a new wait after quiet");
  done();
});

Deno.test("landing wait: a version due ends it; the next look waits again", () => {
  const { clocks, landing, done } = wait();
  assert.equal(landing.held(() => false), true);
  assert.equal(landing.held(() => true), false);
  clocks.mono = 500;
  assert.equal(landing.held(() => false), true, "within the longest wait");
  clocks.mono = 1_000;
  assert.equal(landing.held(() => false), false, "timed from the first look");
  done();
});

Deno.test("landing wait: a wait that another look ends still kicks the one it held", async () => {
  // Two replicas look in turn: the first is held (it waits for the kick),
  // the wall clock passes quiet, and the second's look ends the wait.
  for (const end of ["quiet", "version due", "longest"] as const) {
    let kicks = 0;
    const { promise, resolve } = Promise.withResolvers<void>();
    const { s, clocks, landing, done } = wait(() => {
      kicks++;
      resolve();
    });
    assert.equal(landing.held(() => false), true, `${end}: the first replica waits`);
    if (end === "quiet") clocks.wall = s.quiet;
    if (end === "longest") clocks.mono = 1_000;
    assert.equal(landing.held(() => end === "version due"), false, `${end}: the second goes`);
    await promise;
    assert.equal(kicks, 1, `${end}: the first is kicked to look again`);
    done();
  }
});
