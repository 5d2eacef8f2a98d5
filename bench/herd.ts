// Benchmark: a herd of clients against three replicas behind fanout's proxy.
//
// The cron-at-:00 case: N clients (`fanout --role client`, each its own host
// name and dest, as cron runs them) started in the same second with
// --no-splay, then the same fleet with the per-host splay. Each mode runs
// three scenarios: a cold start (every client fetches the whole tree), a new
// version (a few files changed), a no-op run (nothing changed: the steady
// state of a cron client, which compares the whole tree every run), a no-op
// run on the fast path (`--verify-every 1h`: the version marker alone), and a
// new version on the fast path (the version log's paths alone).
//
// Measured per scenario: time until every client is done, client run times,
// failures (every client must end identical to the primary), retries the
// clients made, connections the proxy refused (its /metrics), "max
// connections" refusals in the daemons' logs, the proxy's peak of active
// connections, and CPU seconds of the three replicas' rsync daemons (their
// forked children included, from /proc/<pid>/stat) and of the proxy. The
// daemons' CPU is also given less what they spend at rest (the proxy's
// health checks), sampled for 3 s before each scenario and scaled to its
// wall time.
//
//   deno run -A bench/herd.ts [--clients 200] [--files 5000] [--quick] [--signed]
//
// --signed: an unsigned fleet and a signed one (`release.signing_key_file`
// on the publisher, `release.public_keys` on every client: in place, default
// settings) side by side, each its own lab with the same clients and tree,
// with the splay; each scenario (cold start, no-op, new version, no-op on the
// fast path) runs on one fleet, then the other, so load from elsewhere hits
// both alike.
//
// --quick: 50 clients and 1,000 files. The splay keeps the production arrival
// rate: the default 30 s for 200 clients, scaled with the client count (50
// clients: 7.5 s), so each replica sees the same connections per second.
//
// Everything runs on one machine: the clients' own start-up (a Deno process
// each) competes with the servers for the same cores, so wall times are an
// upper bound; the servers' CPU seconds are what a real replica would spend.
import { parseArgs } from "node:util";
import { cpuSeconds, diffTrees, http, Lab, type Proc, sleep } from "../tests/_helpers.ts";
import { DEST_MARKER, LOG, smallTree, Topology } from "../tests/_fleet.ts";
import { generateKeyPair, writePrivateKey } from "../lib/release/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    clients: { type: "string" },
    files: { type: "string" },
    signed: { type: "boolean" },
  },
});
const quick = args.values.quick ?? false;
const SIGNED = args.values.signed ?? false;
const CLIENTS = Number(args.values.clients ?? (quick ? 50 : 200));
const FILES = Number(args.values.files ?? (quick ? 1000 : 5000));
/** The default splay (30 s for a fleet of 200), scaled to keep the arrival rate. */
const SPLAY_MS = Math.round(30_000 * CLIENTS / 200);

interface Row {
  mode: string;
  scenario: string;
  wallS: number;
  p50: number;
  p95: number;
  max: number;
  failed: number;
  diverged: number;
  retries: number;
  proxyRefused: number;
  daemonRefused: number;
  peakProxy: number;
  daemonCpu: number;
  /** The daemons' CPU seconds at rest (health checks) over the same wall time. */
  daemonIdle: number;
  proxyCpu: number;
}

/** How long the daemons' CPU at rest is sampled before each scenario. */
const IDLE_MS = 3_000;

/** Every host's tree in memory (~10 KB a file with its pages). */
function newLab(): Promise<Lab> {
  return Lab.create({ tmpfs: `${Math.ceil(2 + ((CLIENTS + 5) * FILES * 10e3) / 1e9)}g` });
}

const NAMES = Array.from({ length: CLIENTS }, (_, i) => `c${String(i + 1).padStart(3, "0")}`);

/**
 * Starts a fleet in `lab` and publishes its first version (everything but
 * the clients converged). `signed`: the publisher signs every version and
 * the clients take only signed ones.
 */
async function startFleet(lab: Lab, signed: boolean): Promise<Topology> {
  let release = "";
  if (signed) {
    const pair = await generateKeyPair();
    await writePrivateKey(`${lab.dir}/release.key`, pair.privatePem);
    release = `release:\n  signing_key_file: ${lab.dir}/release.key\n` +
      `  public_keys: [${pair.publicKey.text}]`;
  }
  const t = await Topology.start(lab, {
    clients: NAMES,
    replicas: ["rsync2", "rsync3", "rsync4"],
    // Clients reach the three replicas only, as in the hand-made setup.
    proxy: { backends: "[rsync2, rsync3, rsync4]", interval: "1s", check_timeout: "1s" },
    // Production-like client settings: a 10 s connect timeout, 3 retries.
    client: { connect_timeout: "10s", retries: 3 },
    extra: release,
  });
  const files = tree(FILES, "v1");
  const v1 = await t.publish(files);
  await t.converged(v1, { clients: [] });
  const bytes = Object.values(files).reduce((n, s) => n + s.length, 0);
  console.error(`tree: ${FILES} files, ${(bytes / 1e6).toFixed(1)} MB`);
  return t;
}

