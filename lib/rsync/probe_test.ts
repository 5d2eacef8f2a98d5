// The daemon probe against real sockets on 127.0.0.1 that answer as a
// daemon, as something else, or as a hostile server: whatever they send, the
// probe ends with a reason, reads a bounded amount and never hangs.
import assert from "node:assert/strict";
import { describeConnectError, PROBE_MAX_BYTES, probeRsyncd } from "./probe.ts";

const enc = new TextEncoder();

/**
 * A one-connection server: `answer` gets the accepted connection and what
 * the probe sent first; the connection is closed after it.
 */
async function withServer(
  answer: (conn: Deno.Conn, first: string) => Promise<void>,
  fn: (port: number) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serve = (async () => {
    const conn = await listener.accept();
    try {
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      await answer(conn, new TextDecoder().decode(buf.subarray(0, n ?? 0)));
    } catch { /* the probe hung up */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
  try {
    await fn((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await serve;
  }
}

/** Waits until the probe hangs up (or a bound is reached). */
async function drain(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(4096);
  for (let i = 0; i < 100 && await conn.read(buf) !== null; i++) { /* read on */ }
}

const at = (port: number) => ({ host: "127.0.0.1", port });

Deno.test("probe: a daemon's greeting and module list, with each module's comment", async () => {
  let sent = "";
  await withServer(async (conn, first) => {
    sent = first;
    await conn.write(enc.encode("@RSYNCD: 32.0 sha512 md5\n"));
    await conn.write(
      enc.encode(
        "plugins        \tplugins (read only) fanout-version seq=7 commit=ab ref=main at=x\n" +
          "bare\n\n@RSYNCD: EXIT\n",
      ),
    );
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000, { list: true });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.greeting, "@RSYNCD: 32.0 sha512 md5");
    assert.deepEqual(r.modules, ["plugins", "bare"]);
    assert.deepEqual(r.comments, {
      plugins: "plugins (read only) fanout-version seq=7 commit=ab ref=main at=x",
      bare: "",
    });
    assert.ok(r.ms >= 0);
  });
  assert.ok(sent.startsWith("@RSYNCD: 30.0\n"), "the probe greets first, as a client does");
});

Deno.test("probe: without list, modules are not returned; the PROXY header goes first", async () => {
  const header = enc.encode("PROXY UNKNOWN\r\n");
  let sent = "";
  await withServer(async (conn, first) => {
    sent = first;
    await conn.write(enc.encode("@RSYNCD: 31.0\nplugins\n@RSYNCD: EXIT\n"));
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000, { proxyHeader: header });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.modules, undefined);
    assert.equal(r.comments, undefined);
  });
  assert.ok(sent.startsWith("PROXY UNKNOWN\r\n"), JSON.stringify(sent));
});

Deno.test("probe: an @ERROR after the greeting is a failure carrying that line", async () => {
  await withServer(async (conn) => {
    await conn.write(enc.encode("@RSYNCD: 31.0\n@ERROR: max connections (5) reached\n"));
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000, { list: true });
    assert.equal(r.ok, false);
    assert.equal(r.greeting, "@RSYNCD: 31.0");
    assert.equal(r.error, "@ERROR: max connections (5) reached");
  });
});

Deno.test("probe: something that is not an rsync daemon is named so, its words cut short", async () => {
  await withServer(async (conn) => {
    await conn.write(enc.encode(`SSH-2.0-OpenSSH_9.6 ${"x".repeat(1000)}\r\n`));
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000);
    assert.equal(r.ok, false);
    assert.match(r.error ?? "", /^not an rsync daemon: "SSH-2\.0-OpenSSH_9\.6 x+\.\.\."$/);
    assert.ok(r.error!.length < 100, r.error);
  });
});

Deno.test("probe: a hostile reply's control characters never reach the error, which stays short", async () => {
  // C0 and C1 (0x9b is a one-byte CSI), and a right-to-left override.
  const evil = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e\x00";
  await withServer(async (conn) => {
    await conn.write(enc.encode(`HTTP/1.1 400 ${evil}\r\n`));
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000);
    assert.equal(
      r.error,
      'not an rsync daemon: "HTTP/1.1 400 \\u001b[2J\\u001b]0;owned\\u0007\\u009b31m\\u0000\\r"',
    );
  });
  await withServer(async (conn) => {
    await conn.write(enc.encode(`@RSYNCD: 31.0\n@ERROR: denied${evil}\t${"x".repeat(5000)}\n`));
    await drain(conn);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 5000, { list: true });
    assert.equal(r.ok, false);
    assert.match(r.error ?? "", /^@ERROR: denied\[2J\]0;owned31m x+…$/);
    assert.equal(r.error!.length, 200);
  });
});

Deno.test("probe: closed before a greeting, or never greeting, is down with the reason", async () => {
  await withServer(async () => {}, async (port) => {
    const r = await probeRsyncd(at(port), 5000);
    assert.deepEqual([r.ok, r.error], [false, "connection closed before the greeting"]);
  });
  await withServer(drain, async (port) => {
    const r = await probeRsyncd(at(port), 50);
    assert.equal(r.ok, false);
    assert.match(r.error ?? "", /^(no greeting within 50ms|timed out after 50ms)$/);
  });
});

Deno.test("probe: a greeting without end is cut off at the bound", async () => {
  await withServer(async (conn) => {
    const chunk = enc.encode("@".repeat(65536));
    for (let i = 0; i < 8; i++) await conn.write(chunk);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 10_000);
    assert.equal(r.ok, false);
    assert.equal(r.error, `the daemon sent more than ${PROBE_MAX_BYTES} bytes`);
  });
});

Deno.test("probe: a daemon answering the module listing without end is cut off", async () => {
  await withServer(async (conn) => {
    const chunk = enc.encode("x".repeat(65536));
    await conn.write(enc.encode("@RSYNCD: 32.0\n"));
    for (let i = 0; i < 64; i++) await conn.write(chunk);
  }, async (port) => {
    const r = await probeRsyncd(at(port), 10_000, { list: true });
    assert.equal(r.ok, false);
    assert.match(r.error ?? "", new RegExp(`more than ${PROBE_MAX_BYTES} bytes`));
  });
});

Deno.test("probe: nothing listening is a refused connection", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const r = await probeRsyncd(at(port), 5000);
  assert.deepEqual([r.ok, r.error], [false, "connection refused"]);
});

Deno.test("describeConnectError: a few words for each kind of failure", () => {
  assert.equal(describeConnectError(new Deno.errors.ConnectionRefused("x")), "connection refused");
  assert.equal(describeConnectError(new Deno.errors.TimedOut("x")), "connect timed out");
  assert.equal(describeConnectError(new Deno.errors.BadResource("x")), "timed out");
  assert.equal(describeConnectError(new Deno.errors.Interrupted("x")), "timed out");
  assert.equal(describeConnectError(new Error("no route to host")), "no route to host");
  assert.equal(describeConnectError("odd"), "odd");
});
