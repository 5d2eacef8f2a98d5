// The renderers by kind, loaded on first use; a kind this fanout does not
// render is a usage error, not a crash.
import assert from "node:assert/strict";
import { renderer } from "./mod.ts";
import { FanoutError } from "../core/mod.ts";

Deno.test("renderer: every kind loads a function; an unknown one is exit 2 naming it", async () => {
  for (
    const kind of ["rsyncd", "nginx", "haproxy", "systemd", "post-receive", "cron", "report-token"]
  ) {
    assert.equal(typeof await renderer(kind), "function", kind);
  }
  await assert.rejects(
    renderer("apache"),
    (e) =>
      e instanceof FanoutError && e.exitCode === 2 &&
      /render apache is not built yet/.test(e.message),
  );
});
