import assert from "node:assert/strict";
import { Lab, withLab } from "./_helpers.ts";
import { parseCli } from "../lib/cli/mod.ts";

Deno.test("cli: --version and --help", async () => {
  await withLab(async (lab) => {
    const v = await lab.run(["--version"]);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^fanout \d+\.\d+\.\d+\n$/);
    const h = await lab.run(["--help"]);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--role primary/);
    assert.match(h.stdout, /Exit codes: 0 ok/);
    const r = await lab.run(["--role", "client", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--dest DIR/);
    assert.match(r.stdout, /Examples:/);
    const s = await lab.run(["render", "--help"]);
    assert.match(s.stdout, /fanout render <rsyncd/);
  });
});

Deno.test("cli: bad command lines get one clear line and exit 2", async () => {
  await withLab(async (lab) => {
    const cases: [string[], RegExp][] = [
      [
        ["--role", "replica", "--lsiten", "x"],
        /^fanout: unknown flag "--lsiten" \(did you mean "--listen"\?\)/,
      ],
      [
        ["-c", "x.yaml"],
        /^fanout: no role given: pass --role primary\|replica\|proxy\|client\|publish/,
      ],
      [["--role", "replca"], /^fanout: unknown role "replca" \(did you mean "replica"\?\)/],
      [["--role", "replica", "--dest", "/x"], /^fanout: --dest does not apply to --role replica/],
      [["--role", "client", "--name"], /^fanout: --name needs a value/],
      [["frobnicate"], /^fanout: unknown command "frobnicate"/],
      [["render", "ngnix"], /^fanout: cannot render "ngnix" \(did you mean "nginx"\?\)/],
      [
        ["--role", "replica", "-c", "/nonexistent/fanout.yaml"],
        /^fanout: \/nonexistent\/fanout\.yaml: cannot read the fleet file: no such file/,
      ],
      [
        ["--role", "client", "--concurrency", "3"],
        /^fanout: --concurrency does not apply to --role client/,
      ],
      [
        ["--role", "client", "--log-format", "xml"],
        /^fanout: --log-format: expected logfmt or json, got "xml"/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = await lab.run(args);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re, args.join(" "));
      assert.equal(
        r.stderr.trim().split("\n").length,
        1,
        `one line for ${args.join(" ")}: ${r.stderr}`,
      );
    }
  });
});

Deno.test("cli: a role without its section in the fleet file", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"] });
    const r = await lab.run(["--role", "proxy", "-c", file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /fanout\.yaml: proxy: missing: --role proxy needs a proxy section/);
    const c = await lab.run(["--role", "client", "-c", file]);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /client\.dest: missing/);
    const n = await lab.run(["--role", "replica", "-c", file, "--name", "rsync9"]);
    assert.equal(n.code, 2);
    assert.match(n.stderr, /replicas: no replica named "rsync9"; replicas: rsync2/);
  });
});

Deno.test("cli: each bad fleet file exits 2 naming the key path", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"] });
    const good = await Deno.readTextFile(file);
    const bad: [string, RegExp][] = [
      [
        good.replace(/ {2}listen: (\S+):\d+\n/, "  listen: $1\n"),
        /fanout\.yaml:\d+: primary\.listen: expected host:port/,
      ],
      [good + "push:\n  debounce: fast\n", /fanout\.yaml:\d+: push\.debounce: expected a duration/],
      [
        good.replace("tree: plugins", "tree: plugins\ntreee: x"),
        /fanout\.yaml:2: treee: unknown key \(did you mean "tree"\?\)/,
      ],
      [good + "proxy:\n  backends: [nope]\n", /proxy\.backends\[0\]: no server named "nope"/],
    ];
    for (const [text, re] of bad) {
      await Deno.writeTextFile(file, text);
      const r = await lab.run(["check-config", "-c", file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});

Deno.test("cli: check-config prints what each host runs", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({
      replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }],
      proxy: true,
    });
    const r = await lab.run(["check-config", "-c", file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /valid\. tree "plugins"/);
    assert.match(
      r.stdout,
      new RegExp(`primary +rsync1 +rsync daemon ${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.port}`),
    );
    assert.match(r.stdout, /rsync1 .*pushes to rsync2/);
    assert.match(r.stdout, /rsync2 .*writes from rsync1 .*; pushes to rsync3/);
    assert.match(r.stdout, /proxy +proxy +listens/);
    const role = await lab.run([
      "check-config",
      "-c",
      file,
      "--role",
      "replica",
      "--name",
      "rsync2",
    ]);
    assert.equal(role.code, 0, role.stderr);
    assert.match(role.stdout, /--role replica --name rsync2: ready on this host/);
  });
});

