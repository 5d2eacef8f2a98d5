// Every renderer refuses a value that could start a line of its own, even
// when validation is bypassed (a Fleet built in code), and rsyncd.conf values
// also what rsyncd would read differently. The fleet file's own checks are in
// config_test.ts.
import assert from "node:assert/strict";
import { commonOptions, type Fleet, parseFleet, rsyncdValue } from "../lib/config/mod.ts";
import { renderRsyncdConf } from "../lib/rsyncd/mod.ts";
import { CONTROL_CHARS, FanoutError, renderTemplate, UnsafeValueError } from "../lib/core/mod.ts";
import { renderer } from "../lib/render/mod.ts";
import { sh } from "./_helpers.ts";

const renderNginx = await renderer("nginx");
const renderHaproxy = await renderer("haproxy");
const renderSystemd = await renderer("systemd");
const renderCron = await renderer("cron");
const renderPostReceive = await renderer("post-receive");

const FLEET = `tree: plugins
primary: {name: rsync1, address: 127.0.0.2, path: /srv/plugins}
replicas:
  - {name: rsync2, address: 127.0.0.3, path: /srv/plugins}
publisher: {name: git1, address: 127.0.0.4, repo: /srv/git/plugins.git}
proxy: {listen: "127.0.0.5:873", backends: [rsync1, rsync2]}
client: {dest: /opt/plugins}
`;
const ATTACK = "/srv/t\n[evil]\n path = /\n read only = no\n hosts allow = *";
const opts = commonOptions({ logLevel: "warn" });
const id = { asRoot: true, uid: "0", gid: "0" };

async function fleet(): Promise<Fleet> {
  return await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
}

/** Every renderer, on `f`. */
function renderAll(f: Fleet): [string, () => unknown][] {
  return [
    ["rsyncd primary", () => renderRsyncdConf(f, f.primary, id)],
    ["rsyncd replica", () => renderRsyncdConf(f, f.replicas[0], id)],
    ["nginx", () => renderNginx({ fleet: f, opts })],
    ["haproxy", () => renderHaproxy({ fleet: f, opts })],
    ["systemd", () => renderSystemd({ fleet: f, role: "primary", opts })],
    ["cron", () => renderCron({ fleet: f, role: "client", opts })],
    ["post-receive", () => renderPostReceive({ fleet: f, opts })],
  ];
}

Deno.test("renderers: the valid fleet renders everywhere (the baseline of the refusals below)", async () => {
  for (const [what, render] of renderAll(await fleet())) {
    assert.equal(typeof render(), "string", what);
  }
});

Deno.test("renderers: a newline or another control character in any value is refused by every renderer, exit 2", async () => {
  for (const bad of ["\n", "\r", "\x00", "\x1b[2J", "\x85", "\u009b"]) {
    const f = await fleet();
    f.file = `/etc/fanout/fleet${bad}.yaml`; // every file's first line names it
    for (const [what, render] of renderAll(f)) {
      assert.throws(render, (e) => {
        assert.ok(e instanceof FanoutError, `${what}: ${e}`);
        assert.equal(e.exitCode, 2);
        assert.match(e.message, /control character/, what);
        assert.doesNotMatch(e.message, CONTROL_CHARS, `${what}: the message is safe`);
        return true;
      });
    }
  }
});

Deno.test("renderers: the rsyncd.conf attack (a path, uid, gid or secrets file with a section in it) is refused", async () => {
  const cases: [string, (f: Fleet) => void, typeof id?][] = [
    ["path", (f) => (f.primary.path = ATTACK)],
    ["uid", () => {}, { ...id, uid: "0\n[evil]\n path = /" }],
    ["gid", () => {}, { ...id, gid: "0\r\n[evil]" }],
    ["secrets_file", (f) => (f.auth.secretsFile = "/etc/s\n[evil]\n path = /")],
  ];
  for (const [what, mutate, who] of cases) {
    const f = await fleet();
    mutate(f);
    assert.throws(() => renderRsyncdConf(f, f.primary, who ?? id), UnsafeValueError, what);
  }
  const f = await fleet();
  f.primary.path = ATTACK;
  assert.throws(
    () => renderRsyncdConf(f, f.primary, id),
    /^UnsafeValueError: cannot render path = "\/srv\/t\\n\[evil\]\\n path = \/\\n read only = no\\n .*": it holds a control character/,
  );
});

