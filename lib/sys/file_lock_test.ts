// Run locks: exclusive, dropped on release or exit, with the holder named.
import assert from "node:assert/strict";
import { acquireLock } from "./file_lock.ts";
import { LockedError } from "../core/mod.ts";

const FILE_LOCK_TS = new URL("./file_lock.ts", import.meta.url).href;

Deno.test("file_lock: timeout 0 takes it at once or names the holder; release lets the next in", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sub/x.lock`; // the parent is created
    const first = await acquireLock(path, { timeout: 0, what: "client run" });
    assert.equal((await Deno.readTextFile(path)).trim(), String(Deno.pid));
    const t0 = performance.now();
    const err = await acquireLock(path, { timeout: 0, what: "client run" }).then(
      () => null,
      (e) => e,
    );
    assert.ok(performance.now() - t0 < 1000, "no waiting");
    assert.ok(err instanceof LockedError, String(err));
    assert.equal(err.exitCode, 5);
    assert.equal(err.message, `another client run holds ${path} (pid ${Deno.pid})`);
    first.release();
    first.release(); // twice is fine
    // A moment's wait: a process forked elsewhere in this one (another test
    // file's child) holds the descriptor, and with it the lock, until it execs.
    (await acquireLock(path, { timeout: 2000, what: "client run" })).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file_lock: a lock held by a killed process is free at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    const code = `const { acquireLock } = await import(${JSON.stringify(FILE_LOCK_TS)});
      await acquireLock(${JSON.stringify(path)}, { timeout: 0, what: "x" }); console.log("held");
      await new Promise((r) => setTimeout(r, 30_000));`;
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /held/);
    const err = await acquireLock(path, { timeout: 0, what: "x" }).then(() => null, (e) => e);
    assert.ok(err instanceof LockedError);
    assert.match(err.message, new RegExp(`\\(pid ${holder.pid}\\)`));
    holder.kill("SIGKILL");
    await holder.status;
    await reader.cancel();
    (await acquireLock(path, { timeout: 0, what: "x" })).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file_lock: a timeout waits for the holder, and gives up when it passes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    const held = await acquireLock(path, { timeout: 0, what: "publish" });
    const t0 = Date.now();
    await assert.rejects(
      acquireLock(path, { timeout: 150, what: "publish" }),
      /another publish holds .* gave up after 150ms/,
    );
    assert.ok(Date.now() - t0 >= 140);
    const waiting = acquireLock(path, { timeout: 5000, what: "publish" });
    setTimeout(() => held.release(), 100);
    const got = await waiting;
    assert.ok(got.waitedMs >= 50);
    got.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file_lock: the holder is named by the file's first line, whatever a writer left after it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.lock`;
    (await acquireLock(path, { timeout: 0, what: "publish" })).release();
    // Another holder wrote its shorter pid over the last one's, without truncating.
    const held = await Deno.open(path, { read: true, write: true });
    await held.lock(true);
    await Deno.writeTextFile(path, "400\n1234567\n");
    try {
      const err = await acquireLock(path, { timeout: 0, what: "publish" }).catch((e) => e);
      assert.ok(err instanceof LockedError, String(err));
      assert.equal(err.message, `another publish holds ${path} (pid 400)`);
    } finally {
      held.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
