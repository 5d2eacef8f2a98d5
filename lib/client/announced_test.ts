// The client's look at the version its server announces: fanout's own answer
// is taken; any other (an error status, garbage, an oversized or endless
// body, a hang, nobody listening) is a failure with a one-line reason, never
// a throw, and nothing of it reaches a log with its control characters.
import assert from "node:assert/strict";
import { announcedBy, announcedVersion } from "./announced.ts";
import type { VersionMarker } from "../version/mod.ts";

const V: VersionMarker = {
  seq: 7,
  commit: "0123456789abcdef0123456789abcdef01234567",
  ref: "main",
  published_at: "2026-12-05T00:00:00.000Z",
};

Deno.test("announcedBy: 200 with a marker or null; anything else a failure", () => {
  assert.deepEqual(announcedBy(200, JSON.stringify({ version: V })), { version: V });
  assert.deepEqual(announcedBy(200, '{"version":null}'), { version: null });
  assert.deepEqual(announcedBy(500, JSON.stringify({ version: V })), { failed: "HTTP 500" });
  assert.deepEqual(announcedBy(204, ""), { failed: "HTTP 204" });
  assert.deepEqual(announcedBy(200, "<html>\x1b[2J</html>"), {
    failed: "not a version: <html>[2J</html>",
  });
  const wrong = announcedBy(200, JSON.stringify({ version: { ...V, seq: "7" } }));
  assert.ok("failed" in wrong);
});

Deno.test("announcedVersion: hostile answers are bounded failures; fanout's is read", async () => {
  let release = () => {};
  const held = new Promise<Response>((r) => release = () => r(new Response("late")));
  const answers: Record<string, () => Response | Promise<Response>> = {
    good: () => Response.json({ version: V }),
    big: () => new Response(`{"version":${JSON.stringify({ ...V, ref: "r".repeat(1 << 20) })}}`),
    endless: () => {
      const chunk = new TextEncoder().encode(" ".repeat(4096));
      return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }));
    },
    garbage: () => new Response("\x00\x1b]0;owned\x07 not json"),
    control: () => Response.json({ version: { ...V, commit: `${V.commit}\x1b[31m` } }),
    error: () => new Response("boom", { status: 500 }),
    hang: () => held,
  };
  let kind = "good";
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => answers[kind](),
  );
  const at = { host: "127.0.0.1", port: server.addr.port };
  try {
    assert.deepEqual(await announcedVersion(at, 2000), { version: V });
    const failed = async (k: string) => {
      kind = k;
      const a = await announcedVersion(at, k === "hang" ? 300 : 2000);
      assert.ok("failed" in a, `${k}: ${JSON.stringify(a)}`);
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(a.failed, /[\x00-\x1f\x7f-\x9f]/, k);
      return a.failed;
    };
    assert.match(await failed("big"), /^an answer over \d+ bytes$/);
    assert.match(await failed("endless"), /^an answer over \d+ bytes$/);
    assert.match(await failed("garbage"), /^not a version: /);
    assert.equal(await failed("error"), "HTTP 500");
    assert.equal(await failed("hang"), "timed out");
    // A marker's control characters are stripped, so it is not dest's version.
    kind = "control";
    const c = await announcedVersion(at, 2000);
    assert.ok("version" in c && c.version?.commit === V.commit + "[31m", JSON.stringify(c));
  } finally {
    release();
    await server.shutdown();
  }
  assert.match((await announcedVersion(at, 2000) as { failed: string }).failed, /refused/);
});
