// The rsync daemon supervisor with real rsync daemons: a daemon that never
// greets is reported with its own last log lines; a port held by an old rsyncd
// on every address stops a server at start (exit 2) instead of passing its
// greeting off as ours; concurrent conf rewrites all land.
import assert from "node:assert/strict";
import { probeRsyncd } from "../lib/rsync/mod.ts";
import { RsyncDaemon } from "../lib/rsyncd/mod.ts";
import { EnvironmentError, Logger, tempFor } from "../lib/core/mod.ts";
import { markerComment, type VersionMarker } from "../lib/version/mod.ts";
import { rsyncOf, sh, waitFor, withLab } from "./_helpers.ts";

const RSYNC35 = (await rsyncOf("3.5"))?.bin ?? "";

/** A daemon conf in `dir` listening on `at`, with one read module. */
function conf(dir: string, at: { host?: string; port: number }, extra = ""): string {
  return [
    `pid file = ${dir}/rsyncd.pid`,
    `log file = ${dir}/rsyncd.log`,
    ...(at.host ? [`address = ${at.host}`] : []),
    `port = ${at.port}`,
    "use chroot = no",
    extra,
    "[m]",
    `    path = ${dir}`,
    "",
  ].join("\n");
}

function freePort(host: string): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts `new RsyncDaemon(...)` in a temp dir; returns the error its start threw. */
async function failedStart(
  rsync: string,
  confText: (dir: string, port: number) => string,
  opts: { proxyProtocol?: boolean } = {},
): Promise<Error> {
  const dir = await Deno.makeTempDir({ prefix: "fanout-daemon-" });
  const port = freePort("127.0.0.1");
  await Deno.writeTextFile(`${dir}/rsyncd.conf`, confText(dir, port));
  const d = new RsyncDaemon({
    rsync,
    confPath: `${dir}/rsyncd.conf`,
    listen: { host: "127.0.0.1", port },
    stateDir: dir,
    log: new Logger({ sink: () => {} }),
    readyTimeout: 1_500,
    proxyProtocol: opts.proxyProtocol,
  });
  try {
    await d.start();
    assert.fail("the daemon started");
  } catch (e) {
    assert.ok(e instanceof EnvironmentError, String(e));
    return e;
  } finally {
    await d.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rsync daemon: no greeting: the error quotes the daemon's last log lines, bounded, without control characters", async () => {
  // The real rsync, behind a wrapper that first writes hostile lines into the daemon's log.
  const dir = await Deno.makeTempDir({ prefix: "fanout-wrap-" });
  const wrapper = `${dir}/rsync`;
  await Deno.writeTextFile(
    wrapper,
    [
      "#!/bin/sh",
      'log="$(dirname "${3#--config=}")/rsyncd.log"',
      'for i in $(seq 1 40); do echo "filler line $i" >> "$log"; done',
      `printf 'evil \\033[31mred\\033]0;title\\007 \\302\\233 %0600d\\n' 0 >> "$log"`,
      'exec rsync "$@"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  try {
    // `proxy protocol = yes` waits for a PROXY header the probe does not send: never a greeting.
    const err = await failedStart(
      wrapper,
      (d, port) => conf(d, { host: "127.0.0.1", port }, "proxy protocol = yes"),
    );
    const m =
      /^rsync daemon did not start on 127\.0\.0\.1:\d+: no greeting within 1500ms; its log: (.*)$/
        .exec(err.message);
    assert.ok(m, err.message);
    const quoted = m[1].split(" | ");
    assert.ok(quoted.length <= 5, err.message);
    const evil = quoted.find((l) => l.startsWith("evil [31mred]0;title  000"));
    assert.ok(evil, err.message);
    assert.equal(evil.length, 301, "300 characters and an ellipsis");
    assert.ok(!quoted.some((l) => l === "filler line 1"), "only the last lines");
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(err.message, /[\x00-\x1f\x7f-\x9f]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "rsync daemon: rsync 3.5 without proxy protocol hosts: the error says why, in rsync's words",
  ignore: RSYNC35 === "",
  fn: async () => {
    const err = await failedStart(
      RSYNC35,
      (d, port) => conf(d, { host: "127.0.0.1", port }, "proxy protocol = yes"),
      { proxyProtocol: true },
    );
    assert.match(err.message, /no greeting within 1500ms; its log: /);
    assert.match(err.message, /"proxy protocol hosts" is unset/);
    assert.match(err.message, /proxy protocol rejected from untrusted peer .*\(127\.0\.0\.1\)/);
  },
});

Deno.test("rsync daemon: an old rsyncd listening on every address: the server exits 2 at start, naming the address", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    // A port free on every address, held by an rsync daemon on 0.0.0.0 (no `address`).
    const port = freePort("0.0.0.0");
    const oldDir = `${lab.dir}/old`;
    await Deno.mkdir(oldDir);
    await Deno.writeTextFile(`${oldDir}/rsyncd.conf`, conf(oldDir, { port }));
    const old = new Deno.Command("rsync", {
      args: ["--daemon", "--no-detach", `--config=${oldDir}/rsyncd.conf`],
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
    try {
      const h = lab.hosts.rsync2;
      await waitFor("the old daemon", async () => {
        const r = await probeRsyncd({ host: h.ip, port }, 1_000);
        return r.ok || null;
      });
      const text = await Deno.readTextFile(lab.fleetFile);
      await Deno.writeTextFile(lab.fleetFile, text.replace(`${h.ip}:${h.port}`, `${h.ip}:${port}`));
      const r = await lab.run(["--role", "replica", "-c", lab.fleetFile, "--name", "rsync2"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^fanout: rsync daemon did not start on ${h.ip.replaceAll(".", "\\.")}:${port}: ` +
            `.*bind\\(\\) failed: Address already in use`,
          "m",
        ),
      );
      assert.doesNotMatch(r.stderr, /msg=ready/);
      // fanout's own daemon is gone; the old one still serves.
      assert.equal((await sh("pgrep", ["-f", `${lab.dir}/state/rsync2/rsyncd.conf`])).code, 1);
      assert.ok((await probeRsyncd({ host: h.ip, port }, 2_000)).ok);
    } finally {
      Deno.kill(-old.pid, "SIGTERM");
      await old.status;
    }
  });
});

const version = (seq: number): VersionMarker => ({
  seq,
  commit: `c${seq}`,
  ref: "main",
  published_at: "2026-01-01T00:00:00Z",
});
const render = (v: VersionMarker | null) => `comment = ${v ? markerComment(v) : "none"}\n`;

/** A daemon (never started) whose conf in a temp dir announces `v`; its warnings go to `lines`. */
async function confOnly(
  v: VersionMarker | null,
  fn: (
    d: RsyncDaemon,
    confPath: string,
    lines: string[],
    dir: string,
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fanout-conf-" });
  const lines: string[] = [];
  const confPath = `${dir}/rsyncd.conf`;
  await Deno.writeTextFile(confPath, render(v));
  const d = new RsyncDaemon({
    rsync: "rsync",
    confPath,
    listen: { host: "127.0.0.1", port: 1 },
    stateDir: dir,
    log: new Logger({ sink: (l) => lines.push(l) }),
    render,
  });
  try {
    await fn(d, confPath, lines, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rsync daemon: concurrent conf rewrites all land; the last version is the one left", async () => {
  await confOnly(null, async (d, confPath, lines, dir) => {
    // The timer and the marker watch both refresh: the same version twice, and new ones.
    const seqs = [1, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 10];
    await Promise.all(seqs.map((s) => d.setVersion(version(s))));
    assert.deepEqual(lines.filter((l) => /level=warn/.test(l)), []);
    assert.equal(await Deno.readTextFile(confPath), render(version(10)));
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, ["rsyncd.conf"], "no temp file left");
  });
});

Deno.test("rsync daemon: a conf rewrite that fails rejects (the caller tries again), and the next lands", async () => {
  await confOnly(version(1), async (d, confPath) => {
    // The write cannot land (a directory where its temp file goes: as a
    // full disk would): the conf still announces version 1.
    await Deno.mkdir(tempFor(confPath));
    await Deno.writeTextFile(`${tempFor(confPath)}/held`, "");
    await assert.rejects(d.setVersion(null), /rsyncd\.conf/);
    assert.equal(await Deno.readTextFile(confPath), render(version(1)));
    await assert.rejects(d.setVersion(null), /rsyncd\.conf/);
    await Deno.remove(tempFor(confPath), { recursive: true });
    await d.setVersion(null);
    assert.equal(await Deno.readTextFile(confPath), render(null));
  });
});
