// The native proxy engines' socket addresses: what the proxy logs and puts in PROXY
// headers comes from these bytes, so each form round-trips as Deno prints it.
import assert from "node:assert/strict";
import { decodeSockAddr, encodeSockAddr } from "../../sys/mod.ts";

Deno.test("native proxy engines: socket addresses round-trip as Deno writes them; names are left to the resolver", () => {
  const cases: [string, string][] = [
    ["127.0.0.2", "127.0.0.2"],
    ["0.0.0.0", "0.0.0.0"],
    ["::", "::"],
    ["::1", "::1"],
    ["[::1]", "::1"],
    ["fe80::1:2", "fe80::1:2"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["::ffff:10.0.0.7", "::ffff:10.0.0.7"],
  ];
  for (const [input, printed] of cases) {
    const sa = encodeSockAddr(input, 8873);
    assert.ok(sa, input);
    assert.deepEqual(decodeSockAddr(sa.buf), { transport: "tcp", hostname: printed, port: 8873 });
  }
  for (
    const name of ["localhost", "rsync1.example", "1.2.3", "256.1.1.1", "1::2::3", "fe80::1%eth0"]
  ) {
    assert.equal(encodeSockAddr(name, 873), null, name);
  }
});
