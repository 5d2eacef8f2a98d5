// A commit reaching the fleet, end to end: from the start of `git push` into
// a bare repository (whose post-receive hook, rendered by `fanout render
// post-receive`, publishes to the primary) until each replica announces the
// new version (a `GET /version` long-poll of the bench's own on each) and
// until every `--watch` client holds it (its marker in its dest). Two
// replicas, loopback only. Per tree: RUNS one-file commits, then (in the
// largest tree) RUNS commits of BURST files in each of the --burst-dirs
// spreads (10 files in each of 50 directories, one in each of 500); then, every fanout process
// stopped but the replicas, the floor: plain rsync of the same kind of commit's changed paths
// from the work tree to both replicas at once (bench/_floor.ts).
//
// With --after-push, the repository has no hook: the bench runs
// `fanout --role publish` itself the moment `git push` returns.
//
// Usage: deno run -A bench/end_to_end.ts [--quick] [--files 5000,100000] [--runs N]
//   [--burst N] [--burst-dirs 50,500] [--clients N] [--after-push] [--disk]
//   [--set push.KEY=VALUE …]   (settings of the primary, e.g. push.storm_events=5000)
import { parseArgs } from "node:util";
import { Lab, type Proc, sleep, waitFor, watchClient } from "../tests/_helpers.ts";
import { readMarker } from "../lib/version/mod.ts";
import { floorPush } from "./_floor.ts";
import { git } from "./_git.ts";
import { pct, spread } from "./_stats.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    files: { type: "string" },
    runs: { type: "string" },
    burst: { type: "string" },
    "burst-dirs": { type: "string" },
    clients: { type: "string" },
    "after-push": { type: "boolean" },
    disk: { type: "boolean" },
    set: { type: "string", multiple: true },
  },
}).values;
const quick = args.quick ?? false;
const TREES = (args.files ?? (quick ? "2000" : "5000,100000")).split(",").map(Number);
const RUNS = Number(args.runs ?? (quick ? 3 : 7));
const BURST = Number(args.burst ?? (quick ? 100 : 500));
/** How many directories a burst's files are spread over, one row each. */
const BURST_DIRS = (args["burst-dirs"] ?? (quick ? "10" : "50,500")).split(",").map(Number);
const CLIENTS = Number(args.clients ?? 2);
const HOOK = !args["after-push"];
const PER_DIR = 100;
const REPLICAS = ["rsync2", "rsync3"];
/**
 * FANOUT_BENCH_LOG=FILE: the debug logs of the primary (FILE.<files>), the
 * clients (FILE.<files>.web1, …) and with --after-push the publisher
 * (FILE.<files>.publish), to see where time goes.
 */
const LOG_TO = Deno.env.get("FANOUT_BENCH_LOG");
/** The longest a version may take to arrive anywhere before the run fails. */
const CAP_MS = 120_000;

/** One commit's way through the fleet, ms from the start of `git push`. */
interface Sample {
  push: number;
  primary: number;
  replicas: number;
  clients: number;
}

/** A kind of commit: `count` files in `dirs` directories. */
interface Kind {
  count: number;
  dirs: number;
}

interface Row {
  name: string;
  samples: Sample[];
  floor: number[];
}

/** The path of file `n` of the tree. */
const fileOf = (n: number) => `d${Math.floor(n / PER_DIR)}/f${n}.php`;

async function writeTree(work: string, files: number): Promise<void> {
  for (let n = 0; n < files; n++) {
    if (n % PER_DIR === 0) await Deno.mkdir(`${work}/d${n / PER_DIR}`, { recursive: true });
    Deno.writeTextFileSync(`${work}/${fileOf(n)}`, `<?php // file ${n}\n${"x".repeat(n % 900)}\n`);
  }
}

/**
 * Rewrites `count` files in `dirs` directories spread over the tree (at most
 * PER_DIR in each) and commits them; returns their paths.
 */
async function change(
  work: string,
  files: number,
  { count, dirs }: Kind,
  k: number,
): Promise<string[]> {
  const all = Math.ceil(files / PER_DIR);
  const per = Math.ceil(count / dirs);
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const dir = (k * 7919 + Math.floor(i / per) * Math.floor(all / dirs)) % all;
    const n = Math.min(files - 1, dir * PER_DIR + (k * 13 + i % per) % PER_DIR);
    const p = fileOf(n);
    await Deno.writeTextFile(`${work}/${p}`, `<?php // change ${k}.${i}\n`);
    paths.push(p);
  }
  await git(work, "commit", "-q", "-am", `change ${k}`);
  return paths;
}

