// Benchmark: rsync pulls through fanout's proxy against the same pulls made
// directly and through nginx `stream` and HAProxy (configs from `fanout render`),
// on one tree served by the same two daemons; then the RSS of each proxy
// holding many idle connections.
//
//   deno run -A bench/proxy.ts [--quick] [--runs N] [--conns N]
//
// Prints a markdown table with ratios against direct pulls measured in the same run.
import { parseArgs } from "node:util";
import { canConnect, Lab, sh, sleep, waitFor } from "../tests/_helpers.ts";
import { rsyncArgs, runRsync } from "../lib/rsync/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean" }, runs: { type: "string" }, conns: { type: "string" } },
});
const quick = args.values.quick ?? false;
const RUNS = Number(args.values.runs ?? (quick ? 1 : 5));
const FILES = quick ? 600 : 3000;
/** Every 10th file is big: ~100 KB a file on average (full: ~300 MB). */
const SMALL = 30_000;
const BIG = 730_000;
const IDLE_CONNS = Number(args.values.conns ?? (quick ? 200 : 1000));
const PARALLEL = 4;
const FANOUT = "fanout proxy (copy)";

interface Target {
  name: string;
  /** rsync URL of the read module for the i-th of several parallel pulls. */
  url: (i: number) => string;
  /** Processes whose RSS is the proxy's (null for direct). */
  pids: () => Promise<number[]>;
  host?: string;
  port?: number;
}

