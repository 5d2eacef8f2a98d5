// `fanout render systemd`: every unit is accepted by systemd-analyze verify,
// runs what it should, and its hardening still lets rsync chroot and drop to
// the tree's uid (checked for real with setpriv: the unit's capability
// bounding set and no_new_privs around a real replica).
import assert from "node:assert/strict";
import { type Lab, Proc, rsync, sh, withLab, writeTree } from "./_helpers.ts";
import { VERSION } from "../lib/core/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

async function has(cmd: string): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}
const hasAnalyze = await has("systemd-analyze");
// The sandbox test needs root, setpriv and unshare (util-linux).
const canSandbox = Deno.uid() === 0 && await has("setpriv") && await has("unshare");

/** A lab fleet whose `binary:` is a real executable (systemd-analyze checks it exists). */
async function labFleet(lab: Lab, binDir = "bin"): Promise<{ file: string; bin: string }> {
  const bin = `${lab.dir}/${binDir}/fanout`;
  await Deno.mkdir(`${lab.dir}/${binDir}`, { recursive: true });
  await Deno.writeTextFile(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  await Deno.chmod(bin, 0o755);
  const file = await lab.fleet({ proxy: true, extra: `binary: "${bin}"` });
  return { file, bin };
}

async function render(lab: Lab, args: string[]): Promise<string> {
  const r = await lab.run(["render", "systemd", ...args]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  return r.stdout;
}

/** systemd-analyze verify on `text` saved as `name`; returns what it said about the unit. */
async function verify(lab: Lab, name: string, text: string): Promise<string[]> {
  await Deno.mkdir(`${lab.dir}/units`, { recursive: true });
  const path = `${lab.dir}/units/${name}`;
  await Deno.writeTextFile(path, text);
  const r = await sh("systemd-analyze", ["verify", path], { cwd: `${lab.dir}/units` });
  // Only what concerns this unit: some machines warn about their own units.
  const about = (r.stdout + r.stderr).split("\n").filter((l) => l.includes(name));
  assert.equal(r.code, 0, `systemd-analyze verify ${name} failed:\n${r.stdout}${r.stderr}`);
  return about;
}

const line = (unit: string, key: string): string[] =>
  unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

Deno.test("render systemd: one unit per long-running role, with the flags, restart and hardening", async () => {
  await withLab(async (lab) => {
    const { file, bin } = await labFleet(lab);
    const cases = [
      { role: "primary", args: ["--role", "primary"], name: "rsync1" },
      { role: "replica", args: ["--role", "replica", "--name", "rsync2"], name: "rsync2" },
      { role: "proxy", args: ["--role", "proxy"], name: "proxy" },
    ];
    for (const c of cases) {
      const unit = await render(lab, [...c.args, "-c", file]);
      const lines = unit.split("\n");
      assert.equal(
        lines[0],
        `# Rendered by fanout ${VERSION} from ${file}; do not edit, re-render.`,
      );
      const flags = c.role === "replica" ? " --name rsync2" : "";
      assert.deepEqual(line(unit, "ExecStart"), [`${bin} --role ${c.role} -c ${file}${flags}`]);
      for (const want of ["Restart=on-failure", "RestartSec=1", "KillMode=control-group"]) {
        assert.ok(lines.includes(want), `${c.role}: ${want}`);
      }
      for (const want of ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateDevices=yes"]) {
        assert.ok(lines.includes(want), `${c.role}: ${want}`);
      }
      assert.ok(lines.includes("WantedBy=multi-user.target"));
      const state = `${lab.dir}/state/${c.name}`;
      const rw = line(unit, "ReadWritePaths")[0].split(" ");
      if (c.role === "proxy") {
        assert.deepEqual(rw, [state]);
        assert.deepEqual(line(unit, "CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
        assert.deepEqual(line(unit, "TimeoutStopSec"), ["40s"], "drain_timeout (30s) + 10s");
      } else {
        // A missing tree is for fanout to report ("-"); the state dir is made first.
        assert.deepEqual(rw, [`-${lab.hosts[c.name].path}`, state]);
        const caps = line(unit, "CapabilityBoundingSet")[0].split(" ");
        for (const cap of ["CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT", "CAP_NET_BIND_SERVICE"]) {
          assert.ok(caps.includes(cap), `${c.role}: ${cap}`);
        }
        assert.ok(!caps.includes("CAP_SYS_ADMIN"));
      }
      // The lab lives in /tmp: a private /tmp would hide it; its state dir is not under /var/lib.
      assert.deepEqual(line(unit, "PrivateTmp"), ["no"]);
      assert.deepEqual(line(unit, "ExecStartPre"), [`+/bin/mkdir -p ${state}`]);
      assert.deepEqual(line(unit, "StateDirectory"), []);
      // Where a self-contained fanout unpacks its runtime, writable under ProtectSystem.
      assert.deepEqual(line(unit, "CacheDirectory"), ["fanout"]);
      if (hasAnalyze) assert.deepEqual(await verify(lab, `fanout-${c.role}.service`, unit), []);
    }
  });
});

Deno.test({
  name:
    "render systemd: /var/lib state, and paths with spaces, % and $ are quoted so systemd-analyze accepts them",
  ignore: !hasAnalyze,
  fn: async () => {
    await withLab(async (lab) => {
      const { file, bin } = await labFleet(lab, "my bin");
      const tree = "/srv/fanout test/100% $HOME";
      const unit = await render(lab, [
        "--role",
        "replica",
        "--name",
        "rsync2",
        "-c",
        file,
        "--state-dir",
        "/var/lib/fanout",
        "--path",
        tree,
      ]);
      assert.deepEqual(line(unit, "ExecStart"), [
        `"${bin}" --role replica -c ${file} --name rsync2`,
      ]);
      assert.deepEqual(line(unit, "StateDirectory"), ["fanout/rsync2"]);
      assert.deepEqual(line(unit, "ExecStartPre"), []);
      assert.deepEqual(line(unit, "PrivateTmp"), ["yes"]);
      assert.deepEqual(line(unit, "ProtectHome"), ["yes"]);
      assert.deepEqual(line(unit, "ReadWritePaths"), [
        `-"/srv/fanout test/100%% $HOME" /var/lib/fanout/rsync2`,
      ]);
      assert.deepEqual(await verify(lab, "fanout-replica.service", unit), []);

      const home = await render(lab, [
        "--role",
        "primary",
        "-c",
        file,
        "--path",
        "/home/apps/plugins",
      ]);
      assert.deepEqual(
        line(home, "ProtectHome"),
        ["read-only"],
        "a tree under /home stays reachable",
      );
      assert.deepEqual(await verify(lab, "fanout-primary.service", home), []);
    });
  },
});

Deno.test("render systemd: one-shot roles, no role, an unknown host, a bad path: exit 2, one clear line", async () => {
  await withLab(async (lab) => {
    const { file } = await labFleet(lab);
    const cases: [string[], RegExp][] = [
      [["--role", "client"], /--role client runs from cron: use "fanout render cron/],
      [["--role", "publish"], /post-receive hook: use "fanout render post-receive/],
      [[], /render systemd needs --role primary, --role replica --name NAME, or --role proxy/],
      [
        ["--role", "replica", "--name", "rsync9"],
        /no replica named "rsync9"; replicas: rsync2, rsync3/,
      ],
      [
        ["--role", "primary", "--set", "primary.path=/srv/a\nb"],
        /^fanout: --set primary\.path: \(host "rsync1"\) holds a newline: "\/srv\/a\\nb"/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = await lab.run(["render", "systemd", ...args, "-c", file]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, "", "nothing rendered");
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const none = await lab.run(["render", "systemd", "--role", "proxy", "-c", await lab.fleet({})]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /proxy: missing: --role proxy needs a proxy section/);
  });
});

Deno.test({
  name:
    "render systemd: a replica works inside the unit's limits (capabilities, no_new_privs, all read-only but ReadWritePaths); one less breaks it",
  ignore: !canSandbox,
  fn: async () => {
    await withLab(async (lab) => {
      const { file } = await labFleet(lab);
      const unit = await render(lab, ["--role", "replica", "--name", "rsync2", "-c", file]);
      const caps = line(unit, "CapabilityBoundingSet")[0].split(" ")
        .map((c) => c.replace(/^CAP_/, "").toLowerCase());
      const writable = line(unit, "ReadWritePaths")[0].split(" ").map((p) => p.replace(/^-/, ""));
      const r2 = lab.hosts.rsync2;
      const state = `${lab.dir}/state/rsync2`;
      await Deno.mkdir(state, { recursive: true }); // what the unit's ExecStartPre does
      await writeTree(r2.path, { "a.txt": "alpha\n" });
      // The tree belongs to an unprivileged user, as in production (uid: apps).
      for (const p of [r2.path, `${r2.path}/a.txt`]) await Deno.chown(p, 65534, 65534);
      const src = `${lab.dir}/src`;
      await writeTree(src, { "new.txt": "pushed\n" });

      // systemd's sandbox, approximated: a private mount namespace where every
      // mount is read-only but the unit's ReadWritePaths (ProtectSystem=strict),
      // then the unit's capability bounding set and no_new_privs.
      const attempt = async (keep: string[], rw: string[]) => {
        const script = [
          "set -e",
          "mount --make-rprivate /",
          ...rw.map((p) => `mount --bind '${p}' '${p}'`),
          "for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do",
          `  case "$m" in ${rw.map((p) => `'${p}'`).join("|")}|/proc*|/sys*|/dev*) ;;`,
          '    *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;;',
          "  esac",
          "done",
          'exec "$@"',
        ].join("\n");
        const proc = new Proc(
          new Deno.Command("unshare", {
            args: [
              "-m",
              "bash",
              "-c",
              script,
              "sandbox",
              "setpriv",
              "--nnp",
              `--bounding-set=-all,${keep.map((c) => `+${c}`).join(",")}`,
              "--inh-caps=-all",
              Deno.execPath(),
              ...["run", "-A", "--quiet", `--config=${CONFIG}`, MAIN],
              ...["--role", "replica", "--name", "rsync2", "-c", file],
            ],
            cwd: lab.dir,
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
            detached: true,
          }).spawn(),
        );
        try {
          await proc.waitFor(/msg=ready/);
          const push = await rsync([
            "-a",
            `--address=${lab.hosts.rsync1.ip}`,
            `--password-file=${lab.password}`,
            `${src}/`,
            `rsync://fanout@${r2.ip}:${r2.port}/plugins-push/`,
          ]);
          const pull = await rsync([
            "-a",
            `--address=${lab.ip(9)}`,
            `rsync://${r2.ip}:${r2.port}/plugins/`,
            `${lab.dir}/pull-${keep.length}/`,
          ]);
          return { push, pull, stop: await proc.stop(), stderr: proc.stderr };
        } catch (e) {
          return { error: e as Error, stderr: proc.stderr, code: proc.exited?.code };
        } finally {
          await proc.stop("SIGKILL", 1000);
        }
      };

      const ok = await attempt(caps, writable);
      assert.ok(!("error" in ok), `${"error" in ok && ok.error}`);
      const conf = await Deno.readTextFile(`${state}/rsyncd.conf`);
      assert.match(conf, /^uid = 65534$/m);
      assert.match(conf, /^use chroot = yes$/m);
      assert.equal(ok.push!.code, 0, ok.push!.stderr);
      assert.equal(ok.pull!.code, 0, ok.pull!.stderr);
      const st = await Deno.stat(`${r2.path}/new.txt`);
      assert.equal(st.uid, 65534, "the push was written by the dropped uid");
      assert.equal(ok.stop!.code, 0, ok.stderr);

      const noChroot = await attempt(caps.filter((c) => c !== "sys_chroot"), writable);
      assert.equal(noChroot.pull?.code, 5, "without CAP_SYS_CHROOT the daemon cannot serve");
      assert.match(noChroot.pull!.stderr, /chroot failed/);

      const noState = await attempt(caps, writable.filter((p) => p !== state));
      assert.ok("error" in noState, "without its state dir writable, the replica does not start");
      assert.equal(noState.code, 2, noState.stderr);
      assert.match(
        noState.stderr,
        /^fanout: cannot write the state dir \S+\/state\/rsync2: Read-only file system \(state_dir must be writable by fanout\)$/m,
      );
    });
  },
});
