import assert from "node:assert/strict";
import { ConfigError, parseDuration, parseHostPort } from "../core/mod.ts";
import { downstreamsOf, flagsOnlyFleet, parseFleet, selectServer, writersOf } from "./config.ts";

const BASE = `tree: plugins
primary:
  name: rsync1
  address: 10.0.0.10
  path: /data/rsync/plugins
publisher:
  name: git1
  address: 10.0.0.5
replicas:
  - name: rsync2
    address: 10.0.0.11
    path: /data/rsync/plugins
  - name: rsync3
    address: 10.0.0.12
    path: /data/rsync/plugins
    upstream: rsync2
proxy:
  listen: 0.0.0.0:873
  address: 10.0.0.20
client:
  dest: /apps/dat/plugins
`;

async function problems(text: string): Promise<string[]> {
  try {
    await parseFleet(text, "fanout.yaml");
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    assert.equal(e.exitCode, 2);
    return e.message.split("\n");
  }
  throw new Error("expected the fleet file to be rejected");
}

Deno.test("config: a minimal fleet file gets every default", async () => {
  const f = await parseFleet(BASE, "/etc/fanout/fanout.yaml");
  assert.equal(f.modules.read, "plugins");
  assert.equal(f.modules.write, "plugins-push");
  assert.deepEqual(f.primary.listen, { host: "10.0.0.10", port: 873 });
  assert.deepEqual(f.primary.health, { host: "10.0.0.10", port: 8873 });
  assert.equal(f.primary.maxConnections, 1000);
  assert.equal(f.replicas[0].maxConnections, 200);
  assert.equal(f.replicas[0].upstream, "rsync1");
  assert.equal(f.replicas[1].upstream, "rsync2");
  assert.equal(f.primary.stateDir, "/var/lib/fanout/rsync1");
  assert.equal(f.push.debounce, 0);
  assert.equal(f.push.reconcile, 300_000);
  assert.deepEqual(f.push.exclude, [".git"]);
  assert.equal(f.client.source, "rsync://10.0.0.20:873/plugins/");
  assert.equal(f.client.splay, 30_000);
  assert.deepEqual(f.proxy?.backends, ["rsync1", "rsync2", "rsync3"]);
  assert.deepEqual(writersOf(f, f.primary), ["10.0.0.5"]);
  assert.deepEqual(writersOf(f, f.replicas[1]), ["10.0.0.11"]);
  assert.deepEqual(downstreamsOf(f, "rsync2").map((r) => r.name), ["rsync3"]);
  assert.equal(selectServer(f, "replica", "rsync3").name, "rsync3");
});

Deno.test("config: client.notify is the health endpoint of the host the source names, or given, or off", async () => {
  const notify = async (client: string, text = BASE) =>
    (await parseFleet(text.replace("client:\n", `client:\n${client}`), "f.yaml")).client.notify;
  // The default source is the proxy: its health port, dialled at its address.
  assert.deepEqual(await notify(""), { host: "10.0.0.20", port: 8874 });
  assert.deepEqual(await notify("  source: rsync://10.0.0.11:873/plugins/\n"), {
    host: "10.0.0.11",
    port: 8873,
  });
  const wildcard = BASE.replace(
    "    address: 10.0.0.12\n",
    "    address: 10.0.0.12\n    health: 0.0.0.0:9000\n",
  );
  assert.deepEqual(await notify("  source: rsync://10.0.0.12/plugins/\n", wildcard), {
    host: "10.0.0.12",
    port: 9000,
  });
  assert.equal(await notify("  source: rsync://10.0.0.99:873/plugins/\n"), null, "no fleet host");
  assert.equal(await notify("  source: rsync://10.0.0.11:874/plugins/\n"), null, "another port");
  assert.deepEqual(await notify("  notify: 10.0.0.30:9999\n"), { host: "10.0.0.30", port: 9999 });
  assert.equal(await notify("  notify: off\n"), null);
  assert.match(
    (await problems(BASE.replace("client:\n", "client:\n  notify: http://x/\n"))).join("\n"),
    /client\.notify: expected host:port with an IP address, or off/,
  );
  // Without a fleet file the placeholder primary is no server: only --notify names one.
  const src = { path: ["client", "source"], value: "rsync://127.0.0.1/plugins/", flag: "--source" };
  assert.equal((await flagsOnlyFleet([src])).client.notify, null);
  const given = { path: ["client", "notify"], value: "127.0.0.1:8873", flag: "--notify" };
  assert.deepEqual((await flagsOnlyFleet([src, given])).client.notify, {
    host: "127.0.0.1",
    port: 8873,
  });
});