/**
 * Resolves with the ms from `t0()` until the server at `health` announces
 * `commit` (a long-poll on `/version`, asked again when it ends on another).
 */
async function announced(health: string, after: number, commit: string, t0: () => number) {
  const until = Date.now() + CAP_MS;
  for (;;) {
    const res = await fetch(`http://${health}/version?after=${after}&wait=30`);
    if (res.ok) {
      const v = (await res.json()).version;
      if (v?.commit === commit) return performance.now() - t0();
      if (v?.seq) after = v.seq;
    } else await res.body?.cancel();
    if (Date.now() > until) throw new Error(`${health} never announced ${commit}`);
  }
}

/** Resolves with the ms from `t0()` until every dir's marker names `commit` (looked at every 2 ms). */
async function held(dests: string[], commit: string, t0: () => number): Promise<number> {
  await waitFor(
    `${commit} in ${dests.join(", ")}`,
    () => Promise.resolve(dests.every((d) => readMarker(d)?.commit === commit)),
    CAP_MS,
    2,
  );
  return performance.now() - t0();
}

/** A tree in a lab of its own: the repository, the servers, the clients. */
class Fleet {
  primary!: Proc;
  clients: { proc: Proc; dest: string }[] = [];
  bare: string;
  work: string;
  constructor(readonly lab: Lab, readonly files: number) {
    this.bare = `${lab.dir}/git/origin.git`;
    this.work = `${lab.dir}/git/work`;
  }

  static async start(files: number): Promise<Fleet> {
    const lab = await Lab.create(args.disk ? {} : { tmpfs: "12g" });
    const f = new Fleet(lab, files);
    try {
      await f.#start();
    } catch (e) {
      await lab.close();
      throw e;
    }
    return f;
  }

  async #start(): Promise<void> {
    const { lab } = this;
    const bin = await lab.wrapper();
    await lab.fleet({
      push: { reconcile: "1h" },
      client: { retries: 0, watch_interval: "60s" },
      extra: `binary: ${bin}`,
    });
    await Deno.mkdir(`${lab.dir}/git`, { recursive: true });
    await git(lab.dir, "init", "-q", "--bare", "-b", "main", this.bare);
    await git(lab.dir, "clone", "-q", this.bare, this.work);
    await git(this.work, "symbolic-ref", "HEAD", "refs/heads/main");
    if (HOOK) {
      const hook = await lab.run(["render", "post-receive", "-c", lab.fleetFile]);
      if (hook.code !== 0) throw new Error(hook.stderr);
      await Deno.writeTextFile(`${this.bare}/hooks/post-receive`, hook.stdout, { mode: 0o755 });
      await Deno.chmod(`${this.bare}/hooks/post-receive`, 0o755);
    }
    console.error(`bench: a tree of ${this.files} files`);
    await writeTree(this.work, this.files);
    await git(this.work, "add", "-A");
    await git(this.work, "commit", "-q", "-m", "tree");
    for (const r of REPLICAS) await lab.server("replica", r);
    this.primary = await lab.server("primary", "rsync1", [
      ...(LOG_TO ? ["--log-level", "debug"] : []),
      ...(args.set ?? []).flatMap((kv) => ["--set", kv]),
    ]);
    const first = await this.push(); // the whole tree, through the primary to both replicas
    const commit = await git(this.work, "rev-parse", "HEAD");
    await Promise.all(REPLICAS.map((r) => announced(this.health(r), -1, commit, () => 0)));
    console.error(`bench: first publish ${first.toFixed(0)} ms; clients syncing`);
    for (let i = 0; i < CLIENTS; i++) {
      const h = lab.hosts[REPLICAS[i % REPLICAS.length]];
      this.clients.push(
        watchClient(lab, `web${i + 1}`, [
          "--source",
          `rsync://${h.ip}:${h.port}/plugins/`,
          ...(LOG_TO ? ["--log-level", "debug"] : []),
        ]),
      );
    }
    await held(this.clients.map((c) => c.dest), commit, () => 0);
  }

  health(name: string): string {
    const h = this.lab.hosts[name];
    return `${h.ip}:${h.health}`;
  }

  /** `git push`, and with --after-push the publish; ms until done. */
  async push(): Promise<number> {
    const t0 = performance.now();
    await git(this.work, "push", "-q", "origin", "main");
    if (!HOOK) {
      const r = await this.lab.run([
        "--role",
        "publish",
        "-c",
        this.lab.fleetFile,
        "--repo",
        this.bare,
        ...(LOG_TO ? ["--log-level", "debug"] : []),
      ]);
      if (r.code !== 0) throw new Error(r.stderr);
      if (LOG_TO) {
        await Deno.writeTextFile(`${LOG_TO}.${this.files}.publish`, r.stderr, { append: true });
      }
    }
    return performance.now() - t0;
  }

  /** One commit of `kind` through the fleet. */
  async sample(kind: Kind, k: number): Promise<Sample> {
    const seq = readMarker(this.lab.hosts.rsync1.path)?.seq ?? -1;
    await change(this.work, this.files, kind, k);
    const commit = await git(this.work, "rev-parse", "HEAD");
    let t0 = 0;
    const clock = () => t0;
    const primary = announced(this.health("rsync1"), seq, commit, clock);
    const replicas = Promise.all(
      REPLICAS.map((r) => announced(this.health(r), seq, commit, clock)),
    );
    const clients = held(this.clients.map((c) => c.dest), commit, clock);
    await sleep(50); // the long-polls held before the clock starts
    const at = new Date().toISOString();
    t0 = performance.now();
    const push = await this.push();
    const s = {
      push,
      primary: await primary,
      replicas: Math.max(...await replicas),
      clients: await clients,
    };
    // When it started, to find it in the logs.
    console.error(
      `bench: ${kind.count} files in ${kind.dirs} dirs at ${at}: ${
        JSON.stringify(s, (_, v) => typeof v === "number" ? Math.round(v) : v)
      }`,
    );
    return s;
  }

  /** RUNS commits of the same kind, not pushed, each sent by the floor alone. */
  async floor(kind: Kind, k: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const paths = await change(this.work, this.files, kind, k + i);
      times.push(await floorPush(this.lab, this.work, paths, REPLICAS));
    }
    return times;
  }

  /** Stops the clients and the primary: the replicas' daemons stay for the floor. */
  async quiet(): Promise<void> {
    for (const [i, c] of this.clients.entries()) {
      await c.proc.stop();
      if (LOG_TO) await Deno.writeTextFile(`${LOG_TO}.${this.files}.web${i + 1}`, c.proc.stderr);
    }
    await this.primary.stop();
    if (LOG_TO) await Deno.writeTextFile(`${LOG_TO}.${this.files}`, this.primary.stderr);
  }
}

