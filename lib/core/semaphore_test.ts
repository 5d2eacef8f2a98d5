// At most n holders at once; waiters get their turn in order; a release
// called twice frees one slot, not two.
import assert from "node:assert/strict";
import { Semaphore } from "./semaphore.ts";

/** Lets every settled promise's callbacks run. */
const settle = () => new Promise<void>((r) => setTimeout(r, 0));

Deno.test("semaphore: n hold at once, the rest wait in FIFO order", async () => {
  const sem = new Semaphore(2);
  const a = await sem.acquire();
  const b = await sem.acquire();
  const order: string[] = [];
  const waiting = ["c", "d", "e"].map((name) =>
    sem.acquire().then((release) => {
      order.push(name);
      return release;
    })
  );
  await settle();
  assert.deepEqual(order, [], "nobody past the two holders");
  a();
  await settle();
  assert.deepEqual(order, ["c"]);
  b();
  await settle();
  assert.deepEqual(order, ["c", "d"]);
  (await waiting[0])();
  await settle();
  assert.deepEqual(order, ["c", "d", "e"]);
  (await waiting[1])();
  (await waiting[2])();
});

Deno.test("semaphore: releasing twice frees one slot", async () => {
  const sem = new Semaphore(1);
  const first = await sem.acquire();
  first();
  first();
  const second = await sem.acquire();
  let third = false;
  const p = sem.acquire().then((r) => {
    third = true;
    return r;
  });
  await settle();
  assert.equal(third, false, "the double release did not make room for two");
  second();
  (await p)();
  assert.equal(third, true);
});

Deno.test("semaphore: a slot released with nobody waiting is free for the next", async () => {
  const sem = new Semaphore(1);
  for (let i = 0; i < 1000; i++) (await sem.acquire())();
});