Deno.test("config: existing module names are kept", async () => {
  const f = await parseFleet(
    BASE + "modules:\n  read: plugins_read\n  write: plugins_write\n",
    "f.yaml",
  );
  assert.deepEqual(f.modules, { read: "plugins_read", write: "plugins_write" });
  assert.equal(f.client.source, "rsync://10.0.0.20:873/plugins_read/");
});

Deno.test("config: a bad address names the key path, the line and the value", async () => {
  const text = BASE.replace(
    "    address: 10.0.0.11\n",
    "    address: 10.0.0.11\n    listen: 10.0.0.3\n",
  );
  const p = await problems(text);
  assert.deepEqual(p, [
    'fanout.yaml:12: replicas[0].listen: expected host:port with an IP address, got "10.0.0.3"',
  ]);
});

Deno.test("config: unknown keys get a did-you-mean", async () => {
  const p = await problems(
    BASE.replace("    address: 10.0.0.11\n", "    address: 10.0.0.11\n    lsiten: 10.0.0.11:873\n"),
  );
  assert.equal(p.length, 1);
  assert.match(
    p[0],
    /^fanout\.yaml:12: replicas\[0\]\.lsiten: unknown key \(did you mean "listen"\?\)$/,
  );
  const top = await problems(BASE + "pushh:\n  debounce: 1s\n");
  assert.match(top[0], /pushh: unknown key \(did you mean "push"\?\)/);
});

Deno.test("config: bad durations, ports, counts and paths", async () => {
  const cases: [string, RegExp][] = [
    ["push:\n  debounce: 30\n", /push\.debounce: expected a duration with a unit.*got number 30/],
    ["push:\n  reconcile: 5 minutes\n", /push\.reconcile: expected a duration.*got "5 minutes"/],
    [
      "push:\n  reconcile: 30d\n",
      /push\.reconcile: "30d" is too long: the most is 2147483647ms \(about 24\.8 days\)$/,
    ],
    [
      `push:\n  debounce: ${"9".repeat(400)}s\n`,
      /push\.debounce: "9+\.\.\." is too long: the most/,
    ],
    [
      "client:\n  dest: relative/dir\n",
      /client\.dest: expected an absolute path, got "relative\/dir"/,
    ],
    [
      "push:\n  concurrency: 0\n",
      /push\.concurrency: expected an integer from 1 to 256, got number 0/,
    ],
    ["state_dir: var/lib\n", /state_dir: expected an absolute path/],
    ["client:\n  source: http://x/\n", /client\.source: expected an rsync URL/],
  ];
  for (const [extra, re] of cases) {
    const text = extra.startsWith("client:")
      ? BASE.replace(/client:\n {2}dest: .*\n/, "") + extra
      : BASE + extra;
    const p = await problems(text);
    assert.ok(p.some((l) => re.test(l)), `${re} not in ${JSON.stringify(p)}`);
  }
  const port = await problems(BASE.replace("  listen: 0.0.0.0:873", "  listen: 0.0.0.0:70000"));
  assert.match(port[0], /proxy\.listen: expected host:port/);
});

Deno.test("config: an exclude pattern the watcher would misread is refused, naming it", async () => {
  const backwards = await problems(BASE + 'push: {exclude: [".git", "*.[z-a]"]}\n');
  assert.deepEqual(backwards, [
    'fanout.yaml:22: push.exclude: a list holds the pattern "*.[z-a]": its range z-a runs backwards (write a-z)',
  ]);
  const long = await problems(BASE + `push: {exclude: ["${"x".repeat(1025)}"]}\n`);
  assert.match(
    long[0],
    /push\.exclude: a list holds the pattern "x+\.\.\.": it is longer than 1024/,
  );
  const f = await parseFleet(BASE + 'push: {exclude: ["*a*a*a*a*b", "[a-z]*", "a["]}\n', "f.yaml");
  assert.deepEqual(f.push.exclude, ["*a*a*a*a*b", "[a-z]*", "a["]);
});

