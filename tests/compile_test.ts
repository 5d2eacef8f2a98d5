// compile.sh: the bundle (dist/fanout.js) is built and runs fanout from
// anywhere, under the permissions the binary gets; deno compile is handed
// DENORT_BIN and embeds templates, permissions and the version; without a
// usable denort, one sentence says what is missing. Every build goes into a
// temp dir (OUT_DIR), never into the checkout's dist/.
import assert from "node:assert/strict";
import { http, Proc, type Ran, sh, waitFor, withLab } from "./_helpers.ts";
import denoJson from "../deno.json" with { type: "json" };
import { V8_FLAGS } from "../lib/defaults.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const COMPILE = `${ROOT}compile.sh`;
// `deno` by name, for the bundle's shebang, whatever PATH the test runner had.
const PATH = `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? ""}`;

function compile(outDir: string, args: string[] = [], env: Record<string, string> = {}) {
  return sh("bash", [COMPILE, ...args], { env: { OUT_DIR: outDir, DENORT_BIN: "", PATH, ...env } });
}

/** compile.sh's lines about the binary: the last one it printed. */
function lastSay(r: Ran): string {
  const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("compile.sh: "));
  return lines[lines.length - 1] ?? "";
}

/** One sentence: one line, one final period, and it says how to provide denort. */
function assertOneSentence(line: string) {
  assert.equal(line.split("\n").length, 1);
  assert.match(line, /\.$/);
  assert.equal(
    line.replace(/\b(v?\d+\.\d+\.\d+|e\.g|\.zip|\.[a-z]+\/)/g, "").split(". ").length,
    1,
    line,
  );
  assert.match(line, /DENORT_BIN=\/path\/to\/denort/);
}

const commit = (await sh("git", ["-C", ROOT, "rev-parse", "--short=12", "HEAD"])).stdout.trim();
// Outside a git checkout nothing is stamped but deno.json's version.
const version = new RegExp(
  `^fanout ${denoJson.version.replaceAll(".", "\\.")}${
    commit ? `\\+${commit}(\\.dirty)?` : ""
  }\\n$`,
);

async function processesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ");
      if (cmd.includes(dir)) found.push(`${e.name}: ${cmd}`);
    } catch { /* gone */ }
  }
  return found;
}

