// One parser and one builder for rsync:// URLs; hostile text is refused.
import assert from "node:assert/strict";
import { formatRsyncUrl, parseRsyncUrl, RSYNC_URL_MAX } from "./rsync_url.ts";

Deno.test("parseRsyncUrl: user, host, port, module and path", () => {
  assert.deepEqual(parseRsyncUrl("rsync://lb:873/plugins/"), {
    user: null,
    host: "lb",
    port: 873,
    module: "plugins",
    path: "/",
  });
  assert.deepEqual(parseRsyncUrl("rsync://apps@10.0.0.3:10873/plugins-push/a/b.txt"), {
    user: "apps",
    host: "10.0.0.3",
    port: 10873,
    module: "plugins-push",
    path: "/a/b.txt",
  });
  assert.deepEqual(parseRsyncUrl("rsync://lb.example.com/plugins"), {
    user: null,
    host: "lb.example.com",
    port: 873,
    module: "plugins",
    path: "",
  });
});

Deno.test("parseRsyncUrl: IPv6 only in brackets", () => {
  assert.deepEqual(parseRsyncUrl("rsync://[::1]:10873/t/"), {
    user: null,
    host: "::1",
    port: 10873,
    module: "t",
    path: "/",
  });
  assert.equal(parseRsyncUrl("rsync://[fd00::7]/t/")?.port, 873);
  assert.equal(parseRsyncUrl("rsync://::1:873/t/"), null);
  assert.equal(parseRsyncUrl("rsync://[lb]/t/"), null);
  assert.equal(parseRsyncUrl("rsync://[10.0.0.3]/t/"), null);
  assert.equal(parseRsyncUrl("rsync://[::1/t/"), null);
});

Deno.test("parseRsyncUrl: ports outside 1..65535 and empty ports are refused", () => {
  for (const port of ["0", "65536", "99999", "", "123456", "-1", "8a"]) {
    assert.equal(parseRsyncUrl(`rsync://lb:${port}/t/`), null, port);
  }
  assert.equal(parseRsyncUrl("rsync://lb:65535/t/")?.port, 65535);
  assert.equal(parseRsyncUrl("rsync://lb:1/t/")?.port, 1);
});

Deno.test("parseRsyncUrl: other shapes are refused", () => {
  for (
    const url of [
      "",
      "rsync://",
      "rsync://lb",
      "rsync://lb/",
      "rsync://lb//",
      "rsync:///t/",
      "http://lb/t/",
      "RSYNC://lb/t/",
      "lb::t",
      "/srv/t/",
      "rsync://a@b@lb/t/",
      "rsync://user:pw@lb/t/",
      "rsync://@lb/t/",
      "rsync://lb/./",
      "rsync://lb/../etc/",
      "rsync://lb/t/../../etc",
      "rsync://lb/t/a//b",
      "rsync://lb/t/./x",
      "rsync://-lb/t/",
      "rsync://lb-/t/",
      "rsync://lb..x/t/",
      "rsync://999.1.1.1/t/",
      "rsync://l%62/t/",
    ]
  ) {
    assert.equal(parseRsyncUrl(url), null, url);
  }
});

Deno.test("parseRsyncUrl: white space, control and invisible characters are refused", () => {
  for (const c of [" ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\x9b", "\u202e", "\u200b"]) {
    assert.equal(parseRsyncUrl(`rsync://lb/t/a${c}b`), null, JSON.stringify(c));
    assert.equal(parseRsyncUrl(`rsync://lb${c}/t/`), null, JSON.stringify(c));
    assert.equal(parseRsyncUrl(`rsync://u${c}@lb/t/`), null, JSON.stringify(c));
  }
});

Deno.test("parseRsyncUrl: length is bounded", () => {
  const at = "rsync://lb/t/";
  const dirs = (n: number) => Array.from({ length: n }, () => "d".repeat(200)).join("/");
  assert.ok(parseRsyncUrl(at + dirs(20)));
  assert.equal(parseRsyncUrl(at + dirs(21)), null);
  assert.equal(parseRsyncUrl(at + "d".repeat(RSYNC_URL_MAX)), null);
  assert.equal(parseRsyncUrl(`rsync://lb/${"m".repeat(256)}/`), null);
  assert.equal(parseRsyncUrl(`rsync://${"a".repeat(64)}.lb/t/`), null);
  assert.equal(parseRsyncUrl(`rsync://${"u".repeat(65)}@lb/t/`), null);
});

Deno.test("formatRsyncUrl: writes the port always, brackets IPv6, a trailing slash by default", () => {
  assert.equal(
    formatRsyncUrl({ host: "127.0.0.3", port: 10873, module: "plugins-push", user: "apps" }),
    "rsync://apps@127.0.0.3:10873/plugins-push/",
  );
  assert.equal(formatRsyncUrl({ host: "::1", port: 873, module: "t" }), "rsync://[::1]:873/t/");
  assert.equal(
    formatRsyncUrl({ host: "lb", port: 873, module: "t", path: "/.fanout-version" }),
    "rsync://lb:873/t/.fanout-version",
  );
});

Deno.test("formatRsyncUrl and parseRsyncUrl: a round trip keeps every part", () => {
  for (
    const url of [
      "rsync://apps@[fd00::7]:10873/plugins-push/",
      "rsync://10.0.0.3:873/t",
      "rsync://lb.example.com:8873/t/dir/file.txt",
    ]
  ) {
    assert.equal(formatRsyncUrl(parseRsyncUrl(url)!), url);
  }
});