/** Publishes version `version` (10 files changed) and waits for every server. */
async function newVersion(t: Topology, version: number): Promise<void> {
  const change: Record<string, string> = {};
  for (let i = 0; i < 10; i++) {
    change[`src/m${i % 4}/f${i * 7}.php`] = `<?php // v${version} ${i}\n`;
  }
  const c = await t.publish(change);
  await t.converged(c, { clients: [] });
}

async function main(): Promise<void> {
  console.error(
    `herd: ${CLIENTS} clients, ${FILES}-file tree, splay ${SPLAY_MS} ms; starting the fleet…`,
  );
  if (SIGNED) return await signedAgainstUnsigned();
  const lab = await newLab();
  const rows: Row[] = [];
  const names = NAMES;
  try {
    const t = await startFleet(lab, false);

    let version = 1;
    for (const [mode, splay] of [["same second", false], ["splay", true]] as const) {
      // Fresh dests for each mode's cold start.
      for (const n of names) await Deno.remove(t.dest(n), { recursive: true }).catch(() => {});
      for (const n of names) {
        await Deno.remove(t.clientState(n), { recursive: true }).catch(() => {});
      }
      const scenarios = [
        "cold start",
        "new version",
        "no-op",
        "no-op, fast path",
        "new version, fast path",
      ] as const;
      for (const scenario of scenarios) {
        if (scenario.startsWith("new version")) await newVersion(t, ++version);
        console.error(`${mode}: ${scenario}…`);
        // The fast path (client.verify_every): a run that finds the version
        // unchanged fetches the marker alone, no tree walk; one that finds a
        // new version fetches the paths the version log names, no tree walk.
        const extra = scenario.endsWith("fast path") ? ["--verify-every", "1h"] : [];
        rows.push(await herd(t, names, mode, scenario, splay, extra));
      }
    }
    await t.shutdown();
  } finally {
    await lab.close();
  }
  print(rows);
}

/**
 * `--signed`: an unsigned and a signed fleet, each in its own lab, every
 * scenario on one then the other (with the splay).
 */
async function signedAgainstUnsigned(): Promise<void> {
  const rows: Row[] = [];
  const fleets: { label: string; lab: Lab; t?: Topology }[] = [
    { label: "unsigned", lab: await newLab() },
    { label: "signed", lab: await newLab() },
  ];
  try {
    for (const f of fleets) f.t = await startFleet(f.lab, f.label === "signed");
    let version = 1;
    const scenarios = ["cold start", "no-op", "new version", "no-op, fast path"] as const;
    for (const scenario of scenarios) {
      if (scenario === "new version") version++;
      for (const f of fleets) {
        const t = f.t!;
        if (scenario === "new version") await newVersion(t, version);
        console.error(`${f.label}: ${scenario}…`);
        const extra = scenario.endsWith("fast path") ? ["--verify-every", "1h"] : [];
        rows.push(await herd(t, NAMES, `${f.label}, splay`, scenario, true, extra));
      }
    }
    for (const f of fleets) await f.t?.shutdown();
  } finally {
    for (const f of fleets) await f.lab.close();
  }
  print(rows);
}

/** Files of a plugin tree: PHP sources and a few larger assets. */
function tree(n: number, tag: string): Record<string, string> {
  const out = smallTree(n, tag);
  for (const p of Object.keys(out)) out[p] = out[p].repeat(1 + (p.length % 40) * 20);
  for (let i = 0; i < Math.max(1, n / 200); i++) {
    out[`assets/img${i}.bin`] = "\x89PNG".repeat(25_000);
  }
  return out;
}

