// The PROXY v1 line the proxy sends before a client's bytes: the client and
// the address it dialled, in one family, or UNKNOWN when they cannot be told.
import assert from "node:assert/strict";
import { PROXY_V1_UNKNOWN, proxyV1Header } from "./proxy_protocol.ts";

const dec = (u: Uint8Array) => new TextDecoder().decode(u);
const a = (hostname: string, port: number): Deno.NetAddr => ({
  transport: "tcp",
  hostname,
  port,
});

Deno.test("proxyV1Header: TCP4, TCP6, mapped IPv4, and UNKNOWN for mixed families", () => {
  assert.equal(
    dec(proxyV1Header(a("10.0.0.7", 51234), a("10.0.0.20", 873))),
    "PROXY TCP4 10.0.0.7 10.0.0.20 51234 873\r\n",
  );
  assert.equal(
    dec(proxyV1Header(a("2001:db8::7", 5), a("2001:db8::1", 873))),
    "PROXY TCP6 2001:db8::7 2001:db8::1 5 873\r\n",
  );
  assert.equal(
    dec(proxyV1Header(a("::ffff:10.0.0.7", 5), a("::ffff:10.0.0.20", 873))),
    "PROXY TCP4 10.0.0.7 10.0.0.20 5 873\r\n",
  );
  assert.equal(
    dec(proxyV1Header(a("::FFFF:10.0.0.7", 5), a("10.0.0.20", 873))),
    "PROXY TCP4 10.0.0.7 10.0.0.20 5 873\r\n",
    "a mapped client on a dual-stack socket meets a plain IPv4 listen address",
  );
  assert.equal(dec(proxyV1Header(a("10.0.0.7", 5), a("::1", 873))), "PROXY UNKNOWN\r\n");
});

Deno.test("proxyV1Header: anything but TCP is UNKNOWN", () => {
  const unix: Deno.UnixAddr = { transport: "unix", path: "/run/x.sock" };
  assert.equal(proxyV1Header(unix, a("10.0.0.20", 873)), PROXY_V1_UNKNOWN);
  assert.equal(proxyV1Header(a("10.0.0.7", 5), unix), PROXY_V1_UNKNOWN);
  assert.equal(dec(PROXY_V1_UNKNOWN), "PROXY UNKNOWN\r\n");
});

Deno.test("proxyV1Header: the longest header fits the protocol's 107 bytes, in one line", () => {
  const v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const h = proxyV1Header(a(v6, 65535), a(v6, 65535));
  assert.ok(h.length <= 107, `${h.length} bytes`);
  const text = dec(h);
  assert.equal(text.indexOf("\r\n"), text.length - 2);
  assert.equal(text.split(" ").length, 6);
});
