import assert from "node:assert/strict";
import { sh, withLab } from "./_helpers.ts";

Deno.test("demo: runs to completion with --duration and leaves no process behind", async () => {
  await withLab(async (lab) => {
    // Shorter than the first round: the demo follows the first tree to every
    // host all the same, then stops instead of publishing again.
    const r = await lab.run(["demo", "--duration", "1s"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const dir = /fanout demo: a whole fleet on loopback \(\S+\), in (\S+)/.exec(r.stdout)?.[1];
    assert.ok(dir, r.stdout);
    for (
      const host of [
        "primary rsync1",
        "replica rsync2",
        "replica rsync3",
        "client  c1",
        "client  c2",
      ]
    ) {
      assert.match(r.stdout, new RegExp(`${host} +has seq 1 `), host);
    }
    assert.match(r.stdout, /git push \(the first tree\): published seq 1 /);
    assert.match(r.stdout, /curl -s http:\/\/\S+\/status/);
    assert.match(r.stdout, /done: every process stopped/);
    const left = await sh("pgrep", ["-f", dir!]);
    assert.equal(left.code, 1, `left behind:\n${left.stdout}`);
    assert.equal(await Deno.stat(dir!).catch(() => null), null, "the temporary dir is removed");
  });
});