async function herd(
  t: Topology,
  names: string[],
  mode: string,
  scenario: string,
  splay: boolean,
  extra: string[],
): Promise<Row> {
  const lab = t.lab;
  const replicas = ["rsync2", "rsync3", "rsync4"];
  const daemonPids = await Promise.all(
    replicas.map(async (r) => Number(await Deno.readTextFile(`${lab.dir}/state/${r}/rsyncd.pid`))),
  );
  const proxyPid = t.procs.get("proxy")!.pid;
  // What the daemons spend with no client (the proxy's health checks), per second.
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const idle0 = sum(daemonPids.map(cpuSeconds));
  await sleep(IDLE_MS);
  const idlePerS = (sum(daemonPids.map(cpuSeconds)) - idle0) / (IDLE_MS / 1000);
  const cpu0 = { daemons: daemonPids.map(cpuSeconds), proxy: cpuSeconds(proxyPid) };
  const refused0 = await proxyRefused(t);
  const logged0 = await Promise.all(replicas.map((r) => maxConnLines(lab, r)));

  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        peak = Math.max(peak, (await t.proxyStatus()).connections.active);
      } catch { /* busy */ }
      await sleep(100);
    }
  })();

  const t0 = performance.now();
  const procs: Proc[] = [];
  for (const n of names) {
    procs.push(
      await t.spawnClient(n, [
        "--log-level",
        "debug",
        ...(splay ? ["--splay", `${SPLAY_MS}ms`] : []),
        ...extra,
      ], {
        splay,
      }),
    );
  }
  const ends = await Promise.all(procs.map(async (p) => {
    const st = await p.status();
    return { code: st.code, ms: performance.now() - t0, stderr: p.stderr };
  }));
  const wall = performance.now() - t0;
  sampling = false;
  await sampler;

  const cpu1 = { daemons: daemonPids.map(cpuSeconds), proxy: cpuSeconds(proxyPid) };
  const refused1 = await proxyRefused(t);
  const logged1 = await Promise.all(replicas.map((r) => maxConnLines(lab, r)));
  // Run times from each client's status file (splay excluded).
  const durations: number[] = [];
  for (const n of names) {
    try {
      const st = JSON.parse(await Deno.readTextFile(`${t.clientState(n)}/client-status.json`));
      durations.push(st.duration_ms);
    } catch { /* a client that never wrote one failed */ }
  }
  durations.sort((a, b) => a - b);
  const failed = ends.filter((e) => e.code !== 0);
  for (const f of failed.slice(0, 3)) {
    console.error(`  failed (exit ${f.code}): ${lastLine(f.stderr)}`);
  }
  let diverged = 0;
  const src = lab.hosts.rsync1.path;
  for (let i = 0; i < names.length; i += 8) {
    const diffs = await Promise.all(
      // A signed client keeps no version log (it is not signed).
      names.slice(i, i + 8).map((n) => diffTrees(src, t.dest(n), [DEST_MARKER, LOG])),
    );
    diverged += diffs.filter((d) => d !== "").length;
  }
  const q = (p: number) =>
    durations[Math.min(durations.length - 1, Math.floor(p * durations.length))] ?? NaN;
  return {
    mode,
    scenario,
    wallS: wall / 1000,
    p50: q(0.5),
    p95: q(0.95),
    max: durations.at(-1) ?? NaN,
    failed: failed.length,
    diverged,
    retries: ends.reduce(
      (n, e) => n + (e.stderr.match(/connection failed; retrying/g)?.length ?? 0),
      0,
    ),
    proxyRefused: refused1 - refused0,
    daemonRefused: logged1.reduce((a, b) => a + b, 0) - logged0.reduce((a, b) => a + b, 0),
    peakProxy: peak,
    daemonCpu: cpu1.daemons.reduce((a, b) => a + b, 0) - cpu0.daemons.reduce((a, b) => a + b, 0),
    daemonIdle: idlePerS * wall / 1000,
    proxyCpu: cpu1.proxy - cpu0.proxy,
  };
}

async function proxyRefused(t: Topology): Promise<number> {
  const m = (await http(t.healthUrl("proxy", "/metrics"))).body;
  let n = 0;
  for (const line of m.split("\n")) {
    if (line.startsWith("fanout_proxy_refused_total")) n += Number(line.split(" ").at(-1));
  }
  return n;
}

async function maxConnLines(lab: Lab, name: string): Promise<number> {
  const log = await Deno.readTextFile(`${lab.dir}/state/${name}/rsyncd.log`).catch(() => "");
  return log.match(/max connections \(\d+\) reached/g)?.length ?? 0;
}

function lastLine(s: string): string {
  return s.trim().split("\n").filter((l) => !l.includes("level=debug")).at(-1) ?? "";
}

function print(rows: Row[]): void {
  const f1 = (n: number) => Number.isFinite(n) ? n.toFixed(1) : "-";
  const f2 = (n: number) => Number.isFinite(n) ? n.toFixed(2) : "-";
  const ms = (n: number) => Number.isFinite(n) ? `${Math.round(n)} ms` : "-";
  console.log(
    `\n${CLIENTS} clients through fanout's proxy to 3 replicas, ${FILES}-file tree` +
      ` (splay mode: ${(SPLAY_MS / 1000).toFixed(1)} s window)\n`,
  );
  console.log(
    "| start | scenario | all done | run p50 | run p95 | run max | failed | diverged | retries | proxy refused | daemon refused | peak proxy conns | daemons CPU | per run | per run, less idle | proxy CPU | per run |",
  );
  console.log("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  for (const r of rows) {
    const per = (s: number) => `${f1((s / CLIENTS) * 1000)} ms`;
    console.log(
      `| ${r.mode} | ${r.scenario} | ${f1(r.wallS)} s | ${ms(r.p50)} | ${ms(r.p95)} | ${
        ms(r.max)
      } | ${r.failed} | ${r.diverged} | ${r.retries} | ${r.proxyRefused} | ${r.daemonRefused} | ${r.peakProxy} | ${
        f2(r.daemonCpu)
      } s | ${per(r.daemonCpu)} | ${per(r.daemonCpu - r.daemonIdle)} | ${f2(r.proxyCpu)} s | ${
        per(r.proxyCpu)
      } |`,
    );
  }
}

if (import.meta.main) await main();
