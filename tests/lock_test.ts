// Run locks: exclusive, dropped on release or exit, with the holder named.
import assert from "node:assert/strict";
import { lock, lockHolder, tryLock } from "../lib/lock.ts";
import { LockedError } from "../lib/errors.ts";

const LOCK_TS = new URL("../lib/lock.ts", import.meta.url).href;

Deno.test("lock: tryLock is exclusive and names the holder; release lets the next in", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    const first = await tryLock(path);
    assert.equal(await lockHolder(path), Deno.pid);
    const err = await tryLock(path).then(() => null, (e) => e);
    assert.ok(err instanceof LockedError, String(err));
    assert.equal(err.exitCode, 5);
    assert.match(err.message, new RegExp(`another run \\(pid ${Deno.pid}\\) holds ${path}$`));
    first.release();
    first.release(); // twice is fine
    using _second = await tryLock(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: a lock held by a killed process is free at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    const code = `const { tryLock } = await import(${JSON.stringify(LOCK_TS)});
      await tryLock(${JSON.stringify(path)}); console.log("held");
      await new Promise((r) => setTimeout(r, 30_000));`;
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /held/);
    const err = await tryLock(path).then(() => null, (e) => e);
    assert.ok(err instanceof LockedError);
    assert.match(err.message, new RegExp(`\\(pid ${holder.pid}\\)`));
    holder.kill("SIGKILL");
    await holder.status;
    await reader.cancel();
    using _l = await tryLock(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: lock() waits for the holder, and gives up after its timeout", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    const held = await tryLock(path);
    const t0 = Date.now();
    await assert.rejects(lock(path, 150), /holds .* after waiting/);
    assert.ok(Date.now() - t0 >= 140);
    const waiting = lock(path, 5000);
    setTimeout(() => held.release(), 100);
    const got = await waiting;
    assert.ok(Date.now() - t0 >= 200);
    got.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