Deno.test("config: missing required keys", async () => {
  const p = await problems("tree: plugins\n");
  assert.match(p[0], /primary: missing: expected a mapping/);
  const q = await problems("primary:\n  name: a\n  address: 10.0.0.1\n");
  assert.ok(q.some((l) => /tree: missing/.test(l)));
  assert.ok(q.some((l) => /primary\.path: missing: expected an absolute path/.test(l)));
});

Deno.test("config: duplicate names, unknown upstreams and backends, cycles", async () => {
  const dup = await problems(BASE.replace("  - name: rsync3", "  - name: rsync2"));
  assert.ok(
    dup.some((l) => /replicas\[1\]\.name: duplicate name "rsync2" \(also replicas\[0\]\)/.test(l)),
    dup.join("\n"),
  );
  const up = await problems(BASE.replace("upstream: rsync2", "upstream: rsync9"));
  assert.match(
    up[0],
    /replicas\[1\]\.upstream: no server named "rsync9" \(servers: rsync1, rsync2, rsync3\)/,
  );
  const be = await problems(
    BASE.replace("  address: 10.0.0.20", "  address: 10.0.0.20\n  backends: [rsync1, rsync7]"),
  );
  assert.match(be[0], /proxy\.backends\[1\]: no server named "rsync7"/);
  const cyc = await problems(
    BASE.replace("    address: 10.0.0.11\n", "    address: 10.0.0.11\n    upstream: rsync3\n"),
  );
  assert.ok(cyc.some((l) => /upstream cycle: rsync2 -> rsync3 -> rsync2/.test(l)), cyc.join("\n"));
  const self = await problems(BASE.replace("upstream: rsync2", "upstream: rsync3"));
  assert.match(self[0], /"rsync3" cannot be its own upstream/);
});

Deno.test("config: clashing listen addresses and same module names", async () => {
  const text = BASE.replace(
    "    address: 10.0.0.12\n",
    "    address: 10.0.0.12\n    listen: 10.0.0.11:873\n",
  );
  const p = await problems(text);
  assert.ok(
    p.some((l) =>
      /replicas\[1\]\.listen: 10\.0\.0\.11:873 is also used by replicas\[0\]\.listen/.test(l)
    ),
  );
  const m = await problems(BASE + "modules:\n  read: x\n  write: x\n");
  assert.match(m[0], /modules\.write: the read and write modules must have different names/);
});

Deno.test("config: not YAML, or not a mapping", async () => {
  const p = await problems("tree: [unclosed\n");
  assert.match(p[0], /^fanout\.yaml:\d+: not valid YAML/);
  const q = await problems("- a\n- b\n");
  assert.match(q[0], /expected a mapping of keys at the top/);
});

Deno.test("config: a hostname is not an address", async () => {
  const p = await problems(BASE.replace("address: 10.0.0.11", "address: rsync2.example.com"));
  assert.match(p[0], /replicas\[0\]\.address: expected an IP address.*got "rsync2\.example\.com"/);
});

Deno.test("config: overrides from flags are validated and named by flag", async () => {
  const f = await parseFleet(BASE, "f.yaml", {
    overrides: [{ path: ["@host", "listen"], value: "10.0.0.11:1873", flag: "--listen" }],
    self: { role: "replica", name: "rsync2" },
  });
  assert.equal(f.replicas[0].listen.port, 1873);
  try {
    await parseFleet(BASE, "f.yaml", {
      overrides: [{ path: ["push", "debounce"], value: "soon", flag: "--debounce" }],
    });
    assert.fail("accepted");
  } catch (e) {
    assert.equal(
      (e as Error).message,
      '--debounce: expected a duration with a unit, like "200ms", "2s" or "5m", got "soon"',
    );
  }
});

Deno.test("config: selectServer explains a missing host", async () => {
  const f = await parseFleet(BASE, "f.yaml");
  assert.throws(
    () => selectServer(f, "replica", "rsync9"),
    /no replica named "rsync9"; replicas: rsync2, rsync3/,
  );
  assert.throws(() => selectServer(f, "primary", "rsync2"), /--name rsync2 is a replica here/);
});

