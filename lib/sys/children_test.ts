// Child process groups stop whole: a signal to the group reaches the
// children its leader forked, and the groups still registered are killed
// on the way out. Real processes (sh, sleep), stopped by pid.
import assert from "node:assert/strict";
import { commandLine, killAllGroups, killGroup, trackGroup } from "./children.ts";

/**
 * A process group: `sh` leading it with a `sleep` it forked. Both hold the
 * stdout pipe, so the pipe ends only when both are gone.
 */
function group(): { child: Deno.ChildProcess; gone: Promise<void> } {
  const child = new Deno.Command("sh", {
    args: ["-c", "sleep 60 & wait"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    detached: true,
  }).spawn();
  const gone = (async () => {
    for await (const _ of child.stdout) { /* nothing is written */ }
  })();
  return { child, gone };
}

Deno.test("killGroup: the leader and what it forked both stop", async () => {
  const { child, gone } = group();
  assert.equal(killGroup(child.pid), true);
  await gone; // the forked sleep closed the pipe too
  assert.equal((await child.status).signal, "SIGTERM");
});

Deno.test("killGroup: a pid that leads no group is false, and nothing is signalled", async () => {
  // Not detached: it ran in this process's group and led none of its own.
  const c = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await c.status;
  assert.equal(killGroup(c.pid), false);
});

Deno.test("killAllGroups: every tracked group is SIGKILLed; a forgotten one is left", async () => {
  const tracked = group();
  const forgotten = group();
  trackGroup(tracked.child.pid);
  const forget = trackGroup(forgotten.child.pid);
  forget();
  killAllGroups();
  await tracked.gone;
  assert.equal((await tracked.child.status).signal, "SIGKILL");
  killAllGroups(); // the set was cleared: nothing left to kill twice
  assert.equal(killGroup(forgotten.child.pid, "SIGTERM"), true, "still running");
  await forgotten.gone;
  assert.equal((await forgotten.child.status).signal, "SIGTERM");
});

Deno.test('commandLine: a live process\'s arguments, spaced; "" once it is reaped or for no pid', async () => {
  const child = new Deno.Command("sleep", { args: ["30.5"], stdin: "null", stdout: "null" })
    .spawn();
  // Empty, or the runner's, for the moment between the fork and the exec.
  let line = "";
  for (let i = 0; i < 500 && !/sleep/.test(line); i++) {
    line = await commandLine(child.pid);
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.match(line, /(^|\/)sleep 30\.5 $/);
  child.kill("SIGKILL");
  await child.status;
  assert.equal(await commandLine(child.pid), "");
  assert.equal(await commandLine(0), "");
  assert.equal(await commandLine(Number.NaN), "");
});
