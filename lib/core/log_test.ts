// One line per event: control characters never reach it, secrets are
// redacted, and logfmt quotes what would split or fake a field.
import assert from "node:assert/strict";
import { formatLogfmt, Logger } from "./log.ts";
import { stripControl, stripControlDeep } from "./control_chars.ts";

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
const ESCAPES = "\x1b[2J\x1b]0;owned\x07\r\x9b31m\x00";

function capture(format: "logfmt" | "json", level?: "debug" | "warn") {
  const lines: string[] = [];
  return { lines, log: new Logger({ format, level, sink: (l) => lines.push(l) }) };
}

Deno.test("control characters: stripped from text, from JSON values, and from log lines", () => {
  assert.equal(stripControl(`web1${ESCAPES}`), "web1[2J]0;owned31m");
  assert.equal(stripControl("a\tb\nc\u202ed"), "a\tb\ncd");
  assert.equal(stripControl("a\tb\nc", { oneLine: true }), "a b c");
  assert.deepEqual(stripControlDeep({ [`k${ESCAPES}`]: [`v${ESCAPES}`, 1, null, { x: "\x1b" }] }), {
    "k[2J]0;owned31m": ["v[2J]0;owned31m", 1, null, { x: "" }],
  });
  for (const format of ["logfmt", "json"] as const) {
    const { lines, log } = capture(format);
    log.warn(`msg${ESCAPES}`, {
      bare: "\x1b]0;t\x07",
      error: new Error(`rsync: ${ESCAPES}`),
      nested: { ref: `main${ESCAPES}` },
    });
    assert.doesNotMatch(lines[0], CONTROL, format);
    assert.doesNotMatch(lines[0], /\\u00(1b|07|9b)/i, format);
    assert.match(lines[0], /msg\[2J\]0;owned31m/, format);
  }
});

Deno.test("logger: fields named like a secret are redacted; *_file names stay", () => {
  for (const format of ["logfmt", "json"] as const) {
    const { lines, log } = capture(format);
    log.info("auth", {
      password: "hunter2",
      report_token: "t0k3n",
      Secret: "s",
      credentials: { user: "u", pass: "p" },
      password_file: "/etc/fanout/rsync.secret",
    });
    assert.doesNotMatch(lines[0], /hunter2|t0k3n|"s"|=s\b|"p"/, format);
    assert.equal(lines[0].split("[redacted]").length - 1, 4, `${format}: ${lines[0]}`);
    assert.match(lines[0], /\/etc\/fanout\/rsync\.secret/, format);
  }
});

Deno.test("logger: below its level nothing is written; children add their fields", () => {
  const { lines, log } = capture("json", "warn");
  log.debug("no");
  log.info("no");
  assert.equal(log.enabled("info"), false);
  assert.equal(log.enabled("error"), true);
  const child = log.child({ role: "replica", name: "rsync2" });
  child.warn("yes", { name: "override" });
  child.error("also");
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0]);
  assert.deepEqual([first.level, first.msg, first.role, first.name], [
    "warn",
    "yes",
    "replica",
    "override",
  ]);
  assert.ok(!Number.isNaN(Date.parse(first.ts)));
});

Deno.test("formatLogfmt: bare when safe, quoted when a value could split or fake a field", () => {
  assert.equal(
    formatLogfmt({ level: "info", n: 42, ok: true, none: null, skip: undefined, o: { a: 1 } }),
    'level=info n=42 ok=true none=null o="{\\"a\\":1}"',
  );
  assert.equal(formatLogfmt({ msg: "two words" }), 'msg="two words"');
  assert.equal(formatLogfmt({ path: "a=b" }), 'path="a=b"');
  assert.equal(formatLogfmt({ path: 'say "x"' }), 'path="say \\"x\\""');
  assert.equal(formatLogfmt({ path: "" }), 'path=""');
  assert.equal(formatLogfmt({ path: "a\nlevel=error" }), 'path="a\\nlevel=error"');
  assert.equal(formatLogfmt({ path: "a\x85b\x1b" }), 'path="a\\u0085b\\u001b"');
  assert.equal(formatLogfmt({ path: "café" }), "path=café");
});