const rows: Row[] = [];
let k = 1;
for (const files of TREES) {
  const fleet = await Fleet.start(files);
  try {
    const kinds: Kind[] = [
      { count: 1, dirs: 1 },
      ...(files === Math.max(...TREES) ? BURST_DIRS.map((dirs) => ({ count: BURST, dirs })) : []),
    ];
    const mine = kinds.map((kind) => ({
      name: `${files} files, ${
        kind.count === 1 ? "one file" : `${kind.count} files in ${kind.dirs} dirs`
      }`,
      kind,
      samples: [] as Sample[],
      floor: [] as number[],
    }));
    for (const row of mine) {
      for (let i = 0; i < RUNS; i++) {
        row.samples.push(await fleet.sample(row.kind, k++));
        await sleep(300);
      }
    }
    await fleet.quiet();
    for (const row of mine) {
      row.floor = await fleet.floor(row.kind, k);
      k += RUNS;
    }
    rows.push(...mine);
  } finally {
    await fleet.lab.close();
  }
}

const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
const settings = args.set?.length ? `; the primary with ${args.set.join(", ")}` : "";
console.log(
  `\n\`git push\` start → ${
    HOOK ? "(post-receive hook publishes) →" : "push returns, the bench publishes →"
  } both replicas announce → ${CLIENTS} --watch clients hold it; ${RUNS} commits a row; ` +
    `ms p50 / p90 / max; load average at the end ${load}${settings}\n`,
);
console.log(
  `| commit | push${
    HOOK ? " (with the hook's publish)" : " + publish"
  } | primary announces | both replicas announce | every client holds it | floor | replicas / floor (p50) | clients / floor (p50) |`,
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  const col = (f: (s: Sample) => number) => r.samples.map(f);
  const f50 = pct(r.floor, 50);
  console.log(
    `| ${r.name} | ${spread(col((s) => s.push))} | ${spread(col((s) => s.primary))} | ${
      spread(col((s) => s.replicas))
    } | ${spread(col((s) => s.clients))} | ${spread(r.floor)} | ${
      (pct(col((s) => s.replicas), 50) / f50).toFixed(1)
    }× | ${(pct(col((s) => s.clients), 50) / f50).toFixed(1)}× |`,
  );
}
