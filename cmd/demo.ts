/**
 * `fanout demo`: a whole fleet on loopback, live. A git server (a bare
 * repository with the rendered post-receive hook), a primary, two replicas,
 * the proxy and two clients in `--watch` mode, all started from one fleet
 * file in a temporary directory. It pushes a first commit, then a change
 * every few seconds, and shows each hop as it lands with its timing:
 * publish, primary, each replica, each client.
 *
 * @module
 */

import type { CommonOptions } from "../lib/config/mod.ts";
import { EnvironmentError, ExitCode, V8_FLAGS } from "../lib/core/mod.ts";
import { readMarker, type VersionMarker } from "../lib/version/mod.ts";
import { commandLine, killGroup, shutdownSignal, trackGroup } from "../lib/sys/mod.ts";
import { hostToken } from "../lib/report/mod.ts";

const dec = new TextDecoder();

interface Host {
  name: string;
  kind: "primary" | "replica" | "proxy" | "client";
  ip: string;
  port: number;
  health: number;
  /** The tree (servers) or dest (clients). */
  path: string;
}

interface Child {
  name: string;
  child: Deno.ChildProcess;
  forget: () => void;
  log: string;
}

/**
 * Runs the demo until Ctrl-C or `--duration`; returns the exit code.
 *
 * @throws {EnvironmentError} when rsync or git is missing and cannot be installed.
 */