Deno.test("duration and address parsing", () => {
  assert.equal(parseDuration("200ms"), 200);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("5"), null);
  assert.equal(parseDuration("-1s"), null);
  assert.deepEqual(parseHostPort("[::1]:873"), { host: "::1", port: 873 });
  assert.equal(parseHostPort("localhost:873"), null);
  assert.equal(parseHostPort("10.0.0.1:0"), null);
  assert.equal(parseHostPort("256.0.0.1:1"), null);
});

Deno.test("config: proxy_listen defaults to the listen port + 1 and must not clash when used", async () => {
  const f = await parseFleet(BASE, "f.yaml");
  assert.deepEqual(f.primary.proxyListen, { host: "10.0.0.10", port: 874 });
  assert.equal(f.proxy?.proxyProtocol, false);
  // Unused without proxy_protocol: a clash with it is no problem.
  const clash = BASE.replace(
    "    address: 10.0.0.11\n",
    "    address: 10.0.0.11\n    health: 10.0.0.11:874\n    listen: 10.0.0.11:873\n",
  );
  await parseFleet(clash, "f.yaml");
  const p = await problems(
    clash.replace("  address: 10.0.0.20\n", "  address: 10.0.0.20\n  proxy_protocol: true\n"),
  );
  assert.ok(
    p.some((l) =>
      /replicas\[0\]\.proxy_listen: 10\.0\.0\.11:874 is also used by replicas\[0\]\.health/.test(l)
    ),
    p.join("\n"),
  );
  const bad = await problems(
    BASE.replace("    address: 10.0.0.11\n", "    address: 10.0.0.11\n    proxy_listen: 874\n"),
  );
  assert.match(bad[0], /replicas\[0\]\.proxy_listen: expected host:port/);
});

Deno.test("config: a control character in any value or key is refused, naming the key and the host", async () => {
  const attack = '"/srv/t\\n[evil]\\n path = /\\n read only = no\\n hosts allow = *"';
  const cases: [string, RegExp][] = [
    [
      BASE.replace("  path: /data/rsync/plugins\npublisher", `  path: ${attack}\npublisher`),
      /^fanout\.yaml:5: primary\.path: \(host "rsync1"\) holds a newline: "\/srv\/t\\n\[evil\]\\n path = \/\\n read only = no\\n hosts allow = \*"; no fleet-file value may hold control characters/,
    ],
    [BASE + 'uid: "0\\n[evil]"\n', /^fanout\.yaml:\d+: uid: holds a newline: "0\\n\[evil\]"/],
    [BASE + 'gid: "apps\\r"\n', /^fanout\.yaml:\d+: gid: holds a carriage return/],
    [
      BASE + 'auth: {secrets_file: "/etc/s\\n[evil]"}\n',
      /^fanout\.yaml:\d+: auth\.secrets_file: holds a newline/,
    ],
    [
      BASE.replace("    upstream: rsync2", '    upstream: rsync2\n    path: "/x\\ty"')
        .replace("    path: /data/rsync/plugins\n    upstream", "    upstream"),
      /replicas\[1\]\.path: \(host "rsync3"\) holds a tab/,
    ],
    [
      BASE + 'push: {exclude: ["*.tmp", "a\\u0085b"]}\n',
      /push\.exclude\[1\]: holds the control character "\\u0085"/,
    ],
    [
      BASE + 'rsync: {path: "/usr/bin/rsync\\u001b[2J"}\n',
      /rsync\.path: holds the control character "\\u001b"/,
    ],
    [BASE + 'nonsense: "a\\nb"\n', /nonsense: holds a newline/],
    [BASE + '"bad\\nkey": 1\n', /fanout\.yaml:\d+: a key holds a control character: "bad\\nkey"/],
  ];
  for (const [text, re] of cases) {
    const lines = await problems(text);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], re);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(lines[0], /[\x00-\x1f\x7f-\x9f]/, "the message itself is safe to print");
  }
});

