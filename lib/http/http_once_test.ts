// The report's bare HTTP POST against a real Deno.serve: plain and chunked
// answers, error statuses, a server that never answers.
import assert from "node:assert/strict";
import { getOnce, postOnce } from "./http_once.ts";

Deno.test("postOnce: status and body, plain or chunked; headers and body arrive; timeout", async () => {
  const seen: { sig: string | null; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({ sig: req.headers.get("x-fanout-signature"), body: await req.text() });
    const path = new URL(req.url).pathname;
    if (path === "/chunked") {
      const stream = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode("stored, "));
          c.enqueue(new TextEncoder().encode("in two chunks"));
          c.close();
        },
      });
      return new Response(stream, { status: 202 });
    }
    if (path === "/bad") return new Response("bad signature\n", { status: 401 });
    return new Response("ok\n");
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const h = { "content-type": "application/json", "x-fanout-signature": "t=1,sig=ab" };
    assert.deepEqual(await postOnce(`${base}/report`, h, '{"a":"é"}', 1000), {
      status: 200,
      text: "ok\n",
    });
    assert.deepEqual(seen[0], { sig: "t=1,sig=ab", body: '{"a":"é"}' });
    assert.deepEqual(await postOnce(`${base}/chunked`, h, "{}", 1000), {
      status: 202,
      text: "stored, in two chunks",
    });
    assert.deepEqual(await postOnce(`${base}/bad`, h, "{}", 1000), {
      status: 401,
      text: "bad signature\n",
    });
  } finally {
    await server.shutdown();
  }
  // Answers and keeps the connection open: the Content-Length ends the read.
  const open = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const kept: Deno.Conn[] = [];
  const answering = (async () => {
    for await (const c of open) {
      kept.push(c);
      await c.read(new Uint8Array(4096));
      await c.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"),
      );
    }
  })();
  const t1 = performance.now();
  assert.deepEqual(await postOnce(`http://127.0.0.1:${open.addr.port}/r`, {}, "{}", 2000), {
    status: 200,
    text: "ok\n",
  });
  assert.ok(performance.now() - t1 < 1000, "no wait for a close");
  open.close();
  for (const c of kept) c.close();
  await answering.catch(() => {});
  // Accepts, never answers: TimeoutError after the limit.
  const mute = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of mute) held.push(c);
  })();
  const t0 = performance.now();
  await assert.rejects(
    postOnce(`http://127.0.0.1:${mute.addr.port}/report`, {}, "{}", 300),
    (e: Error) => e.name === "TimeoutError",
  );
  assert.ok(performance.now() - t0 < 1000);
  mute.close();
  for (const c of held) c.close();
  await accepting.catch(() => {});
  await assert.rejects(postOnce("https://127.0.0.1/report", {}, "{}", 300), /only http/);
});

Deno.test("getOnce: a GET with no body; an answer past the bound is an error; a hang times out", async () => {
  const seen: string[] = [];
  let release = () => {};
  const held = new Promise<Response>((r) => release = () => r(new Response("late")));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seen.push(`${req.method} ${new URL(req.url).pathname}`);
    const path = new URL(req.url).pathname;
    if (path === "/big") return new Response("x".repeat(100_000));
    if (path === "/endless") {
      const chunk = new TextEncoder().encode("y".repeat(1024));
      return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }));
    }
    if (path === "/hang") return held;
    return new Response('{"version":null}');
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    assert.deepEqual(await getOnce(`${base}/version`, 1000, 100), {
      status: 200,
      text: '{"version":null}',
    });
    assert.deepEqual(seen, ["GET /version"]);
    await assert.rejects(getOnce(`${base}/big`, 2000, 100), /an answer over \d+ bytes/);
    await assert.rejects(getOnce(`${base}/endless`, 2000, 100), /an answer over \d+ bytes/);
    await assert.rejects(
      getOnce(`${base}/hang`, 300, 100),
      (e: Error) => e.name === "TimeoutError",
    );
  } finally {
    release();
    await server.shutdown();
  }
});
