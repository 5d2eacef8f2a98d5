// A whole fleet on loopback, started from one fleet file through the CLI as an
// operator would start it: a git server (a bare repository with the rendered
// post-receive hook), the primary, replicas (one behind a relay), the proxy,
// and clients run as cron runs them (or with --watch). Used by
// tests/fleet_test.ts, tests/whole_fleet_*_test.ts, bench/herd.ts and bench/soak.ts.
import assert from "node:assert/strict";
import {
  type FleetSpec,
  http,
  type Lab,
  type Proc,
  type Ran,
  readText,
  sh,
  treesDiffer,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";
import { UNSIGNED_WARNING } from "../lib/release/mod.ts";

/** fanout's own files: the version marker and log (every tree) and the dest marker (clients). */
export const MARKER = ".fanout-version";
export const LOG = ".fanout-changes";
export const DEST_MARKER = ".fanout-dest";
/** A signed version's manifest and envelope, beside the marker on every server of a signed fleet. */
export const RELEASE_FILES = [".fanout-manifest", ".fanout-release"];

/** Runs git with a fixed identity; throws with git's words on failure. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh("git", ["-c", "user.name=dev", "-c", "user.email=dev@lab", ...args], { cwd });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A bare repository developers push to, and a developer's clone of it. */
export class GitRepo {
  constructor(readonly bare: string, readonly work: string) {}

  /** Makes `<dir>/plugins.git` (bare, branch main) and a clone `<dir>/<dev>`. */
  static async create(dir: string, dev = "dev1"): Promise<GitRepo> {
    const bare = `${dir}/plugins.git`;
    await git(dir, "init", "-q", "--bare", "-b", "main", bare);
    const repo = new GitRepo(bare, `${dir}/${dev}`);
    await git(dir, "clone", "-q", bare, repo.work);
    await git(repo.work, "symbolic-ref", "HEAD", "refs/heads/main");
    return repo;
  }

  /** Another developer's clone of the same bare repository, at the same commit as this one. */
  async another(dev: string): Promise<GitRepo> {
    const dir = this.work.slice(0, this.work.lastIndexOf("/"));
    const other = new GitRepo(this.bare, `${dir}/${dev}`);
    await git(dir, "clone", "-q", this.bare, other.work);
    await git(other.work, "symbolic-ref", "HEAD", "refs/heads/main");
    await git(other.work, "pull", "-q", "--ff-only", this.work, "main");
    return other;
  }

  /**
   * Writes (string) and deletes (null) files, renames, sets exec bits and
   * makes symlinks, then commits everything; returns the commit id.
   */
  async commit(
    files: Record<string, string | null>,
    opts: {
      renames?: [string, string][];
      executable?: string[];
      symlinks?: Record<string, string>;
      msg?: string;
    } = {},
  ): Promise<string> {
    for (const [from, to] of opts.renames ?? []) {
      await Deno.mkdir(`${this.work}/${to}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await git(this.work, "mv", from, to);
    }
    for (const [p, content] of Object.entries(files)) {
      if (content === null) await git(this.work, "rm", "-q", "-r", p);
      else await writeTree(this.work, { [p]: content });
    }
    for (const [p, target] of Object.entries(opts.symlinks ?? {})) {
      await Deno.remove(`${this.work}/${p}`).catch(() => {});
      await Deno.symlink(target, `${this.work}/${p}`);
    }
    for (const p of opts.executable ?? []) await Deno.chmod(`${this.work}/${p}`, 0o755);
    await git(this.work, "add", "-A");
    await git(this.work, "commit", "-q", "--allow-empty", "-m", opts.msg ?? "change");
    return await git(this.work, "rev-parse", "HEAD");
  }

  /** `git push origin <what>` (the hook's lines are in stderr, as `remote: …`). */
  push(what = "main"): Promise<Ran> {
    return sh("git", ["push", "-q", "origin", what], { cwd: this.work });
  }

  /** The tree of `commit` as `git archive` writes it, extracted into `dir`. */
  async archive(commit: string, dir: string): Promise<string> {
    await Deno.mkdir(dir, { recursive: true });
    // From the bare repository: it has every developer's pushed commits.
    const r = await sh("sh", ["-c", `git archive ${commit} | tar -x -C "${dir}"`], {
      cwd: this.bare,
    });
    assert.equal(r.code, 0, r.stderr);
    return dir;
  }
}

/**
 * Runs `fanout --role publish` of the lab's fleet from `repo`'s bare
 * repository at debug level (its lines say which way a publish went), with
 * `args` after.
 *
 * @example
 * ```ts
 * const r = await publishFrom(lab, repo, "--ref", "main");
 * ```
 */
export function publishFrom(lab: Lab, repo: GitRepo, ...args: string[]): Promise<Ran> {
  return lab.run([
    "--role",
    "publish",
    "-c",
    lab.fleetFile,
    "--repo",
    repo.bare,
    "--log-level",
    "debug",
    ...args,
  ]);
}

/** The hook's lines to the pusher (`remote: …`), without the prefix. */
export function hookSaid(r: Ran): string[] {
  return r.stderr.split("\n").filter((l) => l.startsWith("remote: ")).map((l) => l.slice(8))
    // These fleets are not signed: every publish warns so (tests/publish_signed_test.ts).
    .filter((l) => !l.includes(UNSIGNED_WARNING));
}

/** Options of {@linkcode Topology.start}. */
export interface TopologyOptions {
  /** Client host names (default c1…c5). */
  clients?: string[];
  /** Replicas (default rsync2, rsync3, and rsync4 behind rsync3: a relay). */
  replicas?: FleetSpec["replicas"];
  push?: FleetSpec["push"];
  client?: FleetSpec["client"];
  /** Keys added to the proxy section. */
  proxy?: Record<string, string | number | boolean>;
  /** Top-level YAML appended to the fleet file. */
  extra?: string;
}

/** What a server's `/status` says about its tree. */
export interface ServerStatus {
  name: string;
  healthy: boolean;
  tree: { version: { seq: number; commit: string } | null };
  daemon: { pid: number | null; state: string };
  replicas: { name: string; state: string }[];
}

/**
 * One fleet: git server, primary, replicas (one a relay), proxy, clients,
 * all from one fleet file. Every process is the fanout CLI, started by the
 * lab (so `lab.close()` stops whatever a test left).
 */
export class Topology {
  readonly servers: string[];
  readonly clients: string[];
  /** Running server and proxy processes, by name. */
  readonly procs = new Map<string, Proc>();
  /** Running `--watch` clients, by name. */
  readonly watchers = new Map<string, Proc>();
  /** Flags a client's every run gets (its cron line's), by name. */
  readonly clientFlags = new Map<string, string[]>();
  #archives = new Map<string, Promise<string>>();

  private constructor(readonly lab: Lab, readonly repo: GitRepo, readonly bin: string) {
    this.servers = Topology.#serverNames(lab);
    this.clients = [];
  }

  /**
   * Writes the fleet file, creates the git server (bare repository with the
   * hook rendered by `fanout render post-receive`), starts every server and
   * the proxy through the CLI and waits until each says it is ready.
   */
  static async start(lab: Lab, opts: TopologyOptions = {}): Promise<Topology> {
    const bin = await Topology.#fleetFile(lab, opts);
    // The git server is made while the servers start: neither needs the other.
    // Both are waited for, whichever fails: nothing of either is left running.
    const [procs, repo] = await Promise.allSettled([
      Topology.#startServers(lab),
      Topology.#gitServer(lab),
    ]);
    if (procs.status === "rejected") throw procs.reason;
    if (repo.status === "rejected") throw repo.reason;
    const t = Topology.#of(lab, repo.value, bin, opts);
    for (const [name, p] of procs.value) t.procs.set(name, p);
    return t;
  }

  /** Starts every server of `lab`'s fleet and its proxy; returns them by name once all are ready. */
  static async #startServers(lab: Lab): Promise<[string, Proc][]> {
    // Downstream first, so every push finds its target up; any order converges.
    // The proxy depends on none of them (it health-checks every 200 ms here).
    const proxy = lab.proxy();
    proxy.catch(() => {}); // awaited below, once the servers are up
    const [primary, ...replicas] = Topology.#serverNames(lab);
    const started = await Promise.all(
      replicas.map(async (n) => [n, await startServer(lab, n)] as [string, Proc]),
    );
    started.push([primary, await startServer(lab, primary)]);
    return [...started, ["proxy", await proxy]];
  }

  /**
   * What {@linkcode Topology.start} does before it starts anything: the fleet
   * file and the git server with its hook. For a test of what each role
   * refuses at start, which needs no fleet running.
   */
  static async prepare(lab: Lab, opts: TopologyOptions = {}): Promise<Topology> {
    const bin = await Topology.#fleetFile(lab, opts);
    return Topology.#of(lab, await Topology.#gitServer(lab), bin, opts);
  }

  /** Writes the fleet file (and the fanout wrapper it names); returns the wrapper's path. */
  static async #fleetFile(lab: Lab, opts: TopologyOptions): Promise<string> {
    const bin = await lab.wrapper();
    await lab.fleet({
      replicas: opts.replicas ?? ["rsync2", "rsync3", { name: "rsync4", upstream: "rsync3" }],
      proxy: opts.proxy ?? true,
      push: opts.push,
      client: { dest: `${lab.dir}/clients/unused`, watch_interval: "250ms", ...opts.client },
      extra: [`binary: ${bin}`, opts.extra ?? ""].join("\n"),
    });
    return bin;
  }

  /** The git server: a bare repository with the hook `fanout render post-receive` makes. */
  static async #gitServer(lab: Lab): Promise<GitRepo> {
    await Deno.mkdir(`${lab.dir}/git`, { recursive: true });
    const [repo, hook] = await Promise.all([
      GitRepo.create(`${lab.dir}/git`),
      lab.run(["render", "post-receive", "-c", lab.fleetFile]),
    ]);
    assert.equal(hook.code, 0, hook.stderr);
    await Deno.writeTextFile(`${repo.bare}/hooks/post-receive`, hook.stdout, { mode: 0o755 });
    await Deno.chmod(`${repo.bare}/hooks/post-receive`, 0o755);
    return repo;
  }

  /** The servers of the lab's fleet, the primary (rsync1) first. */
  static #serverNames(lab: Lab): string[] {
    return [
      "rsync1",
      ...Object.keys(lab.hosts).filter((n) => n.startsWith("rsync") && n !== "rsync1"),
    ];
  }

  static #of(lab: Lab, repo: GitRepo, bin: string, opts: TopologyOptions): Topology {
    const t = new Topology(lab, repo, bin);
    t.clients.push(...(opts.clients ?? ["c1", "c2", "c3", "c4", "c5"]));
    return t;
  }

  /** This lab's fleet file. */
  get fleetFile(): string {
    return this.lab.fleetFile;
  }

  /** Where client `name` keeps the tree. */
  dest(name: string): string {
    return `${this.lab.dir}/clients/${name}/plugins`;
  }

  /** Client `name`'s state dir (lock, status file). */
  clientState(name: string): string {
    return `${this.lab.dir}/state/${name}`;
  }

  /**
   * The command line of client `name`, as its cron line runs it (plus
   * `extra`); `--no-splay` unless `opts.splay`.
   */
  clientArgs(name: string, extra: string[] = [], opts: { splay?: boolean } = {}): string[] {
    return [
      "--role",
      "client",
      "-c",
      this.fleetFile,
      "--name",
      name,
      ...(opts.splay ? [] : ["--no-splay"]),
      "--dest",
      this.dest(name),
      ...(this.clientFlags.get(name) ?? []),
      ...extra,
    ];
  }

  /** Runs client `name` once, as cron does. */
  async runClient(name: string, extra: string[] = []): Promise<Ran> {
    await Deno.mkdir(this.dest(name).replace(/\/[^/]*$/, ""), { recursive: true });
    return await this.lab.run(this.clientArgs(name, extra));
  }

  /** Starts client `name` in the background (e.g. `--watch`). */
  async spawnClient(
    name: string,
    extra: string[] = [],
    opts: { splay?: boolean } = {},
  ): Promise<Proc> {
    await Deno.mkdir(this.dest(name).replace(/\/[^/]*$/, ""), { recursive: true });
    return this.lab.spawn(this.clientArgs(name, extra, opts));
  }

  /** Starts `--watch` on each of `names` and waits until each says it watches. */
  async startWatchers(names: string[]): Promise<void> {
    await Promise.all(names.map(async (n) => {
      const p = await this.spawnClient(n, ["--watch"]);
      this.watchers.set(n, p);
      await p.waitFor(/msg=watching/);
    }));
  }

  /** Starts server `name` (the primary is rsync1) and waits until it is ready. */
  async startServer(name: string): Promise<Proc> {
    const p = await startServer(this.lab, name);
    this.procs.set(name, p);
    return p;
  }

  /** Starts the proxy and waits until it is ready. */
  async startProxy(): Promise<Proc> {
    const p = await this.lab.proxy();
    this.procs.set("proxy", p);
    return p;
  }

  /**
   * Kills server `name` as a host dies: SIGKILL to fanout and to its rsync
   * daemon's process group, no goodbyes.
   */
  async killServer(name: string): Promise<void> {
    const p = this.procs.get(name);
    this.procs.delete(name);
    await killServer(this.lab, name, p);
  }

  /** URL of a host's health endpoint. */
  healthUrl(name: string, path = "/status"): string {
    const h = this.lab.hosts[name];
    return `http://${h.ip}:${h.health}${path}`;
  }

  /** A server's `/status`. */
  async status(name: string): Promise<ServerStatus> {
    return JSON.parse((await http(this.healthUrl(name))).body);
  }

  /** The proxy's `/status`. */
  async proxyStatus(): Promise<{
    connections: { active: number; refused_max_connections: number; refused_no_backend: number };
    rotation: string[];
    backends: { name: string; state: string; in_rotation: boolean }[];
  }> {
    return JSON.parse((await http(this.healthUrl("proxy"))).body);
  }

  /**
   * Commits `files` (see {@linkcode GitRepo.commit}) and pushes it; asserts
   * the push went through and the hook published it. Returns the commit id.
   */
  async publish(
    files: Record<string, string | null>,
    opts: Parameters<GitRepo["commit"]>[1] = {},
  ): Promise<string> {
    const commit = await this.repo.commit(files, opts);
    const r = await this.repo.push();
    assert.equal(r.code, 0, `git push failed:\n${r.stderr}`);
    const said = hookSaid(r);
    assert.equal(said.length, 1, `the hook says one line:\n${r.stderr}`);
    assert.match(said[0], new RegExp(`^published seq \\d+ \\(${commit.slice(0, 8)} main\\)`));
    return commit;
  }

  /**
   * `commit`'s tree, extracted once: the extraction is shared, so hosts
   * compared at the same time never read a tree another extraction is
   * rewriting.
   */
  archive(commit: string): Promise<string> {
    let dir = this.#archives.get(commit);
    if (!dir) {
      dir = this.repo.archive(commit, `${this.lab.dir}/archives/${commit}`);
      this.#archives.set(commit, dir);
    }
    return dir;
  }

  /**
   * How `dir` differs from `commit`'s tree (fanout's own files aside), and
   * whether its marker names `commit`; "" when it holds exactly that commit.
   */
  async divergence(dir: string, commit: string): Promise<string> {
    const diff = await treesDiffer(await this.archive(commit), dir, [
      MARKER,
      LOG,
      DEST_MARKER,
      ...RELEASE_FILES,
    ]);
    if (diff) return diff;
    const m = await markerOf(dir);
    if (m?.commit !== commit) {
      return `${dir}/${MARKER} names ${m ? `seq ${m.seq} ${m.commit}` : "nothing"}, not ${commit}`;
    }
    return "";
  }

  /** Path of a host's tree: a server's path or a client's dest. */
  treeOf(name: string): string {
    return this.lab.hosts[name]?.path || this.dest(name);
  }

  /**
   * Waits until every server holds exactly `commit`'s tree and says so on
   * `/status`, then runs every cron client (those not watching) once and
   * checks each, and waits for the watching ones. Throws naming the host
   * and the difference.
   */
  async converged(
    commit: string,
    opts: { timeoutMs?: number; clients?: string[]; runClients?: boolean } = {},
  ): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const settle = async (name: string) => {
      const dir = this.treeOf(name);
      try {
        // The trees are compared once the marker names the commit: reading
        // it starts no process, and a push or a sync writes it last.
        await waitFor(
          `${name} at ${commit.slice(0, 8)}`,
          async () =>
            (await markerOf(dir))?.commit === commit &&
            (await this.divergence(dir, commit)) === "",
          timeoutMs,
          50,
        );
      } catch (e) {
        const last = await this.divergence(dir, commit);
        throw new Error(`${(e as Error).message}\n${last.slice(0, 2000)}`);
      }
    };
    await Promise.all(this.servers.map(settle));
    for (const name of this.servers) {
      await waitFor(`${name}'s /status reporting ${commit.slice(0, 8)}`, async () => {
        return (await this.status(name)).tree.version?.commit === commit;
      }, 5_000);
    }
    const clients = opts.clients ?? this.clients;
    const cron = clients.filter((c) => !this.watchers.has(c));
    if (opts.runClients !== false) {
      const runs = await Promise.all(cron.map((c) => this.runClient(c)));
      runs.forEach((r, i) => {
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""], `${cron[i]}: ${r.stderr}`);
      });
    }
    await Promise.all(clients.map(settle));
  }

  /**
   * Stops everything this topology runs (watchers, proxy, replicas, primary)
   * with SIGTERM, asserts each exits 0, and that no process of this lab
   * (fanout, rsync daemons and their children, client rsyncs) is left.
   */
  async shutdown(): Promise<void> {
    const stop = async (p: Proc, what: string) => {
      const st = await p.stop("SIGTERM");
      assert.equal(st.code, 0, `${what} exited ${st.code}:\n${p.stderr.slice(-1500)}`);
    };
    await Promise.all([...this.watchers].map(([n, p]) => stop(p, n)));
    this.watchers.clear();
    const proxy = this.procs.get("proxy");
    if (proxy) await stop(proxy, "proxy");
    await Promise.all(
      [...this.procs].filter(([n]) => n !== "proxy").map(([n, p]) => stop(p, n)),
    );
    this.procs.clear();
    await assertNothingLeft(this.lab);
  }
}