Deno.test("config: paths, uid and gid that rsyncd.conf would read differently are refused", async () => {
  const cases: [string, RegExp][] = [
    ['uid: " 0"\n', /uid: " 0" starts or ends with a space, which rsyncd.conf drops/],
    ['gid: "apps "\n', /gid: "apps " starts or ends with a space/],
    ['uid: "%USER%"\n', /uid: "%USER%" holds %NAME%, which rsyncd.conf replaces/],
    [
      'state_dir: "/var/lib/fanout\\\\"\n',
      /state_dir: .* ends with a backslash, which joins the next line/,
    ],
    ['auth: {secrets_file: "/etc/%HOME%/s"}\n', /auth\.secrets_file: .*holds %NAME%/],
    ["state_dir: /var/lib/./fanout\n", /state_dir: "\/var\/lib\/\.\/fanout" has a \. or \.\. part/],
    ["state_dir: /var/lib/../etc\n", /has a \. or \.\. part/],
  ];
  for (const [extra, re] of cases) {
    const lines = await problems(BASE + extra);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], re);
  }
  // What rsyncd keeps as written is fine.
  const ok = await parseFleet(
    BASE.replace("  path: /data/rsync/plugins\npublisher", "  path: /srv/50%/a#b c\npublisher") +
      'uid: apps\ngid: "1000"\n',
    "fanout.yaml",
  );
  assert.equal(ok.primary.path, "/srv/50%/a#b c");
});

Deno.test("config: a fleet file over 1 MiB is refused before parsing; a file of many bad keys lists 20", async () => {
  const big = BASE + "junk:\n" + "  k: 1\n".repeat(160_000); // 1.1 MB
  const lines = await problems(big);
  assert.deepEqual(lines, [
    `fanout.yaml: the fleet file is ${
      new TextEncoder().encode(big).length
    } bytes; fanout reads fleet files up to 1024 KiB (1048576 bytes)`,
  ]);
  // Many unknown keys: the first 20 are listed, with their lines.
  const many = BASE + Array.from({ length: 5_000 }, (_, i) => `x${i}: 1\n`).join("");
  const listed = await problems(many);
  assert.equal(listed.length, 21);
  assert.match(listed[0], /^fanout\.yaml:22: x0: unknown key/);
  assert.match(listed[19], /^fanout\.yaml:41: x19: unknown key/);
  assert.equal(listed[20], "fanout.yaml: and 4980 more problems");
});

Deno.test("config: an upstream cycle is found wherever it is; a long chain is checked once per replica", async () => {
  const text = `tree: t
primary: {name: p, address: 10.0.0.1, path: /srv/t}
replicas:
  - {name: a, address: 10.0.0.2, path: /srv/t, upstream: b}
  - {name: b, address: 10.0.0.3, path: /srv/t, upstream: c}
  - {name: c, address: 10.0.0.4, path: /srv/t, upstream: b}
`;
  const lines = await problems(text);
  assert.deepEqual(lines, ["fanout.yaml:5: replicas[1].upstream: upstream cycle: b -> c -> b"]);
  // A chain p <- r0 <- r1 <- ... <- r2999 is valid.
  const chain = Array.from(
    { length: 3000 },
    (_, i) =>
      `  - {name: r${i}, address: 10.1.${i >> 8}.${i & 255}, path: /s, upstream: ${
        i ? `r${i - 1}` : "p"
      }}\n`,
  ).join("");
  const fleet = await parseFleet(
    `tree: t\nprimary: {name: p, address: 10.0.0.1, path: /srv/t}\nreplicas:\n${chain}`,
    "fanout.yaml",
  );
  assert.equal(fleet.replicas[2999].upstream, "r2998");
});

Deno.test("config: release keys are ed25519:<32 bytes in base64>; none means an unsigned fleet", async () => {
  const unsigned = await parseFleet(BASE, "fanout.yaml");
  assert.deepEqual(unsigned.release.publicKeys, []);
  assert.equal(unsigned.release.signingKeyFile, "/etc/fanout/release.key");
  const key = `ed25519:${btoa(String.fromCharCode(...new Uint8Array(32).fill(7)))}`;
  const signed = await parseFleet(`${BASE}release:\n  public_keys: ["${key}"]\n`, "fanout.yaml");
  assert.deepEqual(signed.release.publicKeys, [key]);
  for (const bad of ["ed25519:short=", key.replace("ed25519:", "rsa:"), `${key}\\n`, key + "A"]) {
    const msgs = await problems(`${BASE}release:\n  public_keys: ["${bad}"]\n`);
    assert.match(msgs.join("\n"), /release\.public_keys(\[0\])?: /);
  }
});
