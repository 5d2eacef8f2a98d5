// Test helpers: a "lab" of loopback hosts, fleet files, and fanout processes
// that are always stopped, by pid, whatever the test does.
import assert from "node:assert/strict";
import { V8_FLAGS, VERSION_LOG, VERSION_MARKER } from "../lib/core/mod.ts";
import type { Fleet } from "../lib/config/mod.ts";
import { hostToken } from "../lib/report/mod.ts";
import { commandLine, PARENT_PID_ENV } from "../lib/sys/mod.ts";
import {
  appendEntry,
  formatMarker,
  newEntry,
  readMarker,
  stampMarker,
  type VersionMarker,
} from "../lib/version/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const dec = new TextDecoder();

/**
 * Deno's cache (transpiled modules, V8 code cache) for every fanout a lab
 * starts: the runner's own. A lab points XDG_CACHE_HOME into itself (for the
 * client's fleet cache), and Deno would otherwise make its cache there too,
 * so a lab's first few processes would each compile the whole program again.
 */
const DENO_DIR = Deno.env.get("DENO_DIR") ||
  `${Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") || "/root"}/.cache`}/deno`;

/** A file's text, read at once (no await between a look and what follows), or null when it cannot be read. */
export function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Sleeps `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Thrown by a {@linkcode waitFor} condition to stop waiting at once (e.g. the process exited). */
export class GaveUp extends Error {}

/** True when a TCP connection to `host:port` opens (it is closed at once). */
export async function canConnect(host: string, port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: host, port })).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Polls `fn` until it returns a truthy value or `timeoutMs` passes.
 * Throws with `what` on timeout, or at once when `fn` throws {@linkcode GaveUp}.
 * Between two checks it waits `everyMs`, or as long as the last check took
 * when that is longer: a costly check (`diff -r` of 20,000 files) then takes
 * at most half a core from the processes it waits for.
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const t0 = Date.now();
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      if (e instanceof GaveUp) throw e;
      last = e;
    }
    await sleep(Math.max(everyMs, Math.min(Date.now() - t0, deadline - Date.now())));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** Output of a finished command. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion. */
export async function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; stdin?: string } = {},
): Promise<Ran> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A running process started by a lab. */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  #out = "";
  #err = "";
  #done: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | null = null;
  /**
   * Set once the child is reaped (its output may still be draining): its
   * pid may then be the kernel's to give to another lab's process.
   */
  #reaped = false;
  constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.pid = child.pid;
    child.status.then(() => this.#reaped = true);
    const pump = async (s: ReadableStream<Uint8Array>, to: "out" | "err") => {
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
        if (to === "out") this.#out += chunk;
        else this.#err += chunk;
      }
    };
    const pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")]);
    this.#done = (async () => {
      const st = await child.status;
      await pumps;
      this.#exited = st;
      return st;
    })();
  }
  get stdout(): string {
    return this.#out;
  }
  get stderr(): string {
    return this.#err;
  }
  get exited(): Deno.CommandStatus | null {
    return this.#exited;
  }
  /** Resolves with the exit status. */
  status(): Promise<Deno.CommandStatus> {
    return this.#done;
  }
  /** Waits until stderr (or stdout) matches `re`. */
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return await waitFor(`${re} in output of pid ${this.pid}:\n${this.#err.slice(-2000)}`, () => {
      if (this.#exited && !re.test(this.#err + this.#out)) {
        throw new GaveUp(
          `${re} never showed: process ${this.pid} exited (${this.#exited.code}) first:\n${
            this.#err.slice(-2000)
          }`,
        );
      }
      return (this.#err.match(re) ?? this.#out.match(re)) as RegExpMatchArray | null;
    }, timeoutMs);
  }
  /** Sends `signal` to the process (its group, so children go too). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#reaped) return;
    try {
      Deno.kill(-this.pid, signal);
    } catch { /* gone */ }
  }
  /** Stops it with `signal` and waits; SIGKILL after `graceMs`. */
  async stop(signal: Deno.Signal = "SIGTERM", graceMs = 8_000): Promise<Deno.CommandStatus> {
    if (this.#exited) return this.#exited;
    if (!this.#reaped) {
      try {
        Deno.kill(this.pid, signal);
      } catch { /* gone */ }
    }
    const t = setTimeout(() => this.kill("SIGKILL"), graceMs);
    const st = await this.#done;
    clearTimeout(t);
    return st;
  }
}