const lab = await Lab.create();
const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "fanout-bench-" });
const thirdParty: Deno.ChildProcess[] = [];
try {
  // The idle connections all come from one address and stop after their
  // greeting: lift the per-source limit and the handshake deadline for them.
  await lab.fleet({
    replicas: ["rsync2"],
    proxy: { max_connections_per_source: IDLE_CONNS + 100, handshake_timeout: "10m" },
  });
  // Production check intervals (the lab's are 200ms, for fast tests), for every proxy alike.
  const fleetText = await Deno.readTextFile(lab.fleetFile);
  await Deno.writeTextFile(
    lab.fleetFile,
    fleetText.replace(/^ {2}interval: .*\n/m, "").replace(/^ {2}check_timeout: .*\n/m, ""),
  );
  const r1 = lab.hosts.rsync1;
  const r2 = lab.hosts.rsync2;
  const treeBytes = await makeTree(r1.path);
  // Same bytes on both servers (hard links: one page cache).
  await Deno.remove(r2.path, { recursive: true });
  await sh("cp", ["-al", r1.path, r2.path]);
  await lab.server("primary", "rsync1");
  await lab.server("replica", "rsync2");

  // The default engine (native copy) on the lab's proxy host; the splice and
  // deno engines beside it, each its own proxy on its own address.
  const px = lab.hosts.proxy;
  const fanout = lab.spawn(["--role", "proxy", "-c", lab.fleetFile, "--log-level", "warn"]);
  await waitFor("fanout proxy", () => canConnect(px.ip, px.port), 20_000);
  const engines = [["splice", 203], ["deno", 204]] as const;
  const others = [];
  for (const [engine, n] of engines) {
    const at = { ip: lab.ip(n), port: lab.port(lab.ip(n)) };
    const proc = lab.spawn([
      "--role",
      "proxy",
      "-c",
      lab.fleetFile,
      "--log-level",
      "warn",
      "--set",
      `proxy.listen=${at.ip}:${at.port}`,
      "--set",
      `proxy.health=${at.ip}:${lab.port(at.ip)}`,
      "--set",
      `proxy.engine=${engine}`,
    ]);
    await waitFor(`fanout proxy (${engine})`, () => canConnect(at.ip, at.port), 20_000);
    others.push({ engine, at, proc });
  }

  const ngx = { ip: lab.ip(201), port: lab.port(lab.ip(201)) };
  const hap = { ip: lab.ip(202), port: lab.port(lab.ip(202)) };
  const ngxProc = await startNginx(ngx.ip, ngx.port);
  const hapProc = await startHaproxy(hap.ip, hap.port);

  const url = (ip: string, port: number) => `rsync://${ip}:${port}/plugins/`;
  const direct = [url(r1.ip, r1.port), url(r2.ip, r2.port)];
  const targets: Target[] = [
    { name: "direct", url: (i) => direct[i % 2], pids: () => Promise.resolve([]) },
    {
      name: FANOUT,
      url: () => url(px.ip, px.port),
      pids: () => Promise.resolve([fanout.pid]),
      host: px.ip,
      port: px.port,
    },
    ...others.map(({ engine, at, proc }): Target => ({
      name: `fanout, ${engine} engine`,
      url: () => url(at.ip, at.port),
      pids: () => Promise.resolve([proc.pid]),
      host: at.ip,
      port: at.port,
    })),
    {
      name: "nginx stream",
      url: () => url(ngx.ip, ngx.port),
      pids: () => groupPids(ngxProc.pid),
      host: ngx.ip,
      port: ngx.port,
    },
    {
      name: "HAProxy",
      url: () => url(hap.ip, hap.port),
      pids: () => groupPids(hapProc.pid),
      host: hap.ip,
      port: hap.port,
    },
  ];
  // HAProxy marks servers up only after its first checks.
  for (const t of targets) {
    await waitFor(`${t.name} serving`, async () => {
      await clear("warm");
      return (await pull(t.url(0), "warm")) > 0;
    }, 20_000);
  }

  const single = new Map<string, number[]>();
  const aggregate = new Map<string, number[]>();
  /** CPU seconds each proxy spent on the pulls, and the bytes it carried. */
  const cpu = new Map<string, { s: number; user: number; machine: number; bytes: number }>();
  for (let run = 0; run < RUNS; run++) {
    // Interleaved, so drift on a shared machine hits every target alike, and
    // rotated, so no target always follows the same one.
    const order = targets.map((_, i) => targets[(i + run) % targets.length]);
    for (const t of order) {
      const tags = Array.from({ length: PARALLEL }, (_, i) => `agg${i}`);
      await clear("single", ...tags);
      const pids = await t.pids();
      const c0 = await cpuSeconds(pids);
      const u0 = await cpuSeconds(pids, "user");
      const m0 = await machineBusySeconds();
      const t0 = performance.now();
      await pull(t.url(0), "single");
      push(single, t.name, treeBytes / ((performance.now() - t0) / 1000));
      const t1 = performance.now();
      await Promise.all(tags.map((tag, i) => pull(t.url(i), tag)));
      push(aggregate, t.name, (PARALLEL * treeBytes) / ((performance.now() - t1) / 1000));
      const c = cpu.get(t.name) ?? { s: 0, user: 0, machine: 0, bytes: 0 };
      c.s += (await cpuSeconds(pids)) - c0;
      c.user += (await cpuSeconds(pids, "user")) - u0;
      c.machine += (await machineBusySeconds()) - m0;
      c.bytes += (1 + PARALLEL) * treeBytes;
      cpu.set(t.name, c);
    }
  }

  const rss = new Map<string, { idle: number; loaded: number }>();
  for (const t of targets.slice(1)) rss.set(t.name, await rssWithIdle(t));

  const med = (m: Map<string, number[]>, k: string) => median(m.get(k)!);
  const dAgg = med(aggregate, "direct");
  const dOne = med(single, "direct");
  const mb = (v: number) => (v / 1e6).toFixed(0);
  const cpuText = (name: string) => {
    const c = cpu.get(name);
    if (name === "direct" || !c) return "-";
    const gb = c.bytes / 1e9;
    return `${(c.s / gb).toFixed(2)} s (user ${(c.user / gb).toFixed(2)})`;
  };
  const machineText = (name: string) => {
    const c = cpu.get(name)!;
    return `${(c.machine / (c.bytes / 1e9)).toFixed(2)} s`;
  };
  console.log(
    `\nproxy benchmark${quick ? " (--quick)" : ""}: tree of ${FILES} files, ${
      (treeBytes / 1e6).toFixed(0)
    } MB, 2 rsync daemons on loopback; median of ${RUNS} run(s); ` +
      `RSS with ${IDLE_CONNS} idle connections (each greeted and got the daemon's greeting)\n`,
  );
  console.log(
    `| path | ${PARALLEL} parallel pulls | × direct | 1 pull | × direct | proxy CPU per GB | machine CPU per GB | RSS at rest | RSS, ${IDLE_CONNS} conns |`,
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const t of targets) {
    const a = med(aggregate, t.name);
    const s = med(single, t.name);
    const r = rss.get(t.name);
    console.log(
      `| ${t.name} | ${mb(a)} MB/s | ${(a / dAgg).toFixed(2)} | ${mb(s)} MB/s | ${
        (s / dOne).toFixed(2)
      } | ${cpuText(t.name)} | ${machineText(t.name)} | ${r ? `${r.idle.toFixed(0)} MB` : "-"} | ${
        r ? `${r.loaded.toFixed(0)} MB` : "-"
      } |`,
    );
  }
  // Paired by run (the same minute of the same machine): the spread between
  // runs is larger than the gaps between the proxies.
  console.log("");
  for (const peer of ["nginx stream", "HAProxy"]) {
    for (const [label, m] of [[`${PARALLEL} pulls`, aggregate], ["1 pull", single]] as const) {
      const ratios = m.get(FANOUT)!.map((v, i) => v / m.get(peer)![i]);
      const ahead = ratios.filter((r) => r >= 1).length;
      console.log(
        `fanout (copy) / ${peer}, ${label}: ${ratios.map((r) => r.toFixed(2)).join(", ")}; ` +
          `median ${median(ratios).toFixed(2)}, at or ahead in ${ahead} of ${ratios.length}`,
      );
    }
  }
} finally {
  for (const c of thirdParty) {
    try {
      Deno.kill(-c.pid, "SIGKILL");
    } catch { /* gone */ }
    await c.status;
  }
  await lab.close();
  await Deno.remove(shm, { recursive: true }).catch(() => {});
}

