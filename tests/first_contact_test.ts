// What an operator meets first on a fresh host, and a hostile fleet file,
// through the real command line: exit codes, one clear message, and
// nothing written where it must not be.
import assert from "node:assert/strict";
import { withLab } from "./_helpers.ts";
import { cutLine } from "../cmd/fleet.ts";
import { openTo } from "../lib/config/mod.ts";

const ATTACK = '"PATH\\n[evil]\\n path = /\\n read only = no\\n hosts allow = *"';

Deno.test("hostile fleet file: a path that injects an rsyncd module is refused by check-config and by the role; no rsyncd.conf is written or changed", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"] });
    const good = await Deno.readTextFile(file);
    const p1 = lab.hosts.rsync1.path;
    await Deno.writeTextFile(
      file,
      good.replace(`path: ${p1}\n`, `path: ${ATTACK.replace("PATH", p1)}\n`),
    );
    const check = await lab.run(["check-config", "-c", file]);
    assert.equal(check.code, 2, check.stderr);
    assert.match(
      check.stderr,
      /^fanout: .*fanout\.yaml:\d+: primary\.path: \(host "rsync1"\) holds a newline: ".*\\n\[evil\]\\n.*"; no fleet-file value may hold control characters/,
    );
    assert.equal(check.stderr.trim().split("\n").length, 1, check.stderr);
    assert.equal(check.stdout, "");

    // The start: refused before anything is written.
    const start = await lab.run(["--role", "primary", "-c", file]);
    assert.equal(start.code, 2, start.stderr);
    assert.match(start.stderr, /primary\.path: \(host "rsync1"\) holds a newline/);
    const conf = `${lab.dir}/state/rsync1/rsyncd.conf`;
    await assert.rejects(Deno.stat(conf), Deno.errors.NotFound);
    // A conf left by an earlier start stays as it was.
    await Deno.mkdir(`${lab.dir}/state/rsync1`, { recursive: true });
    await Deno.writeTextFile(conf, "# earlier\n");
    const again = await lab.run(["--role", "primary", "-c", file]);
    assert.equal(again.code, 2);
    assert.equal(await Deno.readTextFile(conf), "# earlier\n");

    // The same through uid, gid and the secrets file, and through --set.
    for (
      const [extra, re] of [
        ['uid: "0\\n[evil]"', /uid: holds a newline/],
        ['gid: "0\\n[evil]"', /gid: holds a newline/],
        [
          'auth_x: 1\nauth: {secrets_file: "/etc/s\\n[evil]"}',
          /auth\.secrets_file: holds a newline/,
        ],
      ] as const
    ) {
      await Deno.writeTextFile(file, good.replace("auth:\n", "auth_unused:\n") + extra + "\n");
      const r = await lab.run(["check-config", "-c", file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
    await Deno.writeTextFile(file, good);
    const set = await lab.run(["check-config", "-c", file, "--set", "uid=0\n[evil]"]);
    assert.equal(set.code, 2);
    assert.match(set.stderr, /^fanout: --set uid: holds a newline: "0\\n\[evil\]"/);
  });
});

Deno.test("hostile fleet file: a big one is refused quickly with the bound in the message", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: [] });
    const text = await Deno.readTextFile(file);
    // ~3 MiB of entries under an unknown key, past the 1 MiB bound: refused by
    // its size, before the YAML parser sees any of it.
    await Deno.writeTextFile(file, text + "junk:\n" + "  - {a: 1}\n".repeat(300_000));
    const r = await lab.run(["check-config", "-c", file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^fanout: .*fanout\.yaml: the fleet file is \d+ bytes; fanout reads fleet files up to 1024 KiB \(1048576 bytes\)\n$/,
    );
    // A FIFO is not read (it would block), and a role says the same.
    const fifo = `${lab.dir}/fifo.yaml`;
    const mk = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    assert.equal(mk.code, 0);
    const f = await lab.run(["check-config", "-c", fifo]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /cannot read the fleet file: not a regular file/);
  });
});

Deno.test("check-config --role: the role's start-up checks (a missing tree fails as the start does); a secrets file at 640 is 'readable by group'", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"] });
    const ok = await lab.run(["check-config", "-c", file, "--role", "primary"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /--role primary: ready on this host \(not checked: whether the ports are free, /,
    );

    await Deno.remove(lab.hosts.rsync1.path, { recursive: true });
    const check = await lab.run(["check-config", "-c", file, "--role", "primary"]);
    const start = await lab.run(["--role", "primary", "-c", file]);
    for (const r of [check, start]) {
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /^fanout: rsync1: the tree .*\/rsync1 does not exist: create it \(mkdir -p .*\) or fix path in the fleet file\n$/,
      );
    }
    assert.doesNotMatch(check.stdout, /ready on this host/);

    await Deno.chmod(lab.secrets, 0o640);
    const open = await lab.run([
      "check-config",
      "-c",
      file,
      "--role",
      "replica",
      "--name",
      "rsync2",
    ]);
    assert.equal(open.code, 2);
    assert.match(
      open.stderr,
      /rsyncd\.secrets has mode 640, readable by group; expected 600 or 400 \(chmod 600 /,
    );
  });
});

Deno.test("secrets: the mode in words names group and others as they are", () => {
  assert.equal(openTo(0o640), "readable by group");
  assert.equal(openTo(0o604), "readable by others");
  assert.equal(openTo(0o644), "readable by group and others");
  assert.equal(openTo(0o660), "readable and writable by group");
  assert.equal(openTo(0o664), "readable and writable by group, readable by others");
});

Deno.test("fanout fleet: an error is cut at a space, so an exit code is never cut short", () => {
  const error =
    "last pull from rsync://10.0.0.20:873/plugins/ failed after 3 tries: rsync exit 10 (error in socket I/O)";
  // A plain cut at 80 characters ends in "... rsync exit 1", which reads as exit 1.
  assert.equal(error.slice(0, 80).endsWith("rsync exit 1"), true);
  const cut = cutLine(error, 80);
  assert.ok(cut.length <= 80, cut);
  assert.equal(cut, "last pull from rsync://10.0.0.20:873/plugins/ failed after 3 … rsync exit 10");
  // With room for it, the code stays where it was.
  assert.equal(
    cutLine(error.replace("last ", ""), 80),
    "pull from rsync://10.0.0.20:873/plugins/ failed after 3 tries: rsync exit 10 …",
  );
  assert.equal(cutLine("short\nsecond line", 80), "short");
  assert.equal(cutLine("x".repeat(100), 80), `${"x".repeat(78)} …`);
});
