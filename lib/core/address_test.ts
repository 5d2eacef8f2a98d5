// IP literals and host:port pairs as the fleet file writes them: names and
// near-misses are refused, so rsync's --address and hosts allow get an IP.
import assert from "node:assert/strict";
import {
  dialable,
  formatHostPort,
  type HostPort,
  isIp,
  isWildcard,
  parseHostPort,
} from "./address.ts";

Deno.test("isIp: IPv4 and IPv6 literals", () => {
  for (
    const ip of [
      "127.0.0.2",
      "0.0.0.0",
      "255.255.255.255",
      "10.0.0.3",
      "::",
      "::1",
      "fe80::1",
      "FD00::3",
      "2001:db8:0:0:0:0:0:1",
    ]
  ) {
    assert.equal(isIp(ip), true, ip);
  }
});

Deno.test("isIp: names, near-misses and hostile text are not IPs", () => {
  for (
    const text of [
      "",
      "rsync1",
      "localhost",
      "256.0.0.1",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "1.2.3.4 ",
      "1.2.3.4\n",
      "1.2.3.4\nhosts allow = *",
      "[::1]",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "fe80::1%eth0",
      "abcd",
      "g::1",
      "1.2.3.4/24",
      "١.٢.٣.٤",
      "1".repeat(100_000),
    ]
  ) {
    assert.equal(isIp(text), false, JSON.stringify(text.slice(0, 30)));
  }
});

Deno.test("isWildcard: only the two listen-everywhere addresses", () => {
  assert.equal(isWildcard("0.0.0.0"), true);
  assert.equal(isWildcard("::"), true);
  for (const h of ["127.0.0.1", "::1", "0.0.0.1", "0:0:0:0:0:0:0:0"]) {
    assert.equal(isWildcard(h), false, h);
  }
});

Deno.test("parseHostPort: IPv4, bracketed IPv6, the port's whole range", () => {
  assert.deepEqual(parseHostPort("127.0.0.2:8873"), { host: "127.0.0.2", port: 8873 });
  assert.deepEqual(parseHostPort("[::1]:873"), { host: "::1", port: 873 });
  assert.deepEqual(parseHostPort("[fd00::3]:1"), { host: "fd00::3", port: 1 });
  assert.deepEqual(parseHostPort("0.0.0.0:65535"), { host: "0.0.0.0", port: 65535 });
});

Deno.test("parseHostPort: no port, a bad port, a name or an unbracketed IPv6 is null", () => {
  for (
    const text of [
      "",
      "10.0.0.3",
      "10.0.0.3:",
      "10.0.0.3:0",
      "10.0.0.3:65536",
      "10.0.0.3:-1",
      "10.0.0.3:+873",
      "10.0.0.3: 873",
      "10.0.0.3:873 ",
      "10.0.0.3:873\n",
      "10.0.0.3:8.5",
      "10.0.0.3:99999999999999999999999",
      "rsync1:873",
      "::1:873",
      "[::1]",
      "[::1]873",
      "[rsync1]:873",
      "[10.0.0.3:873",
      ":873",
      `10.0.0.3:${"9".repeat(100_000)}`,
    ]
  ) {
    assert.equal(parseHostPort(text), null, JSON.stringify(text.slice(0, 30)));
  }
});

Deno.test("formatHostPort: brackets IPv6; parseHostPort reads it back", () => {
  const pairs: [HostPort, string][] = [
    [{ host: "10.0.0.3", port: 873 }, "10.0.0.3:873"],
    [{ host: "::1", port: 873 }, "[::1]:873"],
    [{ host: "::", port: 10873 }, "[::]:10873"],
  ];
  for (const [hp, text] of pairs) {
    assert.equal(formatHostPort(hp), text);
    assert.deepEqual(parseHostPort(text), hp);
  }
});

Deno.test("dialable: a wildcard listen is dialled at the host's address; any other as it is", () => {
  assert.deepEqual(dialable({ host: "0.0.0.0", port: 8873 }, "10.0.0.10"), {
    host: "10.0.0.10",
    port: 8873,
  });
  assert.deepEqual(dialable({ host: "::", port: 9 }, "fd00::10"), { host: "fd00::10", port: 9 });
  const fixed = { host: "127.0.0.3", port: 8873 };
  assert.equal(dialable(fixed, "10.0.0.10"), fixed);
});