async function makeTree(root: string): Promise<number> {
  // Random, so nothing compresses; one pool sliced at different offsets per file.
  const pool = new Uint8Array(4 << 20);
  for (let o = 0; o < pool.length; o += 65536) crypto.getRandomValues(pool.subarray(o, o + 65536));
  let total = 0;
  for (let i = 0; i < FILES; i++) {
    const dir = `${root}/d${i % 50}/e${i % 7}`;
    if (i < 350) await Deno.mkdir(dir, { recursive: true });
    const size = i % 10 === 0 ? BIG : SMALL + (i % 13) * 100;
    const off = (i * 7919) % (pool.length - size);
    await Deno.writeFile(`${dir}/f${i}.bin`, pool.subarray(off, off + size));
    total += size;
  }
  return total;
}

/** Empties the destinations of the next pulls (outside the timed part). */
async function clear(...tags: string[]): Promise<void> {
  for (const tag of tags) await Deno.remove(`${shm}/${tag}`, { recursive: true }).catch(() => {});
}

/** One rsync pull into a dir on tmpfs (see clear); returns rsync's byte count. */
async function pull(url: string, tag: string): Promise<number> {
  const dest = `${shm}/${tag}`;
  const r = await runRsync(rsyncArgs({ source: url, dest: `${dest}/`, timeout: 120_000 }));
  if (r.code !== 0) throw new Error(`pull ${url} failed: ${r.stderr}`);
  return r.stats?.totalSize ?? 0;
}

async function render(kind: string, ip: string, port: number): Promise<string> {
  const r = await lab.run([
    "render",
    kind,
    "-c",
    lab.fleetFile,
    "--set",
    `proxy.listen=${ip}:${port}`,
  ]);
  if (r.code !== 0) throw new Error(`render ${kind}: ${r.stderr}`);
  await Deno.mkdir(`${lab.dir}/state/proxy`, { recursive: true });
  const file = `${lab.dir}/${kind}.conf`;
  await Deno.writeTextFile(file, r.stdout);
  return file;
}

async function startNginx(ip: string, port: number): Promise<Deno.ChildProcess> {
  const conf = await render("nginx", ip, port);
  const c = new Deno.Command("nginx", {
    args: ["-c", conf, "-e", "stderr", "-g", "daemon off;"],
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  thirdParty.push(c);
  await waitFor("nginx", () => canConnect(ip, port), 10_000);
  return c;
}

async function startHaproxy(ip: string, port: number): Promise<Deno.ChildProcess> {
  const conf = await render("haproxy", ip, port);
  const c = new Deno.Command("haproxy", {
    args: ["-f", conf, "-db"],
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  thirdParty.push(c);
  await waitFor("haproxy", () => canConnect(ip, port), 10_000);
  return c;
}

/** Pids of the process group led by `pid` (nginx master and workers). */
async function groupPids(pid: number): Promise<number[]> {
  const r = await sh("pgrep", ["-g", String(pid)]);
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

/** User + system (or only user) CPU seconds of `pids` so far. */
async function cpuSeconds(pids: number[], only?: "user"): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const text = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    ticks += Number(f[11] ?? 0) + (only ? 0 : Number(f[12] ?? 0));
  }
  return ticks / 100;
}

/** CPU seconds the whole machine was busy (every process and the kernel), from /proc/stat. */
async function machineBusySeconds(): Promise<number> {
  const f = (await Deno.readTextFile("/proc/stat")).split("\n", 1)[0].trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal: all but idle and iowait.
  const t = f.slice(1, 9).map(Number);
  return (t[0] + t[1] + t[2] + t[5] + t[6] + t[7]) / 100;
}

async function rssMb(pids: number[]): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    const text = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
    kb += Number(/VmRSS:\s+(\d+)/.exec(text)?.[1] ?? 0);
  }
  return kb / 1024;
}

/** RSS at rest, then with IDLE_CONNS clients that each greet, read the greeting and wait. */
async function rssWithIdle(t: Target): Promise<{ idle: number; loaded: number }> {
  const idle = await rssMb(await t.pids());
  const conns: Deno.TcpConn[] = [];
  const buf = new Uint8Array(256);
  try {
    for (let i = 0; i < IDLE_CONNS; i += 50) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(50, IDLE_CONNS - i) },
          () => Deno.connect({ hostname: t.host!, port: t.port! }),
        ),
      );
      conns.push(...batch);
      // Greet as an rsync client does (fanout's proxy dials a server only
      // then); the daemon's greeting came through: the connection is proxied.
      const hello = new TextEncoder().encode("@RSYNCD: 30.0\n");
      await Promise.all(batch.map(async (c) => (await c.write(hello), await c.read(buf))));
    }
    await sleep(500);
    return { idle, loaded: await rssMb(await t.pids()) };
  } finally {
    for (const c of conns) c.close();
    await sleep(500);
  }
}

function push(m: Map<string, number[]>, k: string, v: number): void {
  m.set(k, [...(m.get(k) ?? []), v]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