/**
 * A port no test and no kernel-chosen port uses (above the default
 * ephemeral range): a lab holds it open on `<net>.254` for its lifetime, so
 * no other lab in any process takes its /24. Test files run in parallel
 * as workers of one process (one pid, a module state of their own each), so
 * nothing but the kernel can tell them apart; a crashed run frees its nets
 * as it exits.
 */
const NET_HOLD_PORT = 61_999;

/** Reserves a loopback /24 (`127.x.y`) no other live lab holds. */
function reserveNet(): { net: string; hold: Deno.Listener } {
  for (;;) {
    const n = crypto.getRandomValues(new Uint16Array(1))[0] % (250 * 256);
    const net = `127.${1 + (n >> 8)}.${n & 255}`;
    try {
      return { net, hold: Deno.listen({ hostname: `${net}.254`, port: NET_HOLD_PORT }) };
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
    }
  }
}

/** Options for {@linkcode Lab.fleet}. */
export interface FleetSpec {
  /** Replica names, or entries with an upstream. Default: two replicas. */
  replicas?: (string | { name: string; upstream?: string })[];
  /** A proxy on .200; an object adds (or overrides) keys of its section (e.g. `{ max_connections: 50 }`). */
  proxy?: boolean | Record<string, string | number | boolean>;
  publisher?: boolean;
  /** Extra YAML appended at the end (sections not otherwise written). */
  extra?: string;
  /** Extra top-level YAML lines under the replicas etc. (e.g. "push:\n  debounce: 0ms"). */
  client?: Record<string, string | number | boolean>;
  push?: Record<string, string | number | boolean>;
}

/** A host of a lab fleet. */
export interface LabHost {
  name: string;
  ip: string;
  port: number;
  health: number;
  path: string;
}

/**
 * A test's private world: a temp dir, a loopback /24 of its own
 * (127.x.y.0, reserved, so parallel test files never collide), fleet files, secrets,
 * and every process it started, stopped at `close()`.
 */