export async function runDemo(opts: CommonOptions): Promise<number> {
  const duration = opts.duration;
  await ensureTools();
  const dir = await Deno.makeTempDir({ prefix: "fanout-demo-" });
  const net = `127.${10 + (Deno.pid % 200)}.${(Date.now() >> 4) % 250}`;
  const hosts = makeHosts(dir, net);
  const children: Child[] = [];
  const { signal, dispose } = shutdownSignal();
  const started = performance.now();
  // Until the first publish, the primary rightly says its tree is empty:
  // not news in a demo. Warnings and errors after that are shown.
  let showLogs = false;
  const say = (text: string) =>
    console.log(`[${((performance.now() - started) / 1000).toFixed(3).padStart(7)}s] ${text}`);
  let code: number = ExitCode.Ok;
  try {
    const fleetFile = await writeFleet(dir, net, hosts);
    const repo = await makeRepo(dir, fleetFile);
    printIntro(dir, net, hosts, repo.bare);

    for (const h of hosts.filter((h) => h.kind === "replica")) {
      children.push(
        await start(h.name, ["--role", "replica", "-c", fleetFile, "--name", h.name], /msg=ready/),
      );
    }
    children.push(await start("rsync1", ["--role", "primary", "-c", fleetFile], /msg=ready/));
    children.push(await start("proxy", ["--role", "proxy", "-c", fleetFile], /msg=ready/));
    for (const h of hosts.filter((h) => h.kind === "client")) {
      children.push(
        await start(h.name, [
          "--role",
          "client",
          "-c",
          fleetFile,
          "--name",
          h.name,
          "--dest",
          h.path,
          "--watch",
          "--no-splay",
          "--set",
          `auth.report_token_file=${clientTokenFile(dir, h)}`,
        ], null),
      );
    }
    say("fleet up: 1 primary, 2 replicas, proxy, 2 clients (--watch)");

    const deadline = duration === null ? Infinity : performance.now() + duration;
    let round = 0;
    while (!signal.aborted && performance.now() < deadline) {
      round++;
      const what = round === 1 ? "the first tree" : `change #${round - 1}`;
      await repo.change(round);
      const t0 = performance.now();
      const pushed = await repo.push(`${what}`);
      const v = pushed.version;
      say(`git push (${what}): ${pushed.line}`);
      if (!v) {
        code = ExitCode.Transfer;
        say("the publish failed; see the line above");
        break;
      }
      showLogs = true;
      // The first tree is followed to every host whatever --duration is left:
      // on a busy machine the fleet's start can take most of a short one.
      const left = round === 1 ? Infinity : deadline - performance.now();
      await follow(hosts, v, t0, say, signal, Math.min(30_000, left));
      say(`  fleet view: ${await fleetLine(hosts[0], v)}`);
      if (round === 1) {
        printTry(hosts, dir);
      }
      // A new change every few seconds keeps the view alive.
      const pause = Math.min(6_000, deadline - performance.now());
      if (pause > 0) await sleepUntil(pause, signal);
    }
  } finally {
    say("stopping every process");
    await Promise.all(children.map(async (c) => {
      killGroup(c.child.pid, "SIGTERM");
      const t = setTimeout(() => killGroup(c.child.pid, "SIGKILL"), 8_000);
      await c.child.status;
      clearTimeout(t);
      c.forget();
    }));
    // A daemon whose fanout did not get to stop it: none should be left.
    for (const h of hosts) {
      try {
        const pid = Number(await Deno.readTextFile(`${dir}/state/${h.name}/rsyncd.pid`));
        // Only while it is still this demo's daemon: a stale file's pid may be another's.
        if ((await commandLine(pid)).includes(dir)) killGroup(pid, "SIGKILL");
      } catch { /* stopped cleanly */ }
    }
    dispose();
    if (opts.keepDir) console.log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log("done: every process stopped");
  return code;

  async function start(name: string, args: string[], ready: RegExp | null): Promise<Child> {
    const c: Child = { name, child: spawnSelf(args), forget: () => {}, log: "" };
    c.forget = trackGroup(c.child.pid);
    (async () => {
      for await (const chunk of c.child.stderr.pipeThrough(new TextDecoderStream())) {
        c.log = (c.log + chunk).slice(-20_000);
        // Errors of the fleet are part of the show.
        for (const line of chunk.split("\n")) {
          if (showLogs && /level=(error|warn)/.test(line)) {
            say(`${name}: ${line.replace(/^ts=\S+ /, "")}`);
          }
        }
      }
    })();
    if (ready) {
      const until = performance.now() + 15_000;
      while (!ready.test(c.log)) {
        if (performance.now() > until) {
          throw new EnvironmentError(`${name} did not start:\n${c.log.slice(-2000)}`);
        }
        const st = await Promise.race([
          c.child.status,
          new Promise<null>((r) => setTimeout(() => r(null), 20)),
        ]);
        if (st) throw new EnvironmentError(`${name} exited (${st.code}):\n${c.log.slice(-2000)}`);
      }
    }
    return c;
  }
}

/** How this very program is started again: the compiled binary, or deno and the main module. */
function selfCommand(): string[] {
  const exe = Deno.execPath();
  if (!/\/deno$/.test(exe)) return [exe];
  return [exe, "run", "-A", "--quiet", `--v8-flags=${V8_FLAGS}`, new URL(Deno.mainModule).pathname];
}

function spawnSelf(args: string[], stdout: "null" | "piped" = "null"): Deno.ChildProcess {
  const [cmd, ...pre] = selfCommand();
  return new Deno.Command(cmd, {
    args: [...pre, ...args],
    stdin: "null",
    stdout,
    stderr: "piped",
    detached: true,
  }).spawn();
}

/** rsync and git are needed; as root on Debian the demo installs them, saying so. */
async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of ["rsync", "git"]) {
    try {
      await new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
    } catch {
      missing.push(tool);
    }
  }
  if (missing.length === 0) return;
  const apt = await new Deno.Command("sh", { args: ["-c", "command -v apt-get"], stdout: "null" })
    .output()
    .then((o) => o.success, () => false);
  if (Deno.uid() === 0 && apt) {
    console.log(
      `fanout demo needs ${missing.join(" and ")}: installing with apt-get install -y ${
        missing.join(" ")
      }`,
    );
    const out = await new Deno.Command("apt-get", {
      args: ["install", "-y", "-qq", ...missing],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return;
    throw new EnvironmentError(
      `apt-get install ${missing.join(" ")} failed: ${
        dec.decode(out.stderr).trim().split("\n").pop()
      }`,
    );
  }
  throw new EnvironmentError(
    `fanout demo needs ${missing.join(" and ")}: install ${
      missing.length > 1 ? "them" : "it"
    } with ` +
      `"sudo apt-get install ${missing.join(" ")}" (Debian/Ubuntu) or "sudo dnf install ${
        missing.join(" ")
      }"`,
  );
}

function makeHosts(dir: string, net: string): Host[] {
  const port = (ip: string) => {
    const l = Deno.listen({ hostname: ip, port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  };
  const host = (name: string, kind: Host["kind"], n: number, path: string): Host => {
    const ip = `${net}.${n}`;
    return { name, kind, ip, port: port(ip), health: port(ip), path };
  };
  return [
    host("rsync1", "primary", 2, `${dir}/rsync1/plugins`),
    host("rsync2", "replica", 3, `${dir}/rsync2/plugins`),
    host("rsync3", "replica", 4, `${dir}/rsync3/plugins`),
    host("proxy", "proxy", 10, ""),
    host("c1", "client", 21, `${dir}/c1/plugins`),
    host("c2", "client", 22, `${dir}/c2/plugins`),
  ];
}

/** Where client `h` of the demo keeps its report token. */
function clientTokenFile(dir: string, h: Host): string {
  return `${dir}/${h.name}/report.token`;
}

async function writeFleet(dir: string, net: string, hosts: Host[]): Promise<string> {
  const secrets = `${dir}/rsyncd.secrets`;
  const password = `${dir}/push.password`;
  const token = `${dir}/report.token`;
  const pw = crypto.randomUUID();
  await Deno.writeTextFile(secrets, `fanout:${pw}\n`, { mode: 0o600 });
  await Deno.writeTextFile(password, `${pw}\n`, { mode: 0o600 });
  const reportSecret = crypto.randomUUID();
  await Deno.writeTextFile(token, `${reportSecret}\n`, { mode: 0o600 });
  for (const f of [secrets, password, token]) await Deno.chmod(f, 0o600);
  // Each client signs its reports with its own token, derived from the secret.
  for (const h of hosts.filter((h) => h.kind === "client")) {
    const own = clientTokenFile(dir, h);
    await Deno.mkdir(own.slice(0, own.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(own, `${await hostToken(reportSecret, h.name)}\n`, { mode: 0o600 });
    await Deno.chmod(own, 0o600);
  }
  const [selfCmd, ...selfArgs] = selfCommand();
  const wrapper = `${dir}/bin/fanout`;
  await Deno.mkdir(`${dir}/bin`);
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh\nexec ${[selfCmd, ...selfArgs].map(q).join(" ")} "$@"\n`,
    { mode: 0o755 },
  );
  await Deno.chmod(wrapper, 0o755);
  const server = (
    h: Host,
  ) => [
    `  name: ${h.name}`,
    `  address: ${h.ip}`,
    `  listen: ${h.ip}:${h.port}`,
    `  health: ${h.ip}:${h.health}`,
    `  path: ${h.path}`,
  ];
  const [p, r2, r3, x] = hosts;
  for (const h of [p, r2, r3]) await Deno.mkdir(h.path, { recursive: true });
  for (const h of hosts.filter((h) => h.kind === "client")) {
    await Deno.mkdir(h.path.slice(0, h.path.lastIndexOf("/")), { recursive: true });
  }
  const text = [
    "# The demo's fleet: every host is a loopback alias on this machine.",
    "tree: plugins",
    `binary: ${wrapper}`,
    "auth:",
    "  user: fanout",
    `  secrets_file: ${secrets}`,
    `  password_file: ${password}`,
    `  report_token_file: ${token}`,
    `state_dir: ${dir}/state`,
    "primary:",
    ...server(p),
    "publisher:",
    "  name: git1",
    `  address: ${net}.5`,
    `  repo: ${dir}/git/plugins.git`,
    "  ref: main",
    "replicas:",
    ...[r2, r3].flatMap((h) => server(h).map((l, i) => (i === 0 ? `  - ${l.trim()}` : `  ${l}`))),
    "proxy:",
    `  listen: ${x.ip}:${x.port}`,
    `  health: ${x.ip}:${x.health}`,
    "  interval: 500ms",
    "client:",
    "  # each client of the demo passes its own --dest",
    `  dest: ${hosts.find((h) => h.kind === "client")!.path}`,
    "  watch_interval: 300ms",
    "  verify_every: 1h",
    "",
  ].join("\n");
  const file = `${dir}/fanout.yaml`;
  await Deno.writeTextFile(file, text);
  return file;
}

/** The git side: a bare repository with the hook, and a work clone that pushes to it. */
async function makeRepo(dir: string, fleetFile: string) {
  const bare = `${dir}/git/plugins.git`;
  const work = `${dir}/git/work`;
  const git = async (cwd: string, ...args: string[]) => {
    const out = await new Deno.Command("git", {
      args,
      cwd,
      env: {
        GIT_AUTHOR_NAME: "demo",
        GIT_AUTHOR_EMAIL: "demo@localhost",
        GIT_COMMITTER_NAME: "demo",
        GIT_COMMITTER_EMAIL: "demo@localhost",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new EnvironmentError(`git ${args.join(" ")} failed: ${dec.decode(out.stderr).trim()}`);
    }
    return dec.decode(out.stdout) + dec.decode(out.stderr);
  };
  await Deno.mkdir(work, { recursive: true });
  await git(dir, "init", "-q", "--bare", "-b", "main", bare);
  const hook = spawnSelf(["render", "post-receive", "-c", fleetFile], "piped");
  const hookText = dec.decode((await hook.output()).stdout);
  await Deno.writeTextFile(`${bare}/hooks/post-receive`, hookText, { mode: 0o755 });
  await Deno.chmod(`${bare}/hooks/post-receive`, 0o755);
  await git(work, "init", "-q", "-b", "main");
  await git(work, "remote", "add", "origin", bare);
  return {
    bare,
    async change(round: number) {
      if (round === 1) {
        for (let i = 0; i < 40; i++) {
          const d = `${work}/plugin${i % 8}`;
          await Deno.mkdir(d, { recursive: true });
          await Deno.writeTextFile(
            `${d}/module${i}.php`,
            `<?php // plugin ${i % 8}, module ${i}\n`,
          );
        }
        await Deno.writeTextFile(`${work}/README.md`, "Plugins, deployed by fanout.\n");
      } else {
        await Deno.writeTextFile(
          `${work}/README.md`,
          `Plugins, deployed by fanout. Change #${round - 1} at ${new Date().toISOString()}\n`,
        );
        await Deno.writeTextFile(
          `${work}/plugin${round % 8}/changed-${round}.php`,
          `<?php // added in change ${round - 1}\n`,
        );
      }
      await git(work, "add", "-A");
      await git(work, "commit", "-q", "-m", round === 1 ? "first tree" : `change #${round - 1}`);
    },
    async push(_what: string): Promise<{ line: string; version: VersionMarker | null }> {
      const out = await git(work, "push", "-q", "origin", "main");
      const line =
        out.split("\n").map((l) => l.replace(/^remote: /, "").trim()).filter(Boolean).pop() ?? "";
      const version = /published seq (\d+)/.test(line) ? readMarker(`${dir}/rsync1/plugins`) : null;
      return { line, version };
    },
  };
}

