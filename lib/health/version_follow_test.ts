// The follower against a real health server on a loopback port: it hears
// each new version once, says once when a host has no /version or fails,
// takes nothing but fanout's own answer, and stops at once on abort.
import assert from "node:assert/strict";
import { Logger } from "../core/mod.ts";
import { healthApp, serveHealth } from "./health.ts";
import { Registry } from "./metrics.ts";
import { VersionBoard } from "./version_board.ts";
import { followVersions } from "./version_follow.ts";
import type { VersionMarker } from "../version/mod.ts";

const v = (seq: number): VersionMarker => ({
  seq,
  commit: `c${seq}`,
  ref: "main",
  published_at: "2026-11-25T00:00:00Z",
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A health server on a free port, with `board` when given. */
function serve(board?: VersionBoard) {
  const at = { host: "127.0.0.1", port: freePort() };
  const app = healthApp({
    role: "replica",
    name: "r",
    problem: () => null,
    status: () => ({}),
    registry: new Registry(),
    versions: board,
  });
  return { at, server: serveHealth(at, app) };
}

/** Follows `at`; `heard` yields each version called back, `lines` the log. */
function follow(at: { host: string; port: number }, after: number) {
  const ac = new AbortController();
  const lines: string[] = [];
  const queue: (VersionMarker | null)[] = [];
  let wake: (() => void) | null = null;
  const done = followVersions({
    at,
    after,
    signal: ac.signal,
    log: new Logger({ level: "debug", sink: (l) => lines.push(l) }),
    waitMs: 20_000,
    retryMin: 10,
    retryMax: 20,
    onVersion: (x) => {
      queue.push(x);
      wake?.();
    },
  });
  const heard = async () => {
    while (!queue.length) await new Promise<void>((r) => wake = r);
    return queue.shift()!;
  };
  const logged = async (re: RegExp) => {
    while (!lines.some((l) => re.test(l))) await new Promise((r) => setTimeout(r, 5));
  };
  return { ac, done, heard, lines, logged };
}

Deno.test("follow: each new version once, in order; a version already held is no news", async () => {
  const board = new VersionBoard(v(1));
  const { server, at } = serve(board);
  const f = follow(at, 1);
  try {
    while (board.waiting === 0) await new Promise((r) => setTimeout(r, 5));
    board.announce(v(2));
    assert.equal((await f.heard())?.seq, 2);
    board.announce(v(3));
    assert.equal((await f.heard())?.seq, 3);
    board.announce(null);
    assert.equal(await f.heard(), null);
  } finally {
    f.ac.abort();
    await f.done;
    await server.shutdown();
  }
  assert.ok(!f.lines.some((l) => /no version notices/.test(l)), f.lines.join("\n"));
});

Deno.test("follow: a host behind at start is news at once", async () => {
  const board = new VersionBoard(v(5));
  const { server, at } = serve(board);
  const f = follow(at, -1);
  try {
    assert.equal((await f.heard())?.seq, 5);
  } finally {
    f.ac.abort();
    await f.done;
    board.close();
    await server.shutdown();
  }
});

Deno.test("follow: no /version (404), nothing listening, a host that hangs up: said once, asked again", async () => {
  const { server, at } = serve();
  const absent = follow(at, 1);
  const refused = follow({ host: "127.0.0.1", port: freePort() }, 1);
  // Accepts and hangs up at once, counting how often it is asked.
  const rude = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let asked = 0;
  const accepting = (async () => {
    for await (const c of rude) {
      asked++;
      c.close();
    }
  })();
  const hungUp = follow({ host: "127.0.0.1", port: (rude.addr as Deno.NetAddr).port }, 1);
  try {
    await absent.logged(/msg="no version notices; polling meanwhile" .*why="HTTP 404"/);
    await refused.logged(/why="connection refused"/);
    // Backing off from 10 ms to 20 ms, it asks again and again.
    while (asked < 4) await new Promise((r) => setTimeout(r, 5));
  } finally {
    for (const f of [absent, refused, hungUp]) f.ac.abort();
    await Promise.all([absent.done, refused.done, hungUp.done]);
    rude.close();
    await accepting;
    await server.shutdown();
  }
  assert.equal(hungUp.lines.filter((l) => /no version notices/.test(l)).length, 1);
});

Deno.test("follow: an answer that is not fanout's, or too big, is a failure, never a version", async () => {
  for (
    const [body, why] of [
      ['{"version":{"seq":"x"}}', /why="not a version: \{\\"version/],
      ["<html>\x1b[2J</html>", /why="not a version: <html>\[2J<\/html>"/],
      [JSON.stringify({ version: { ...v(2), ref: "x".repeat(5000) } }), /why="an answer over/],
    ] as const
  ) {
    const port = freePort();
    const s = Deno.serve(
      { hostname: "127.0.0.1", port, onListen() {} },
      () => new Response(body, { status: 200 }),
    );
    const f = follow({ host: "127.0.0.1", port }, 1);
    try {
      await f.logged(why);
    } finally {
      f.ac.abort();
      await f.done;
      await s.shutdown();
    }
    assert.ok(!f.lines.some((l) => l.includes("\x1b")), "no control characters logged");
  }
});
