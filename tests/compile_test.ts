// compile.sh: the bundle (dist/fanout.js) is built and runs fanout from
// anywhere, under the permissions the binary gets; deno compile is handed
// DENORT_BIN and embeds templates, permissions and the version; without a
// usable denort, one sentence says what is missing and dist/fanout is the
// self-contained one (build/launcher.sh), which runs where no deno is on PATH.
// Every build goes into a temp dir (OUT_DIR), never into the checkout's dist/.
import assert from "node:assert/strict";
import { http, Proc, type Ran, sh, waitFor, withLab, writeTree } from "./_helpers.ts";
import denoJson from "../deno.json" with { type: "json" };
import { V8_FLAGS } from "../lib/core/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const COMPILE = `${ROOT}compile.sh`;
// `deno` by name, for the bundle's shebang, whatever PATH the test runner had.
const PATH = `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? ""}`;

/**
 * A temp dir for builds, on a tmpfs of its own when this process may mount
 * one (root): every build writes Deno (~100 MB) and unpacks it, which on this
 * machine's disk costs kernel time and waits behind whatever else writes.
 * `remove()` unmounts and deletes it.
 */
async function buildDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "fanout-dist-" });
  const mounted =
    (await sh("mount", ["-t", "tmpfs", "-o", "size=2g,mode=0700", "fanout-dist", path])
      .catch(() => null))?.code === 0;
  return {
    path,
    remove: async () => {
      // Lazy: a process killed a moment ago may still hold a file in it.
      if (mounted) await sh("umount", ["-l", path]).catch(() => {});
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs compile.sh into `outDir`, with its own temp files (TMPDIR) there too. */
function compile(outDir: string, args: string[] = [], env: Record<string, string> = {}) {
  return sh("bash", [COMPILE, ...args], {
    env: { OUT_DIR: outDir, TMPDIR: outDir, DENORT_BIN: "", PATH, ...env },
  });
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
  const dist = await buildDir();
  const out = dist.path;
  try {
    const build = await compile(out);
    const bundle = `${out}/fanout.js`;

    // What a user runs: deno compile's binary, or else the self-contained one.
    let onefile = `${out}/fanout`;
    await t.step(
      "bundle built; binary compiled, or denort named and the self-contained one built",
      async () => {
        assert.equal(build.code, 0, build.stderr);
        assert.ok((await Deno.stat(bundle)).isFile, build.stderr);
        const head = new TextDecoder().decode((await Deno.readFile(onefile)).subarray(0, 10));
        if (head.startsWith("\x7fELF")) {
          // A machine that can download denort: the binary must run; the
          // self-contained one is built for the steps below.
          const v = await sh(onefile, ["--version"]);
          assert.match(v.stdout, version);
          onefile = `${out}/sc/fanout`;
          const sc = await compile(`${out}/sc`, ["--self-contained"]);
          assert.equal(sc.code, 0, sc.stderr);
        } else {
          assert.ok(head.startsWith("#!/bin/sh\n"), head);
          const lines = build.stderr.trim().split("\n").filter((l) => l.startsWith("compile.sh: "));
          const line = lines.find((l) => /fanout not compiled: /.test(l)) ?? "";
          assert.match(
            line,
            /fanout not compiled: deno compile needs the denort runtime for \S+ \(Deno [\d.]+\) and could not download it; /,
          );
          assertOneSentence(line);
          assert.match(
            lastSay(build),
            /built \S+\/fanout \(fanout \S+, self-contained: Deno [\d.]+ and the bundle, \d+ MB, ran its --version/,
          );
        }
      },
    );

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
        assert.match(text, /socket options = TCP_NODELAY/, "lib/rsyncd/rsyncd.conf");
        assert.match(
          text,
          /CapabilityBoundingSet=\{\{capabilities\}\}/,
          "lib/render/templates/fanout.service",
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

    // A host with nothing but sh, coreutils, gzip and rsync: no deno on PATH.
    const cache = `${out}/cache`;
    const bare = (file: string, args: string[], env: Record<string, string> = {}, cwd = out) =>
      new Proc(
        new Deno.Command("env", {
          args: [
            "-i",
            "PATH=/usr/bin:/bin",
            ...Object.entries({ FANOUT_CACHE: cache, ...env }).map(([k, v]) => `${k}=${v}`),
            file,
            ...args,
          ],
          cwd,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          detached: true,
        }).spawn(),
      );
    const run = async (file: string, args: string[], env: Record<string, string> = {}) => {
      const p = bare(file, args, env);
      const { code } = await p.status();
      return { code, stdout: p.stdout, stderr: p.stderr };
    };
    const entries = async (dir: string) => {
      const names: string[] = [];
      for await (const e of Deno.readDir(dir)) names.push(e.name);
      return names.sort();
    };

    await t.step(
      "one file, no deno on PATH: --version, argv and exit codes pass through",
      async () => {
        const v = await run(onefile, ["--version"]);
        assert.equal(v.code, 0, v.stderr);
        assert.match(v.stdout, version);
        const bad = await run(onefile, ["--bogus"]);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /^fanout: unknown flag "--bogus"/);
        // Unpacked once, into one directory named by version and checksum.
        const [dir, ...more] = await entries(cache);
        assert.deepEqual(more, [], "one version, no unpacking left over");
        assert.match(dir, /^0\.\d+\.\d+.*-[0-9a-f]{16}$/);
        assert.deepEqual(await entries(`${cache}/${dir}`), ["deno", "deno-dir", "fanout.js"]);
      },
    );

    await t.step(
      "one file: two first runs racing on the unpacking both succeed; old versions go",
      async () => {
        const fresh = `${out}/race`;
        // Two older versions and the leftover of a run killed hours ago: the
        // newest other version stays (the file being replaced), the rest goes.
        const older = ["0.0.1-aaaaaaaaaaaaaaaa", "0.0.2-bbbbbbbbbbbbbbbb", ".unpack.AbCdEf"];
        for (const [i, name] of older.entries()) {
          await Deno.mkdir(`${fresh}/${name}`, { recursive: true });
          const then = new Date(Date.now() - (3 - i) * 3600_000);
          await Deno.utime(`${fresh}/${name}`, then, i === 2 ? new Date(0) : then);
        }
        const [a, b] = await Promise.all(
          [0, 1].map(() => run(onefile, ["--version"], { FANOUT_CACHE: fresh })),
        );
        for (const r of [a, b]) {
          assert.equal(r.code, 0, r.stderr);
          assert.match(r.stdout, version);
        }
        const [ours, ...rest] = (await entries(fresh)).reverse();
        assert.match(ours, /^0\.[1-9]\d*\.\d+.*-[0-9a-f]{16}$/);
        assert.deepEqual(rest, ["0.0.2-bbbbbbbbbbbbbbbb"], "one version dir, no .unpack.* left");
        await Deno.remove(fresh, { recursive: true });
      },
    );

    await t.step(
      "one file: truncated or corrupted, one sentence, exit 2, nothing unpacked",
      async () => {
        const bytes = await Deno.readFile(onefile);
        const header = new TextDecoder().decode(bytes.subarray(0, 16384));
        const h = Number(/^ {2}H=(\d+)$/m.exec(header)?.[1]);
        const rt = Number(/^ {2}RT_GZ=(\d+)$/m.exec(header)?.[1]);
        assert.ok(h > 0 && rt > 0, "the header states its length and the runtime's");
        const flip = (at: number) => {
          const copy = bytes.slice();
          for (let i = at; i < at + 64; i++) copy[i] ^= 0x55;
          return copy;
        };
        const cases: [string, Uint8Array, RegExp][] = [
          [
            "cut",
            bytes.subarray(0, h + (rt >> 1)),
            /is truncated or damaged \(\d+ bytes, not \d+\): /,
          ],
          ["runtime", flip(h + (rt >> 1)), /is corrupted \(what it holds fails its checksum\): /],
          [
            "bundle",
            flip(bytes.length - 5000),
            /is corrupted \(what it holds fails its checksum\): /,
          ],
        ];
        for (const [what, content, re] of cases) {
          const file = `${out}/broken-${what}`;
          const fresh = `${out}/broken-cache`;
          await Deno.writeFile(file, content, { mode: 0o755 });
          const r = await run(file, ["--version"], { FANOUT_CACHE: fresh });
          assert.equal(r.code, 2, `${what}: ${r.stderr}`);
          assert.equal(r.stdout, "");
          assert.match(r.stderr, re, what);
          assert.match(r.stderr, /copy fanout \S+ onto this host again\.\n$/, what);
          assert.equal(r.stderr.split("\n").length, 2, `${what}: one line`);
          const left = await entries(fresh).catch(() => []);
          assert.deepEqual(left, [], `${what}: nothing unpacked`);
          await Deno.remove(fresh, { recursive: true }).catch(() => {});
          await Deno.remove(file);
        }
      },
    );

    await t.step(
      "one file: an unwritable cache falls back, or one sentence says what to do",
      async () => {
        const r = await run(onefile, ["--version"], { FANOUT_CACHE: "/dev/null/fanout" });
        assert.equal(r.code, 2);
        assert.equal(
          r.stderr,
          `fanout: cannot unpack its Deno runtime (~${
            /~(\d+) MB/.exec(r.stderr)?.[1]
          } MB) into FANOUT_CACHE: /dev/null/fanout cannot be created; set FANOUT_CACHE to a directory this user can write and execute from.\n`,
        );
        // Root writes anywhere: a user without a home shows the defaults' fallback.
        const setpriv = await sh("setpriv", ["--version"]).catch(() => null);
        if (Deno.uid() !== 0 || setpriv?.code !== 0) return;
        const tmp = `${out}/tmp`;
        await Deno.mkdir(tmp, { mode: 0o1777 });
        await Deno.chmod(tmp, 0o1777);
        for (const d of [out, onefile.replace(/\/fanout$/, "")]) await Deno.chmod(d, 0o755);
        const nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
        const asNobody = (tmpdir: string) =>
          run("setpriv", [...nobody, onefile, "--version"], {
            FANOUT_CACHE: "",
            HOME: "/nonexistent",
            TMPDIR: tmpdir,
          });
        const ok = await asNobody(tmp);
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.stdout, version);
        assert.deepEqual(await entries(tmp), ["fanout-65534"]);
        const none = await asNobody("/proc");
        assert.equal(none.code, 2);
        assert.match(
          none.stderr,
          /^fanout: cannot unpack its Deno runtime \(~\d+ MB\) anywhere \(\/var\/cache\/fanout is not writable, \/nonexistent\/\.cache\/fanout cannot be created, \/proc\/fanout-65534 cannot be created\): set FANOUT_CACHE to a directory this user can write and execute from\.\n$/,
        );
      },
    );

    await t.step(
      "one file, no deno on PATH: a replica serves /healthz, a client mirrors it, SIGTERM leaves no rsync",
      async () => {
        await withLab(async (lab) => {
          const dest = `${lab.dir}/apps/plugins`;
          const file = await lab.fleet({
            replicas: ["rsync2"],
            client: { dest, retries: 0 },
            extra: `binary: ${onefile}`,
          });
          const r2 = lab.hosts.rsync2;
          await writeTree(r2.path, {
            "a.txt": "alpha\n",
            "dir/b.txt": "beta\n",
            ".fanout-version": JSON.stringify({
              seq: 1,
              commit: "c0ffee1",
              ref: "main",
              published_at: "2026-11-25T00:00:01Z",
            }) + "\n",
          });
          const p = bare(
            onefile,
            ["--role", "replica", "-c", file, "--name", "rsync2"],
            {},
            lab.dir,
          );
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

            // The client as cron runs it: the rendered line, cron's PATH, no deno.
            const cron = await run(onefile, [
              "render",
              "cron",
              "-c",
              file,
              "--name",
              "web1",
              "--set",
              `client.source=rsync://${r2.ip}:${r2.port}/plugins/`,
              "--set",
              "client.splay=0s",
            ]);
            assert.equal(cron.code, 0, cron.stderr);
            const path = /^PATH=(.*)$/m.exec(cron.stdout)?.[1] ?? "";
            const command = /^\* \* \* \* \* \S+ (.*)$/m.exec(cron.stdout)?.[1] ?? "";
            assert.ok(command.startsWith(`${onefile} --role client -c `), cron.stdout);
            const c = await run("sh", ["-c", command], {
              PATH: path,
              HOME: lab.dir,
              XDG_CACHE_HOME: `${lab.dir}/.cache`,
            });
            assert.equal(c.code, 0, c.stderr);
            assert.equal(await Deno.readTextFile(`${dest}/dir/b.txt`), "beta\n");

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
    await dist.remove();
  }
});

Deno.test({
  name:
    "compile.sh: DENORT_BIN reaches deno compile; templates, permissions, version are in the binary; a bad one is one sentence",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const tmp = await buildDir();
    const out = tmp.path;
    try {
      // A DENORT_BIN that cannot serve: one sentence, exit 2, and dist/fanout is
      // the self-contained one all the same.
      const cases: [Record<string, string>, string[], RegExp][] = [
        [{ DENORT_BIN: `${out}/nonexistent` }, ["--no-verify"], /DENORT_BIN=\S+ is not a file; /],
        [
          { DENORT_BIN: Deno.execPath() },
          ["--no-verify"],
          /DENORT_BIN=\S+ is the deno CLI, not the denort runtime; /,
        ],
        [
          { DENORT_BIN: "/bin/true" },
          [],
          /the binary deno compile made with DENORT_BIN=\/bin\/true does not run fanout \(its --version said: .*\), so DENORT_BIN is not the denort runtime/,
        ],
      ];
      // Every build at once, each into a dir of its own: they share nothing
      // but the checkout, and each is checked alone below.
      const dist = (i: number) => `${out}/${i}`;
      const [built, ...failed] = await Promise.all([
        // Any ELF of this machine is taken as the runtime, so what deno compile
        // embeds can be read back; --no-verify, since /bin/true will not run fanout.
        compile(dist(0), ["--no-verify"], { DENORT_BIN: "/bin/true" }),
        ...cases.map(([env, args], i) => compile(dist(i + 1), args, env)),
      ]);
      assert.equal(built.code, 0, built.stderr);
      assert.match(
        lastSay(built),
        /built .*\/fanout \(fanout \S+ for \S+, not run; flags: --allow-net/,
      );
      const bytes = await Deno.readFile(`${dist(0)}/fanout`);
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

      for (const [i, [, , re]] of cases.entries()) {
        const r = failed[i];
        assert.equal(r.code, 2, r.stderr);
        const line = r.stderr.split("\n").find((l) => / not compiled: /.test(l)) ?? "";
        assert.match(line, re);
        assertOneSentence(line);
        assert.match(lastSay(r), /built \S+\/fanout \(fanout \S+, self-contained: /);
        const head = new TextDecoder().decode(
          (await Deno.readFile(`${dist(i + 1)}/fanout`)).subarray(0, 10),
        );
        assert.ok(head.startsWith("#!/bin/sh\n"), "the self-contained one, not deno compile's");
        assert.ok(
          (await Deno.stat(`${dist(i + 1)}/fanout.js`)).isFile,
          "the bundle is built all the same",
        );
      }
    } finally {
      await tmp.remove();
    }
  },
});
