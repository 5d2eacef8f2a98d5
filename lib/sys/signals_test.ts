// Shutdown by signal, in a separate Deno process that imports the modules
// (signals sent to the test runner itself would reach every test): the first
// SIGTERM or SIGINT aborts the role's signal; a second one kills the child
// groups and exits 130; a lost parent (FANOUT_PARENT_PID) is a SIGTERM.
import assert from "node:assert/strict";

const SIGNALS = new URL("./signals.ts", import.meta.url).href;
const CHILDREN = new URL("./children.ts", import.meta.url).href;

/**
 * Runs `code` (a module importing signals.ts and children.ts) in its own
 * Deno; its stdout lines are handed over as they come.
 */
function spawn(code: string, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", code],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const line = async (): Promise<string | null> => {
    while (!buf.includes("\n")) {
      const { done, value } = await lines.read();
      if (done) return null;
      buf += value;
    }
    const i = buf.indexOf("\n");
    const l = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return l;
  };
  const stderr = new Response(child.stderr).text();
  return { child, line, stderr };
}

const ROLE = `
import { aborted, shutdownSignal } from "${SIGNALS}";
import { trackGroup } from "${CHILDREN}";
// A child group that holds stdout: the pipe ends only when it is gone too.
const sleeper = new Deno.Command("sleep", { args: ["60"], detached: true, stdout: "inherit" }).spawn();
trackGroup(sleeper.pid);
const { signal } = shutdownSignal();
console.log("ready " + sleeper.pid);
await aborted(signal);
console.log("aborted " + signal.reason);
await sleeper.status;
`;

Deno.test("signals: the first SIGTERM aborts; a second SIGINT kills the child groups and exits 130", async () => {
  for (const [first, second] of [["SIGTERM", "SIGINT"], ["SIGINT", "SIGTERM"]] as const) {
    const p = spawn(ROLE);
    let sleeper = 0;
    try {
      const ready = await p.line();
      assert.match(ready ?? "", /^ready \d+$/);
      sleeper = Number(ready!.split(" ")[1]);
      p.child.kill(first);
      assert.equal(await p.line(), `aborted ${first}`);
      p.child.kill(second);
      assert.equal(await p.line(), null, "stdout ends: the sleeper is gone too");
      assert.equal((await p.child.status).code, 130);
    } finally {
      for (const pid of [p.child.pid, -sleeper]) {
        try {
          if (pid) Deno.kill(pid, "SIGKILL");
        } catch { /* gone, as it should be */ }
      }
      await p.child.status;
      await p.stderr;
    }
  }
});

const ORPHAN = `
import { aborted, shutdownSignal } from "${SIGNALS}";
import { exitWithParent, PARENT_PID_ENV } from "${CHILDREN}";
const { signal, dispose } = shutdownSignal();
const stop = exitWithParent(1, 60_000);
console.log("env " + (Deno.env.get(PARENT_PID_ENV) ?? "removed"));
// Its real parent: a few dozen checks pass and nothing happens.
const checks = new Promise((r) => setTimeout(r, 50));
await (Deno.env.get("WAIT_FOR_ABORT") ? aborted(signal) : Promise.race([aborted(signal), checks]));
console.log(signal.aborted ? "aborted " + signal.reason : "still running");
stop();
dispose();
`;

Deno.test("exitWithParent: a parent that is not this process's is a SIGTERM; the variable goes", async () => {
  const p = spawn(ORPHAN, { FANOUT_PARENT_PID: "999999999", WAIT_FOR_ABORT: "1" });
  assert.equal(await p.line(), "env removed");
  assert.equal(await p.line(), "aborted SIGTERM");
  assert.equal((await p.child.status).code, 0);
  await p.stderr;
});

Deno.test("exitWithParent: under its real parent, or with no or a bad variable, nothing happens", async () => {
  for (const pid of [String(Deno.pid), "", "1", "-5", "web1"]) {
    const p = spawn(ORPHAN, { FANOUT_PARENT_PID: pid });
    assert.equal(await p.line(), "env removed", pid);
    assert.equal(await p.line(), "still running", pid);
    assert.equal((await p.child.status).code, 0, pid);
    await p.stderr;
  }
});
