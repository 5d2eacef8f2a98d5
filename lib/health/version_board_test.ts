// The /version board through the health app: answers at once when the asker
// is behind, holds it otherwise until a new version, the wait's end or the
// close; bounded in all and per address; a hang-up frees the place.
import assert from "node:assert/strict";
import { healthApp } from "./health.ts";
import { Registry } from "./metrics.ts";
import { type BoardLimits, VersionBoard } from "./version_board.ts";
import type { VersionMarker } from "../version/mod.ts";

const v = (seq: number): VersionMarker => ({
  seq,
  commit: `c${seq}`,
  ref: "main",
  published_at: "2026-11-25T00:00:00Z",
});

function setup(limits: Partial<BoardLimits> = {}, current: VersionMarker | null = v(1)) {
  const board = new VersionBoard(current, limits);
  const registry = new Registry();
  const app = healthApp({
    role: "replica",
    name: "rsync2",
    problem: () => null,
    status: () => ({}),
    registry,
    versions: board,
  });
  const ask = (query: string, from = "10.0.0.1") =>
    app.request(`/version?${query}`, {}, {
      remoteAddr: { transport: "tcp", hostname: from, port: 40000 },
    });
  return { board, app, registry, ask };
}

const seqOf = async (res: Response) => (await res.json()).version?.seq ?? -1;

Deno.test("version board: an asker behind, or one without after, is answered at once", async () => {
  const { ask } = setup();
  for (const q of ["", "after=0&wait=30", "after=-1&wait=30", "after=1", "after=1&wait=0"]) {
    const res = await ask(q);
    assert.equal(res.status, 200, q);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(await seqOf(res), 1, q);
  }
  const { board, app } = setup();
  const h = await app.request("/version?after=1&wait=30", { method: "HEAD" });
  assert.equal(h.status, 200);
  assert.equal(board.waiting, 0, "a HEAD is never held: no body would end it");
  const none = setup({}, null);
  assert.deepEqual(await (await none.ask("after=3&wait=30")).json(), { version: null });
});

Deno.test("version board: a held request is answered by the next announcement, not by the same version", async () => {
  const { board, ask } = setup();
  const res = await ask("after=1&wait=30");
  assert.equal(res.status, 200, "the status goes out at once");
  assert.equal(board.waiting, 1);
  const body = res.json();
  board.announce(v(1));
  assert.equal(board.waiting, 1, "the same version wakes no one");
  board.announce(v(2));
  assert.equal((await body).version.seq, 2);
  assert.equal(board.waiting, 0);
});

Deno.test("version board: the wait ends with the unchanged version; close answers everyone and refuses more", async () => {
  const { board, ask } = setup();
  assert.equal(await seqOf(await ask("after=1&wait=0.01")), 1);
  const held = await ask("after=1&wait=30");
  board.close();
  assert.equal(await seqOf(held), 1);
  const late = await ask("after=1&wait=30");
  assert.deepEqual([late.status, await late.text()], [503, "stopping\n"]);
});

Deno.test("version board: bounded in all and per address, with Retry-After; a hang-up frees the place", async () => {
  const { board, ask, registry } = setup({ maxWaiters: 3, maxPerSource: 2 });
  const a1 = await ask("after=1&wait=30", "10.0.0.1");
  await ask("after=1&wait=30", "10.0.0.1");
  const perSource = await ask("after=1&wait=30", "10.0.0.1");
  assert.equal(perSource.status, 429);
  assert.equal(perSource.headers.get("retry-after"), "10");
  assert.equal(await perSource.text(), "2 requests from 10.0.0.1 already wait\n");
  await ask("after=1&wait=30", "10.0.0.2");
  const full = await ask("after=1&wait=30", "10.0.0.3");
  assert.deepEqual([full.status, await full.text()], [503, "3 requests already wait\n"]);
  assert.equal(board.waiting, 3);
  await a1.body!.cancel();
  assert.equal(board.waiting, 2, "the hang-up freed its place");
  const again = await ask("after=1&wait=30", "10.0.0.1");
  assert.equal(again.status, 200);
  const text = registry.render();
  assert.match(text, /^fanout_version_waiters 3$/m);
  assert.match(text, /^fanout_version_refused_total\{reason="max_per_source"\} 1$/m);
  assert.match(text, /^fanout_version_refused_total\{reason="max_waiters"\} 1$/m);
  board.close();
});

Deno.test("version board: a bad query is a one-line 400; the route is read-only and listed", async () => {
  const { ask, app, registry } = setup();
  const bad = await ask("after=1;DROP");
  assert.deepEqual([bad.status, await bad.text()], [
    400,
    "after must be a seq: -1 or an integer from 0\n",
  ]);
  assert.match(registry.render(), /^fanout_version_refused_total\{reason="bad_request"\} 1$/m);
  assert.equal((await app.request("/version", { method: "POST" })).status, 405);
  assert.match(await (await app.request("/")).text(), /\/metrics \/version\n$/);
  const without = healthApp({
    role: "replica",
    name: "r",
    problem: () => null,
    status: () => ({}),
    registry: new Registry(),
  });
  assert.equal((await without.request("/version")).status, 404, "no board, no route");
});