/** Starts server `name` of `lab`'s fleet (the primary is rsync1) and waits until it is ready. */
function startServer(lab: Lab, name: string): Promise<Proc> {
  // FANOUT_LAB_LOG=debug: the servers log at that level (read with FANOUT_KEEP_LAB=1).
  const level = Deno.env.get("FANOUT_LAB_LOG");
  return lab.server(
    name === "rsync1" ? "primary" : "replica",
    name,
    level ? ["--log-level", level] : [],
  );
}

/**
 * Kills server `name` of `lab` (its fanout `p`) as a host dies: SIGKILL to
 * fanout and to its rsync daemon's process group, no goodbyes; returns once
 * both are gone.
 *
 * @example
 * ```ts
 * await killServer(lab, "rsync2", replica);
 * ```
 */
export async function killServer(lab: Lab, name: string, p?: Proc): Promise<void> {
  const pidFile = `${lab.dir}/state/${name}/rsyncd.pid`;
  // Read synchronously and before either kill, so the two land back to back
  // (kill-point tests catch a push mid-way): the daemon is running, and its
  // pid file is checked against its command line, not a scan of /proc.
  const pid = Number(readText(pidFile) ?? "0");
  // A stale pid file's pid may be another lab's process by now.
  const ours = pid > 1 && (readText(`/proc/${pid}/cmdline`) ?? "").includes(lab.dir);
  p?.kill("SIGKILL");
  if (ours) {
    try {
      Deno.kill(-pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await p?.status();
  await waitFor(`${name}'s daemon gone`, () => !alive(pid), 5_000);
}

/** Asserts no process mentions the lab dir in its command line. */
export async function assertNothingLeft(lab: Lab): Promise<void> {
  let left = "";
  await waitFor("no process of the lab left", async () => {
    const r = await sh("pgrep", ["-a", "-f", lab.dir]);
    left = r.stdout;
    return r.code === 1;
  }, 5_000).catch(() => {
    throw new Error(`processes left behind:\n${left}`);
  });
}

/** The version marker of a tree, or null. */
export async function markerOf(dir: string): Promise<{ seq: number; commit: string } | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/${MARKER}`));
  } catch {
    return null;
  }
}

/** True while `pid` runs (a zombie does not count). */
export function alive(pid: number): boolean {
  if (!(pid > 1)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

/** A small tree: `n` files in a few directories, tagged so versions differ. */
export function smallTree(n: number, tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`src/m${i % 4}/f${i}.php`] = `<?php // ${tag} ${i}\n`;
  return out;
}

/**
 * Runs `body` with a lab for a whole fleet: ten hosts' trees on one machine,
 * on a tmpfs when one has room, where creating thousands of files costs a
 * fraction of the kernel time a disk takes.
 *
 * @example
 * ```ts
 * await fleetLab(async (lab) => { const t = await Topology.start(lab); await t.shutdown(); });
 * ```
 */
export function fleetLab(body: (lab: Lab) => Promise<void>): Promise<void> {
  return withLab(body, { tmpfs: true });
}

/**
 * Runs `cases` on one fleet (`opts` as {@linkcode Topology.start}'s), each a
 * step of `ctx` that starts where the one before ended (every host at one
 * version): a fleet costs seconds to start and stop. A failed case ends the
 * test there.
 *
 * @example
 * ```ts
 * Deno.test("two cases", (ctx) => onOneFleet(ctx, {}, [["a", caseA], ["b", caseB]]));
 * ```
 */
export async function onOneFleet(
  ctx: Deno.TestContext,
  opts: TopologyOptions,
  cases: [name: string, run: (t: Topology) => Promise<void>][],
): Promise<void> {
  await fleetLab(async (lab) => {
    const t = await Topology.start(lab, opts);
    for (const [name, run] of cases) {
      if (!(await ctx.step(name, () => run(t)))) return;
    }
    await t.shutdown();
  });
}

/**
 * Writes `n` files of `mb` MiB (sparse: cheap to make, full size to send)
 * into `t`'s work clone, `big/blob<i>.bin`; returns their paths.
 *
 * @example
 * ```ts
 * const big = await bigFiles(t, 2, 16);
 * ```
 */
export async function bigFiles(
  t: Topology,
  n: number,
  mb: number,
  tag = "v1",
): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `big/blob${i}.bin`;
    await Deno.mkdir(`${t.repo.work}/big`, { recursive: true });
    const f = await Deno.open(`${t.repo.work}/${name}`, { write: true, create: true });
    await f.truncate(0);
    await f.write(new TextEncoder().encode(`${tag} ${i}\n`));
    await f.truncate(mb * 1024 * 1024);
    f.close();
    names.push(name);
  }
  return names;
}