Deno.test("compile.sh: the bundle is built and runs fanout; the binary is built or one sentence says why not", async (t) => {
  const out = await Deno.makeTempDir({ prefix: "fanout-dist-" });
  try {
    const build = await compile(out);
    const bundle = `${out}/fanout.js`;

    await t.step("bundle built; binary built, or denort named as what is missing", async () => {
      assert.ok((await Deno.stat(bundle)).isFile, build.stderr);
      if (build.code === 0) {
        // A machine that can download denort: the binary must run.
        const v = await sh(`${out}/fanout`, ["--version"]);
        assert.match(v.stdout, version);
      } else {
        assert.equal(build.code, 2, build.stderr);
        const line = lastSay(build);
        assert.match(
          line,
          /fanout not built: deno compile needs the denort runtime for \S+ \(Deno [\d.]+\) and could not download it; /,
        );
        assertOneSentence(line);
        await assert.rejects(Deno.stat(`${out}/fanout`), Deno.errors.NotFound);
      }
    });

    await t.step(
      "bundle: --version carries the commit, by deno run and by its shebang",
      async () => {
        const cwd = await Deno.makeTempDir({ prefix: "fanout-elsewhere-" });
        try {
          const a = await sh(Deno.execPath(), ["run", "-A", bundle, "--version"], { cwd });
          assert.equal(a.code, 0, a.stderr);
          assert.match(a.stdout, version);
          const b = await sh(bundle, ["--version"], { cwd, env: { PATH } });
          assert.equal(b.code, 0, b.stderr);
          assert.equal(b.stdout, a.stdout);
        } finally {
          await Deno.remove(cwd, { recursive: true });
        }
      },
    );

    await t.step(
      "bundle: roles and renderers inlined (no relative import() left), templates in",
      async () => {
        const text = await Deno.readTextFile(bundle);
        assert.doesNotMatch(text, /\bimport\(\s*["'`]\.{0,2}\//);
        assert.match(text, /socket options = TCP_NODELAY/, "templates/rsyncd.conf");
        assert.match(
          text,
          /CapabilityBoundingSet=\{\{capabilities\}\}/,
          "templates/fanout.service",
        );
      },
    );

    const perms = (await sh("bash", [COMPILE, "--print-run-flags"])).stdout.trim().split(/\s+/);
    await t.step("bundle: its shebang starts deno with the V8 flags", async () => {
      const first = (await Deno.readTextFile(bundle)).split("\n", 1)[0];
      assert.ok(first.includes(`--v8-flags=${V8_FLAGS}`), first);
      assert.ok(perms.includes(`--v8-flags=${V8_FLAGS}`), perms.join(" "));
    });
    const fanout = (args: string[], cwd: string) =>
      new Proc(
        new Deno.Command(Deno.execPath(), {
          args: ["run", "--no-config", ...perms, bundle, ...args],
          cwd,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          detached: true,
        }).spawn(),
      );

    await t.step("bundle, under the binary's permissions: check-config and render", async () => {
      await withLab(async (lab) => {
        const file = await lab.fleet({ proxy: true, extra: "binary: /bin/true" });
        for (
          const [args, want] of [
            [["check-config", "-c", file], /: valid\. tree "plugins"/],
            [
              ["check-config", "-c", file, "--role", "replica", "--name", "rsync2"],
              /ready on this host/,
            ],
            [["render", "rsyncd", "--role", "primary", "-c", file], /^\[plugins-push\]$/m],
            [
              ["render", "systemd", "--role", "proxy", "-c", file],
              /^ExecStart=\/bin\/true --role proxy/m,
            ],
          ] as [string[], RegExp][]
        ) {
          const p = fanout(args, lab.dir);
          const st = await p.status();
          assert.equal(st.code, 0, `${args.join(" ")}: ${p.stderr}`);
          assert.match(p.stdout, want);
          if (args[0] === "render") {
            assert.match(p.stdout, /^# Rendered by fanout \S+ from /);
            assert.match(`fanout ${p.stdout.split(" ")[4]}\n`, version, "the stamped version");
          }
        }
        const bad = fanout(["check-config", "-c", `${lab.dir}/nope.yaml`], lab.dir);
        assert.equal((await bad.status()).code, 2);
        assert.match(bad.stderr, /nope\.yaml: cannot read the fleet file: no such file/);
        // The bundle's yaml is the ES module build: errors still name the line.
        await Deno.writeTextFile(
          `${lab.dir}/typo.yaml`,
          (await Deno.readTextFile(file)).replace("tree: plugins\n", "tree: plugins\ntreee: x\n"),
        );
        const typo = fanout(["check-config", "-c", `${lab.dir}/typo.yaml`], lab.dir);
        assert.equal((await typo.status()).code, 2);
        assert.match(typo.stderr, /typo\.yaml:2: treee: unknown key .*did you mean "tree"/);
      });
    });

    await t.step(
      "bundle, under the binary's permissions: --role replica serves /healthz; SIGTERM leaves no rsync",
      async () => {
        await withLab(async (lab) => {
          const file = await lab.fleet({ replicas: ["rsync2"] });
          const r2 = lab.hosts.rsync2;
          const p = fanout(["--role", "replica", "-c", file, "--name", "rsync2"], lab.dir);
          try {
            await p.waitFor(/msg=ready/);
            assert.deepEqual(await http(`http://${r2.ip}:${r2.health}/healthz`), {
              status: 200,
              body: "ok\n",
            });
            const status = JSON.parse((await http(`http://${r2.ip}:${r2.health}/status`)).body);
            assert.match(`fanout ${status.fanout_version}\n`, version);
            const daemon = status.daemon.pid as number;
            assert.ok(daemon > 0);
            assert.ok((await processesUnder(lab.dir)).length > 0, "the daemon runs");
            const t0 = Date.now();
            const st = await p.stop("SIGTERM", 8_000);
            // Deno.kill needs unrestricted --allow-run: with less, stopping hangs and ends in SIGKILL.
            assert.equal(st.code, 0, `stopped by itself after ${Date.now() - t0} ms:\n${p.stderr}`);
            await waitFor(
              "no process left",
              async () => (await processesUnder(lab.dir)).length === 0,
              3000,
            );
            assert.throws(() => Deno.kill(daemon, "SIGCONT"), "the rsync daemon is gone");
          } finally {
            await p.stop("SIGKILL", 1000);
          }
        });
      },
    );
  } finally {
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name:
    "compile.sh: DENORT_BIN reaches deno compile; templates, permissions, version are in the binary; a bad one is one sentence",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "fanout-dist-" });
    try {
      // Any ELF of this machine is taken as the runtime, so what deno compile
      // embeds can be read back; --no-verify, since /bin/true will not run fanout.
      const built = await compile(out, ["--no-verify"], { DENORT_BIN: "/bin/true" });
      assert.equal(built.code, 0, built.stderr);
      assert.match(
        lastSay(built),
        /built .*\/fanout \(fanout \S+ for \S+, not run; flags: --allow-net/,
      );
      const bytes = await Deno.readFile(`${out}/fanout`);
      const text = new TextDecoder("latin1").decode(bytes);
      assert.ok(text.startsWith("\x7fELF"));
      for (
        const want of ["socket options = TCP_NODELAY", "CapabilityBoundingSet={{capabilities}}"]
      ) {
        assert.ok(text.includes(want), `template text "${want}" embedded`);
      }
      assert.ok(text.includes(commit ? `commit: "${commit}` : "commit: null"), "the commit");
      assert.match(text, /"allow_run":\[\],"deny_run":null/, "--allow-run (unrestricted)");
      assert.match(text, /"allow_sys":\["hostname","uid","gid"\]/);
      assert.match(text, /"allow_ffi":\[\]/, "--allow-ffi (the proxy's splice engine)");
      assert.match(text, /"prompt":false/);
      assert.ok(text.includes(V8_FLAGS), "the V8 flags");
      await Deno.remove(`${out}/fanout`);

      const cases: [Record<string, string>, RegExp][] = [
        [{ DENORT_BIN: `${out}/nonexistent` }, /DENORT_BIN=\S+ is not a file; /],
        [
          { DENORT_BIN: Deno.execPath() },
          /DENORT_BIN=\S+ is the deno CLI, not the denort runtime; /,
        ],
        [
          { DENORT_BIN: "/bin/true" },
          /the binary deno compile made with DENORT_BIN=\/bin\/true does not run fanout \(its --version said: .*\), so DENORT_BIN is not the denort runtime/,
        ],
      ];
      for (const [env, re] of cases) {
        const r = await compile(out, [], env);
        assert.equal(r.code, 2, r.stderr);
        const line = lastSay(r);
        assert.match(line, re);
        assertOneSentence(line);
        await assert.rejects(Deno.stat(`${out}/fanout`), Deno.errors.NotFound, "no binary left");
        assert.ok((await Deno.stat(`${out}/fanout.js`)).isFile, "the bundle is built all the same");
      }
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