Deno.test("cli: --set overrides any key, and bad values name the flag", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"] });
    const r = await lab.run(["check-config", "-c", file, "--set", "push.debounce=later"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^fanout: --set push\.debounce: expected a duration/);
    const ok = await lab.run([
      "check-config",
      "-c",
      file,
      "--set",
      "client.dest=/tmp/x",
      "--set",
      "client.splay=1s",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /into \/tmp\/x \(splay 1s/);
  });
});

Deno.test("cli: parseCli maps role flags to fleet keys", () => {
  const c = parseCli([
    "--role",
    "replica",
    "--name",
    "r2",
    "--listen",
    "127.0.0.3:1873",
    "--max-delete",
    "5",
  ]);
  assert.equal(c.kind, "role");
  if (c.kind !== "role") return;
  assert.deepEqual(c.opts.overrides.map((o) => [o.path.join("."), o.value]), [
    ["@host.listen", "127.0.0.3:1873"],
    ["push.max_delete", 5],
  ]);
  const cl = parseCli(["--role", "client", "--max-delete", "7", "--dest", "rel"]);
  if (cl.kind !== "role") return;
  assert.deepEqual(cl.opts.overrides.find((o) => o.flag === "--max-delete")?.path, [
    "client",
    "max_delete",
  ]);
  assert.ok((cl.opts.overrides.find((o) => o.flag === "--dest")?.value as string).startsWith("/"));
  assert.throws(
    () => parseCli(["--role", "client", "--retries", "many"]),
    /--retries: expected a whole number/,
  );
});

Deno.test("cli: the flag forms node's parseArgs accepted still parse the same", () => {
  const role = (argv: string[]) => {
    const c = parseCli(argv);
    assert.equal(c.kind, "role");
    return (c as Extract<typeof c, { kind: "role" }>).opts;
  };
  // -c FILE, -cFILE, --config FILE and --config=FILE
  for (
    const argv of [
      ["--role", "client", "-c", "f.yaml"],
      ["--role", "client", "-cf.yaml"],
      ["--role", "client", "--config", "f.yaml"],
      ["--role=client", "--config=f.yaml"],
    ]
  ) assert.equal(role(argv).config, "f.yaml", argv.join(" "));
  // A value may hold "=" and start with "-" when given with "=".
  const o = role(["--role", "client", "--set", "client.splay=0s", "--set=client.retries=2"]);
  assert.deepEqual(o.overrides.map((x) => [x.path.join("."), x.value]), [
    ["client.splay", "0s"],
    ["client.retries", 2],
  ]);
  // The last of a repeated flag wins; short booleans group.
  assert.equal(role(["--role", "client", "--name", "a", "--name", "b"]).name, "b");
  assert.equal(parseCli(["-hV"]).kind, "version");
  // After "--" nothing is a flag.
  assert.throws(
    () => parseCli(["--role", "client", "--", "--verbose"]),
    /unexpected "--verbose"|unknown command "--verbose"/,
  );
  const bad: [string[], RegExp][] = [
    [
      ["--role", "client", "--name", "--dest", "/x"],
      /: --name needs a value \(got the flag "--dest"; a value starting with - goes as --name=VALUE\)$/,
    ],
    [["--role", "client", "-c"], /: --config needs a value$/],
    [["--role", "client", "--verbose=yes"], /: --verbose takes no value$/],
    [["--role", "client", "-q"], /: unknown flag "-q"/],
    [["--role", "client", "--dst", "/x"], /: unknown flag "--dst" \(did you mean "--dest"\?\)/],
    [["--role", "client", "--__proto__", "x"], /: unknown flag "--__proto__"/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseCli(argv), re, argv.join(" "));
});

// Keeps the Lab import used for type checks in editors.
export type { Lab };
