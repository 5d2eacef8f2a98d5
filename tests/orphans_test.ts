// Nothing a test started outlives its runner: a runner killed mid-run leaves
// no fanout and no rsync daemon behind (lib/sys/children.ts, FANOUT_PARENT_PID).
import assert from "node:assert/strict";
import { waitFor } from "./_helpers.ts";
import { alive } from "./_fleet.ts";

const RUNNER = new URL("./_orphan_runner.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

Deno.test("orphans: a runner killed mid-run takes its lab's primary and rsync daemon with it", async () => {
  const runner = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `--config=${CONFIG}`, RUNNER],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = runner.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    out += value;
  }
  const started = JSON.parse(out) as { dir: string; primary: number; daemon: number };
  try {
    assert.ok(alive(started.primary), "the primary runs");
    assert.ok(alive(started.daemon), "its rsync daemon runs");
    Deno.kill(runner.pid, "SIGKILL");
    await runner.status;
    // A generous bound: the primary checks for its parent every second.
    await waitFor("the primary gone", () => !alive(started.primary), 30_000, 100);
    await waitFor(
      "its rsync daemon gone",
      () => !alive(started.daemon),
      30_000,
      100,
    );
  } finally {
    for (const pid of [started.primary, started.daemon]) {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch { /* gone, as it should be */ }
    }
    await lines.cancel().catch(() => {});
    await Deno.remove(started.dir, { recursive: true }).catch(() => {});
  }
});