export class Lab {
  readonly dir: string;
  readonly net: string;
  readonly secrets: string;
  readonly password: string;
  /** The report token clients sign fleet reports with (mode 600). */
  readonly reportToken: string;
  #procs: Proc[] = [];
  #argv = new Map<Proc, string[]>();
  #mounted = false;
  #netHold: Deno.Listener;
  #ports = new Set<number>();
  hosts: Record<string, LabHost> = {};
  fleetFile = "";
  #bundle: { path: string; flags: string[] } | null = null;
  #serverFlags: string[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    const { net, hold } = reserveNet();
    this.net = net;
    this.#netHold = hold;
    this.secrets = `${dir}/rsyncd.secrets`;
    this.password = `${dir}/push.password`;
    this.reportToken = `${dir}/report.token`;
  }

  /**
   * Makes a lab with secrets files in place (mode 600). `tmpfs` mounts a
   * private tmpfs on the lab dir when this process may (root): creating a
   * file on a disk costs kernel time a tmpfs all but saves
   * (docs/benchmarks.md). Tests get one by default ({@linkcode withLab}); a
   * benchmark of what the disk costs asks for none.
   */
  static async create(opts: { tmpfs?: boolean | string } = {}): Promise<Lab> {
    const dir = await Deno.makeTempDir({ prefix: "fanout-test-" });
    // A string is the tmpfs's size (mount's size=), for benchmarks with many hosts.
    const size = typeof opts.tmpfs === "string" ? opts.tmpfs : "4g";
    const mounted = Boolean(opts.tmpfs) &&
      (await sh("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "fanout-lab", dir])
          .catch(() => null))?.code === 0;
    const lab = new Lab(dir);
    lab.#mounted = mounted;
    await Deno.writeTextFile(lab.secrets, "fanout:lab-secret-1234\n", { mode: 0o600 });
    await Deno.writeTextFile(lab.password, "lab-secret-1234\n", { mode: 0o600 });
    await Deno.chmod(lab.secrets, 0o600);
    await Deno.chmod(lab.password, 0o600);
    await Deno.writeTextFile(lab.reportToken, "lab-report-token-5678\n", { mode: 0o600 });
    await Deno.chmod(lab.reportToken, 0o600);
    return lab;
  }

  /** `127.x.y.n` in this lab's /24. */
  ip(n: number): string {
    return `${this.net}.${n}`;
  }

  /** A free TCP port on `host`. */
  port(host = this.ip(1)): number {
    // A port just closed can be handed out again: never give one twice.
    for (;;) {
      const l = Deno.listen({ hostname: host, port: 0 });
      const p = (l.addr as Deno.NetAddr).port;
      l.close();
      if (!this.#ports.has(p)) {
        this.#ports.add(p);
        return p;
      }
    }
  }

  /**
   * Writes a fleet file with a primary (`rsync1` on .2), replicas (.3, .4, …),
   * a publisher (.5 is avoided: it is `git1` on .250) and a proxy (.200);
   * returns its path. Trees live under `<dir>/<name>`.
   */
  async fleet(spec: FleetSpec = {}): Promise<string> {
    const replicas = (spec.replicas ?? ["rsync2", "rsync3"]).map((r) =>
      typeof r === "string" ? { name: r } : r
    );
    const host = (name: string, n: number): LabHost => {
      const ip = this.ip(n);
      return { name, ip, port: this.port(ip), health: this.port(ip), path: `${this.dir}/${name}` };
    };
    this.hosts = { rsync1: host("rsync1", 2) };
    replicas.forEach((r, i) => this.hosts[r.name] = host(r.name, 3 + i));
    for (const h of Object.values(this.hosts)) await Deno.mkdir(h.path, { recursive: true });
    const lines = [
      "tree: plugins",
      "auth:",
      "  user: fanout",
      `  secrets_file: ${this.secrets}`,
      `  password_file: ${this.password}`,
      `  report_token_file: ${this.reportToken}`,
      `state_dir: ${this.dir}/state`,
      "rsync:",
      "  connect_timeout: 3s",
      "  timeout: 30s",
      "primary:",
      ...serverLines(this.hosts.rsync1),
    ];
    if (spec.publisher !== false) {
      lines.push(
        "publisher:",
        "  name: git1",
        `  address: ${this.ip(250)}`,
        `  staging: ${this.dir}/staging`,
      );
    }
    if (replicas.length) {
      lines.push("replicas:");
      for (const r of replicas) {
        lines.push(
          ...serverLines(this.hosts[r.name]).map((
            l,
            i,
          ) => (i === 0 ? "  - " + l.trim() : "  " + l)),
        );
        if (r.upstream) lines.push(`    upstream: ${r.upstream}`);
      }
    }
    if (spec.proxy) {
      const ip = this.ip(200);
      this.hosts.proxy = {
        name: "proxy",
        ip,
        port: this.port(ip),
        health: this.port(ip),
        path: "",
      };
      lines.push(
        "proxy:",
        `  listen: ${ip}:${this.hosts.proxy.port}`,
        `  health: ${ip}:${this.hosts.proxy.health}`,
        ...Object.entries({
          interval: "200ms",
          check_timeout: "500ms",
          ...(typeof spec.proxy === "object" ? spec.proxy : {}),
        }).map(([k, v]) => `  ${k}: ${v}`),
      );
    }
    // A failed push is retried within a second here (the default waits 1 s,
    // then backs off to a minute): a replica that starts late or comes back
    // is caught up by the time a test looks. Deletions are held for 300 ms of
    // quiet, not 2 s: every test that deletes a file would wait that long
    // (twice behind a relay). As flags of the servers, so the file has no
    // push section a test did not ask for (tests append one).
    const push = { retry_min: "200ms", retry_max: "1s", delete_hold: "300ms" };
    this.#serverFlags = Object.entries(push)
      .filter(([k]) => spec.push?.[k] === undefined)
      .flatMap(([k, v]) => ["--set", `push.${k}=${v}`]);
    for (const [section, values] of [["client", spec.client], ["push", spec.push]] as const) {
      if (!values) continue;
      lines.push(`${section}:`, ...Object.entries(values).map(([k, v]) => `  ${k}: ${v}`));
    }
    if (spec.extra) lines.push(spec.extra);
    this.fleetFile = `${this.dir}/fanout.yaml`;
    await Deno.writeTextFile(this.fleetFile, lines.join("\n") + "\n");
    return this.fleetFile;
  }

  /**
   * Writes an executable `fanout` wrapper (`deno run … main.ts "$@"`) into the
   * lab dir and returns its path: what a fleet file's `binary:` names, so a
   * rendered hook or cron line runs this checkout.
   */
  async wrapper(): Promise<string> {
    const bin = `${this.dir}/bin/fanout`;
    await Deno.mkdir(`${this.dir}/bin`, { recursive: true });
    await Deno.writeTextFile(
      bin,
      `#!/bin/sh\nexport XDG_CACHE_HOME="\${XDG_CACHE_HOME:-${this.dir}/.cache}"\nexport DENO_DIR="\${DENO_DIR:-${DENO_DIR}}"\nexec "${Deno.execPath()}" run -A --quiet --v8-flags=${V8_FLAGS} --config "${ROOT}deno.json" "${MAIN}" "$@"\n`,
      { mode: 0o755 },
    );
    await Deno.chmod(bin, 0o755);
    return bin;
  }

  /**
   * Builds the bundle (`compile.sh --bundle-only`) into the lab, once, for
   * {@linkcode Lab.spawn}'s `bundle` option: what ships where the binary
   * cannot be built, run with its shebang's flags.
   */
  async bundle(): Promise<{ path: string; flags: string[] }> {
    if (this.#bundle) return this.#bundle;
    const dist = `${this.dir}/dist`;
    const built = await sh("bash", [`${ROOT}compile.sh`, "--bundle-only"], {
      env: { OUT_DIR: dist },
    });
    if (built.code !== 0) throw new Error(`compile.sh: ${built.stderr}`);
    const flags = (await sh("bash", [`${ROOT}compile.sh`, "--print-run-flags"])).stdout.trim()
      .split(/\s+/);
    return this.#bundle = { path: `${dist}/fanout.js`, flags: ["--no-config", ...flags] };
  }

  /**
   * Starts `fanout <args>` in the background (from main.ts, or from the
   * bundle built by {@linkcode Lab.bundle} first); stopped at `close()`.
   */
  spawn(
    args: string[],
    opts: {
      env?: Record<string, string>;
      cwd?: string;
      bundle?: boolean;
      /** Extra `deno run` flags, e.g. `--deny-ffi`. */
      denoFlags?: string[];
    } = {},
  ): Proc {
    if (opts.bundle && !this.#bundle) throw new Error("call lab.bundle() before spawning it");
    const entry = opts.bundle
      ? ["--quiet", ...this.#bundle!.flags, ...(opts.denoFlags ?? []), this.#bundle!.path]
      : [
        "-A",
        ...(opts.denoFlags ?? []),
        "--quiet",
        `--v8-flags=${V8_FLAGS}`,
        `--config=${ROOT}deno.json`,
        MAIN,
      ];
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...entry, ...args],
      cwd: opts.cwd ?? this.dir,
      // The client's fleet cache (lib/config/fleet_cache.ts) stays in the lab, and
      // the process stops when this test runner dies (lib/sys/children.ts).
      env: {
        XDG_CACHE_HOME: `${this.dir}/.cache`,
        DENO_DIR,
        [PARENT_PID_ENV]: String(Deno.pid),
        ...opts.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
    const p = new Proc(child);
    this.#procs.push(p);
    this.#argv.set(p, args);
    return p;
  }

  /** Runs `fanout <args>` to completion. */
  async run(
    args: string[],
    opts: { env?: Record<string, string>; cwd?: string; denoFlags?: string[] } = {},
  ): Promise<Ran> {
    const p = this.spawn(args, opts);
    const st = await p.status();
    return { code: st.code, stdout: p.stdout, stderr: p.stderr };
  }

  /** Starts a server role and waits until it says it is ready. */
  async server(
    role: "primary" | "replica",
    name: string,
    extra: string[] = [],
    opts: { bundle?: boolean; denoFlags?: string[] } = {},
  ): Promise<Proc> {
    const args = [
      "--role",
      role,
      "-c",
      this.fleetFile,
      ...(role === "replica" ? ["--name", name] : []),
      ...this.#serverFlags,
      ...extra,
    ];
    const p = this.spawn(args, opts);
    await p.waitFor(/msg=ready/);
    return p;
  }

  /** Starts the proxy and waits until it says it is ready. */
  async proxy(extra: string[] = []): Promise<Proc> {
    const p = this.spawn(["--role", "proxy", "-c", this.fleetFile, ...extra]);
    await p.waitFor(/msg=ready/);
    return p;
  }

  /** Stops every process this lab started, and any rsync daemon they left. */
  async close(keepDir = false): Promise<void> {
    const stopped = Promise.all(this.#procs.map((p) => p.stop("SIGTERM", 5_000)));
    // An rsync daemon takes 400 ms to exit on SIGTERM (rsync's handler sleeps
    // so that an ssh child can restore the terminal): once every server says
    // it is stopping (its daemon is then never restarted), the daemons are
    // killed outright, so a lab's teardown does not wait that long.
    const servers = this.#procs.filter((p) =>
      (this.#argv.get(p) ?? []).some((a) => a === "primary" || a === "replica")
    );
    await Promise.all(servers.map((p) => p.waitFor(STOPPING, 5_000).catch(() => {})));
    await this.#killDaemons();
    await stopped;
    if (keepDir) {
      // What each process said, to read next to the trees it left.
      await Deno.mkdir(`${this.dir}/logs`, { recursive: true });
      for (const [i, p] of this.#procs.entries()) {
        const argv = (this.#argv.get(p) ?? []).join(" ");
        await Deno.writeTextFile(
          `${this.dir}/logs/${String(i).padStart(3, "0")}-${p.pid}.log`,
          `$ fanout ${argv}\nexit ${p.exited?.code}\n${p.stdout}${p.stderr}`,
        );
      }
    }
    // A fanout killed with SIGKILL leaves its daemon.
    await this.#killDaemons();
    this.#netHold.close();
    if (keepDir) {
      if (this.#mounted) console.error(`(a tmpfs: umount ${this.dir} when done)`);
      return;
    }
    if (this.#mounted) {
      // Lazy: a killed daemon's child may still hold a cwd in it for a moment.
      await sh("umount", ["-l", this.dir]).catch(() => {});
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /**
   * For a failure's message (what a CI log keeps of a lab that is gone): the
   * last lines each server and its rsync daemon logged, and the lab's
   * processes with where each waits.
   */
  async serverLogs(lines = 15): Promise<string> {
    const last = (text: string) => text.trimEnd().split("\n").slice(-lines).join("\n");
    const servers = this.#procs
      .filter((p) => (this.#argv.get(p) ?? []).some((a) => a === "primary" || a === "replica"))
      .map((p) => {
        const argv = this.#argv.get(p) ?? [];
        const name = argv.includes("--name") ? argv[argv.indexOf("--name") + 1] : "rsync1";
        const state = p.exited ? `exited ${p.exited.code}` : "running";
        const daemon = readText(`${this.dir}/state/${name}/rsyncd.log`) ?? "";
        return `--- ${argv[1]} ${name} (pid ${p.pid}, ${state}):\n${last(p.stderr)}\n` +
          `--- its rsync daemon's log:\n${last(daemon)}`;
      });
    // What of the lab still runs, and where each process waits.
    const ps = await sh("sh", [
      "-c",
      `ps -eo pid,pgid,stat,wchan:24,etimes,args | grep -F -e ${this.dir} | grep -v grep`,
    ]);
    return [...servers, `--- its processes (pid pgid stat wchan s args):\n${ps.stdout}`].join(
      "\n",
    );
  }

  /**
   * SIGKILLs the process group of every rsync daemon with a pid file in the
   * lab's state dir, and only while that group is still this lab's (a daemon,
   * or the connections it forked, which outlive a killed daemon): a stale pid
   * file (a daemon killed earlier) may name a pid the kernel has since given
   * to another lab's process (pids wrap at 32,768 here).
   */
  async #killDaemons(): Promise<void> {
    try {
      for await (const e of Deno.readDir(`${this.dir}/state`)) {
        // proxied/: the second daemon of a server behind a PROXY-protocol proxy.
        for (const sub of ["", "/proxied"]) {
          try {
            const pid = Number(
              await Deno.readTextFile(`${this.dir}/state/${e.name}${sub}/rsyncd.pid`),
            );
            if (pid > 1 && (await groupMentions(pid, this.dir))) Deno.kill(-pid, "SIGKILL");
          } catch { /* none */ }
        }
      }
    } catch { /* no state dir */ }
  }
}

/**
 * Whether a process of group `pgid` has `mark` in its command line: an rsync
 * daemon's per-connection children carry its command line.
 */
async function groupMentions(pgid: number, mark: string): Promise<boolean> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses.
      const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
      if (pgrp === pgid && (await commandLine(Number(e.name))).includes(mark)) return true;
    } catch { /* gone meanwhile */ }
  }
  return false;
}

/** A server's log line on SIGTERM, before it stops its daemons (logfmt or JSON). */
const STOPPING = /\bmsg=stopping\b|"msg":"stopping"/;

function serverLines(h: LabHost): string[] {
  return [
    `  name: ${h.name}`,
    `  address: ${h.ip}`,
    `  listen: ${h.ip}:${h.port}`,
    `  health: ${h.ip}:${h.health}`,
    `  path: ${h.path}`,
  ];
}

/**
 * Runs `body` with a fresh lab, always closing it (options as
 * {@linkcode Lab.create}). The lab is on a tmpfs of its own unless `tmpfs` is
 * false (or mounting one is not allowed): on this machine's disk every file a
 * test makes costs kernel time, and every fsync (git, SQLite, rsync) waits
 * for whatever else writes to the disk at that moment.
 */
export async function withLab(
  body: (lab: Lab) => Promise<void>,
  opts: { tmpfs?: boolean | string } = {},
): Promise<void> {
  const lab = await Lab.create({ tmpfs: true, ...opts });
  // FANOUT_KEEP_LAB=1 keeps a failed test's lab dir (logs, trees, state) to look at.
  let failed = true;
  try {
    await body(lab);
    failed = false;
  } finally {
    const keep = failed && Deno.env.get("FANOUT_KEEP_LAB") === "1";
    if (keep) console.error(`lab kept: ${lab.dir}`);
    await lab.close(keep);
  }
}

/**
 * `diff -r` of two trees (no symlink following); "" when identical. A
 * server's own temp dir (`.fanout-tmp`, never served) does not count.
 */
export async function diffTrees(a: string, b: string, excludes: string[] = []): Promise<string> {
  const r = await sh("diff", [
    "-r",
    "--no-dereference",
    ...[".fanout-tmp", ...excludes].flatMap((x) => ["-x", x]),
    a,
    b,
  ]);
  return r.stdout + r.stderr;
}

/**
 * How two trees differ, cheaply first: when their entry counts differ (a
 * `find` of names, no file read), that is the answer; else the `diff -r` of
 * {@linkcode diffTrees}. "" when identical. For polling: a diff of 20,000
 * files reads them all on both sides at every look.
 *
 * @example
 * ```ts
 * await waitFor("same", async () => (await treesDiffer(a, b)) === "");
 * ```
 */
export async function treesDiffer(a: string, b: string, excludes: string[] = []): Promise<string> {
  const [na, nb] = await Promise.all([a, b].map((d) => entryCount(d, excludes)));
  if (na !== nb) return `${a} has ${na} entries, ${b} ${nb}`;
  return await diffTrees(a, b, excludes);
}

/** Entries under `dir`, what `diff -r -x` skips left out (-1 when it cannot be read). */
async function entryCount(dir: string, excludes: string[]): Promise<number> {
  const names = [".fanout-tmp", ...excludes].flatMap((x, i) => [...(i ? ["-o"] : []), "-name", x]);
  const r = await sh("find", [dir, "(", ...names, ")", "-prune", "-o", "-printf", "."]);
  return r.code === 0 ? r.stdout.length : -1;
}

/**
 * Waits until each named server's tree equals the primary's (`rsync1`),
 * failing with the last diff.
 */
export async function converged(lab: Lab, names: string[], timeoutMs = 15_000): Promise<void> {
  for (const name of names) {
    let last = "";
    try {
      await waitFor(
        `${name} identical to rsync1`,
        async () => {
          last = await treesDiffer(lab.hosts.rsync1.path, lab.hosts[name].path);
          return last === "";
        },
        timeoutMs,
        50,
      );
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n${last.slice(0, 2000)}\n${await lab.serverLogs()}`,
      );
    }
  }
}

/** Asserts two trees are identical, with the diff as the message. */
export async function assertSameTree(a: string, b: string, excludes: string[] = []): Promise<void> {
  const d = await diffTrees(a, b, excludes);
  assert.equal(d, "", `trees differ:\n${d.slice(0, 3000)}`);
}

/** How many of `expected` (path → content) a tree holds, byte for byte. */
export function holding(tree: string, expected: Record<string, string>): number {
  let n = 0;
  for (const [p, content] of Object.entries(expected)) {
    try {
      if (Deno.readTextFileSync(`${tree}/${p}`) === content) n++;
    } catch { /* gone */ }
  }
  return n;
}

/**
 * Every path under `dir` with its type, size, mtime and inode, sorted:
 * "untouched" means equal listings.
 *
 * @example
 * ```ts
 * const before = await treeListing(dest);
 * assert.equal(await treeListing(dest), before);
 * ```
 */
export async function treeListing(dir: string): Promise<string> {
  const r = await sh("find", [dir, "-printf", "%P %y %s %T@ %i\n"]);
  return r.stdout.split("\n").sort().join("\n");
}

/**
 * CPU seconds of process `pid` and of its children it has reaped
 * (utime + stime + cutime + cstime of /proc/<pid>/stat): what a server such
 * as an rsync daemon spends, its per-connection children included. NaN when
 * the process is gone.
 *
 * @example
 * ```ts
 * const before = cpuSeconds(daemonPid);
 * await runClient();
 * console.log(`${((cpuSeconds(daemonPid) - before) * 1000).toFixed(0)} ms of server CPU`);
 * ```
 */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14-17 of proc(5), counted from the state field (3) here, in
    // USER_HZ (1/100 s on Linux).
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return NaN;
  }
}

/** Plain rsync with TCP_NODELAY, for tests that act as a third party. */
export function rsync(args: string[]): Promise<Ran> {
  return sh("rsync", ["--sockopts=TCP_NODELAY", "--contimeout=5", "--timeout=20", ...args]);
}

/** GETs a URL; returns status and body text. */
export async function http(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.text() };
}

/** Writes files (path → content) under `dir`, creating directories. */
export async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    const full = `${dir}/${p}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, content);
  }
}

/**
 * The command line of a client run of `name` in the lab's fleet (no
 * splay), with `extra` flags after it.
 *
 * @example
 * ```ts
 * const r = await lab.run(clientArgs(lab, "web1", ["--source", url]));
 * ```
 */
export function clientArgs(lab: Lab, name: string, extra: string[] = []): string[] {
  return ["--role", "client", "-c", lab.fleetFile, "--name", name, "--no-splay", ...extra];
}

/**
 * Starts a `--watch` client named `name` (no splay) mirroring into
 * `<lab>/<name>`, with `extra` flags; stopped at the lab's close.
 *
 * @example
 * ```ts
 * const w = watchClient(lab, "web1", ["--source", url]);
 * ```
 */
export function watchClient(
  lab: Lab,
  name: string,
  extra: string[] = [],
): { proc: Proc; dest: string } {
  const dest = `${lab.dir}/${name}`;
  const proc = lab.spawn(clientArgs(lab, name, ["--dest", dest, "--watch", ...extra]));
  return { proc, dest };
}

/**
 * Lands version `seq` in the tree at `dir` as a publish leaves it: `files`,
 * their version log entry, then the marker (stamped with its
 * `published_at`) by a rename, last and whole. Returns the marker.
 *
 * @example
 * ```ts
 * await landVersion(lab.hosts.rsync2.path, 2, { "a.txt": "a2\n" });
 * ```
 */
export async function landVersion(
  dir: string,
  seq: number,
  files: Record<string, string>,
): Promise<VersionMarker> {
  await writeTree(dir, files);
  const to: VersionMarker = {
    seq,
    commit: seq.toString(16).padStart(40, "0"),
    ref: "main",
    published_at: new Date().toISOString(),
  };
  const log = await Deno.readTextFile(`${dir}/${VERSION_LOG}`).catch(() => "");
  const entry = newEntry(readMarker(dir), to, { paths: Object.keys(files), deleted: [] });
  await Deno.writeTextFile(`${dir}/${VERSION_LOG}`, appendEntry(log, entry));
  const next = `${dir}/${VERSION_MARKER}.new`;
  await Deno.writeTextFile(next, formatMarker(to));
  stampMarker(next);
  await Deno.rename(next, `${dir}/${VERSION_MARKER}`);
  return to;
}

/**
 * `fleet` (the lab's, whose report token file holds the primary's secret) as
 * client `host` sees it: its auth.report_token_file holds its own token, as
 * `fanout render report-token --name HOST` makes it.
 */
export async function asReportingHost(fleet: Fleet, host: string): Promise<Fleet> {
  const secret = (await Deno.readTextFile(fleet.auth.reportTokenFile)).trim();
  const dir = `${fleet.auth.reportTokenFile}.clients`;
  const file = `${dir}/${host}.token`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(file, `${await hostToken(secret, host)}\n`, { mode: 0o600 });
  await Deno.chmod(file, 0o600);
  return { ...fleet, auth: { ...fleet.auth, reportTokenFile: file } };
}

/**
 * An rsync of the `series` ("3.2", "3.5") on this machine with its exact
 * version: the Debian build unpacked under /opt/rsyncs when there is one,
 * else the installed rsync when it is of that series; null when neither.
 * Tests of one series' behaviour run wherever that series is at hand.
 */
export async function rsyncOf(series: string): Promise<{ version: string; bin: string } | null> {
  const candidates = [
    ...(await Array.fromAsync(Deno.readDir("/opt/rsyncs")).catch(() => []))
      .filter((e) => e.isDirectory && e.name.startsWith(`rsync_${series}.`))
      .map((e) => `/opt/rsyncs/${e.name}/usr/bin/rsync`),
    "rsync",
  ];
  for (const bin of candidates) {
    const v = await sh(bin, ["--version"]).catch(() => null);
    const version = /rsync\s+version (\S+)/.exec(v?.stdout ?? "")?.[1];
    if (version?.startsWith(`${series}.`)) return { version, bin };
  }
  return null;
}

/**
 * Whether this machine lets a user namespace lower its own inotify limits
 * (tests of the watcher running out of watches need it); logs why not.
 */
export async function canLowerInotify(): Promise<boolean> {
  const probe = await sh("unshare", [
    "-U",
    "-r",
    "sh",
    "-c",
    "echo 1 > /proc/sys/user/max_inotify_watches",
  ]);
  if (probe.code !== 0) {
    console.log(
      `skipped: cannot lower inotify limits in a user namespace here (${probe.stderr.trim()})`,
    );
  }
  return probe.code === 0;
}

/**
 * Starts the lab's primary in a user namespace of its own whose inotify
 * limit is `watches`; its stderr is collected. `stop()` ends it.
 */
export function primaryWithWatches(
  lab: Lab,
  watches: number,
): { child: Deno.ChildProcess; stderr: () => string; stop: () => Promise<void> } {
  const conf = new URL("../deno.json", import.meta.url).pathname;
  const child = new Deno.Command("unshare", {
    args: [
      "-U",
      "-r",
      "sh",
      "-c",
      `echo ${watches} > /proc/sys/user/max_inotify_watches && exec ${Deno.execPath()} run -A --quiet --config=${conf} ${MAIN} --role primary -c ${lab.fleetFile}`,
    ],
    env: { [PARENT_PID_ENV]: String(Deno.pid) },
    stdout: "null",
    stderr: "piped",
    detached: true,
  }).spawn();
  let err = "";
  const pump = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) err += c;
  })();
  return {
    child,
    stderr: () => err,
    stop: async () => {
      try {
        Deno.kill(-child.pid, "SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await pump;
    },
  };
}