/** What the primary's fleet view says about version `v`, in one line. */
async function fleetLine(primary: Host, v: VersionMarker): Promise<string> {
  const url = `http://${primary.ip}:${primary.health}`;
  // The clients report right after their run: give the last report a moment.
  for (let i = 0; i < 40; i++) {
    try {
      const snap = await (await fetch(`${url}/fleet.json`)).json();
      const c = snap.counts.clients;
      if (snap.current?.seq === v.seq && c.current === c.total || i === 39) {
        return `${c.current}/${c.total} clients current, ${snap.counts.servers.current}/${snap.counts.servers.total} ` +
          `servers current${snap.ok ? "" : ` (${snap.problems.join(", ")})`}: ${url}/fleet`;
      }
    } catch (e) {
      if (i === 39) return `unavailable (${(e as Error).message})`;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return "unavailable";
}

/** Shows each host reaching version `v`, with the time since the push started. */
async function follow(
  hosts: Host[],
  v: VersionMarker,
  t0: number,
  say: (s: string) => void,
  signal: AbortSignal,
  timeout: number,
): Promise<void> {
  const pending = hosts.filter((h) => h.kind !== "proxy").map((h) => ({
    h,
    path: h.path,
  }));
  const until = performance.now() + timeout;
  let atPrimary: number | null = null;
  while (pending.length && !signal.aborted && performance.now() < until) {
    for (let i = pending.length - 1; i >= 0; i--) {
      const m = readMarker(pending[i].path);
      if (m?.seq === v.seq) {
        const { h } = pending[i];
        const now = performance.now();
        if (h.kind === "primary") atPrimary = now;
        const label = h.kind === "primary"
          ? "primary "
          : h.kind === "replica"
          ? "replica "
          : "client  ";
        const hop = atPrimary !== null && h.kind !== "primary"
          ? `, +${Math.round(now - atPrimary)} ms after rsync1`
          : "";
        say(
          `  ${label}${h.name.padEnd(7)} has seq ${v.seq} (${v.commit.slice(0, 8)})  ` +
            `+${Math.round(now - t0)} ms after the push began${hop}`,
        );
        pending.splice(i, 1);
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  for (const p of pending) say(`  ${p.h.name} has not got seq ${v.seq} yet`);
}

function printIntro(dir: string, net: string, hosts: Host[], bare: string): void {
  console.log(`fanout demo: a whole fleet on loopback (${net}.0/24), in ${dir}`);
  console.log(`  git1    bare repository ${bare}, with fanout's post-receive hook`);
  for (const h of hosts) {
    const where = h.kind === "client" ? `mirrors into ${h.path}` : `${h.ip}:${h.port}`;
    console.log(
      `  ${h.name.padEnd(7)} ${h.kind.padEnd(8)} ${where}${
        h.kind === "client" ? "" : `, health http://${h.ip}:${h.health}/`
      }`,
    );
  }
  console.log("");
}

function printTry(hosts: Host[], dir: string): void {
  console.log("\nWhile it runs, try in another terminal:");
  for (const h of hosts.filter((h) => h.kind !== "client")) {
    console.log(`  curl -s http://${h.ip}:${h.health}/status      # ${h.name}`);
  }
  const x = hosts.find((h) => h.kind === "proxy")!;
  console.log(
    `  rsync rsync://${x.ip}:${x.port}/                 # the modules, through the proxy`,
  );
  console.log(`  cat ${dir}/c1/plugins/README.md`);
  console.log("A new commit is pushed every few seconds; Ctrl-C stops everything.\n");
}

function sleepUntil(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