Deno.test("renderers: rsyncd.conf values rsyncd would read differently are refused (edge spaces, a trailing backslash, %VAR%)", async () => {
  const cases: [string, RegExp][] = [
    ["/srv/t ", /ends with a space/],
    ["/srv/t\\", /joins the next line/],
    ["/srv/%HOME%/t", /environment variable/],
    ["/srv/%RSYNC_USER_NAME%", /environment variable/],
  ];
  for (const [path, re] of cases) {
    const f = await fleet();
    f.primary.path = path;
    assert.throws(() => renderRsyncdConf(f, f.primary, id), re, path);
  }
  // What rsyncd keeps as written renders as written.
  for (const path of ["/srv/50%/t", "/srv/a#b", "/srv/[x]", "/srv/a b", "/srv/%home%"]) {
    const f = await fleet();
    f.primary.path = path;
    const text = renderRsyncdConf(f, f.primary, id);
    assert.ok(text.includes(`    path = ${path}\n`), path);
  }
  assert.equal(renderTemplate("path = {{p}}\n", { p: "/srv/t" }, rsyncdValue), "path = /srv/t\n");
});

Deno.test("renderers: a hostile version marker (from the tree an upstream wrote) stays inside the comment's line", async () => {
  const f = await fleet();
  const text = renderRsyncdConf(f, f.replicas[0], id, {
    version: {
      seq: 7,
      commit: "ab\n[evil]\n path = /",
      ref: "%HOME%",
      published_at: "2026\x85\\",
    },
  });
  const comment = text.split("\n").find((l) => l.includes("fanout-version"))!;
  assert.match(
    comment,
    /^ {4}comment = plugins \(read only\) fanout-version seq=7 commit=ab_\[evil\]_/,
  );
  assert.doesNotMatch(comment, /[%\\\x85]/);
  assert.doesNotMatch(text, /^\[evil\]/m);
});

Deno.test("render nginx / haproxy: the files work on a fresh host, where fanout never ran (nginx -t -c, haproxy -c, as the README says)", async () => {
  const f = await fleet(); // state_dir /var/lib/fanout: absent on a host that only balances
  const dir = await Deno.makeTempDir({ prefix: "fanout-render-lb-" });
  try {
    const nginx = `${dir}/fanout-rsync.conf`;
    const haproxy = `${dir}/fanout-rsync.cfg`;
    await Deno.writeTextFile(nginx, await renderNginx({ fleet: f, opts }));
    await Deno.writeTextFile(haproxy, await renderHaproxy({ fleet: f, opts }));
    assert.doesNotMatch(await Deno.readTextFile(nginx), /\/var\/lib\/fanout/);
    assert.doesNotMatch(await Deno.readTextFile(haproxy), /\/var\/lib\/fanout/);
    // A fresh host: empty /run and /var/log/nginx (a private mount namespace,
    // so this machine's own stay untouched), and no fanout state dir.
    const fresh = (cmd: string) =>
      sh("unshare", [
        "-m",
        "sh",
        "-c",
        `mount -t tmpfs none /run && mount -t tmpfs none /var/log/nginx && ` +
        `test ! -e /var/lib/fanout && ${cmd}`,
      ]);
    const n = await fresh(`nginx -t -c ${nginx}`);
    assert.equal(n.code, 0, n.stderr);
    assert.match(n.stderr, /test is successful/);
    const h = await fresh(`haproxy -c -f ${haproxy}`);
    assert.equal(h.code, 0, h.stderr + h.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
