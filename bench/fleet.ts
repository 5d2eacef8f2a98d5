// The fleet view's costs, against a real primary on loopback. No other tool
// answers "which host has which version", so each figure is set against the
// floor of the same kind of work measured in the same run:
//
//   report        one signed sendReport() as a client makes it after a run
//                 (token read, HMAC, POST, verify, SQLite write), against a
//                 bare `GET /healthz` round trip
//   burst         every client reporting at the same moment (cron at :00
//                 without splay): time until the primary has stored them all
//   fleet.json    the whole view with that many clients, against /status
//   /fleet        the HTML page (with its chart), against /status
//   fanout fleet  the command (process start included), against `fanout --version`
//
// Usage: deno run -A bench/fleet.ts [--quick]
import { type Fleet, loadFleet } from "../lib/config/mod.ts";
import { type ClientReport, sendReport } from "../lib/report/mod.ts";
import { asReportingHost, Lab } from "../tests/_helpers.ts";

const quick = Deno.args.includes("--quick");
const CLIENTS = quick ? 300 : 2000;
const SAMPLES = quick ? 100 : 400;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))];
}

async function sample(n: number, fn: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

const ms = (x: number) => x < 10 ? x.toFixed(2) : x.toFixed(1);

const lab = await Lab.create();
try {
  await lab.fleet({
    replicas: [],
    extra: "fleet:\n  report_rate: 10000\n  report_rate_total: 1000000",
  });
  await lab.server("primary", "rsync1");
  const fleet = await loadFleet(lab.fleetFile);
  const h = lab.hosts.rsync1;
  const base = `http://${h.ip}:${h.health}`;
  const version = {
    seq: 1,
    commit: "0123456789abcdef0123456789abcdef01234567",
    ref: "main",
    published_at: new Date().toISOString(),
  };
  await Deno.writeTextFile(`${h.path}/.fanout-version`, JSON.stringify(version) + "\n");
  const report = (host: string): ClientReport => ({
    host,
    version,
    started_at: new Date().toISOString(),
    duration_ms: 42,
    exit_code: 0,
    drift: 0,
    error: null,
    source: "rsync://10.0.0.20:873/plugins/",
  });
  // Each client signs with its own token file, as a real one does.
  const asHost = new Map<string, Fleet>();
  for (const host of [...Array(50).keys()].map((k) => `bench${k}`)) {
    asHost.set(host, await asReportingHost(fleet, host));
  }
  for (let k = 0; k < CLIENTS; k++) asHost.set(`web${k}`, await asReportingHost(fleet, `web${k}`));
  const get = async (path: string) => {
    const r = await fetch(base + path);
    await r.arrayBuffer();
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
  };
  const rows: [string, string, string, string][] = [];

  // One report, from a client's side, against the floor of an HTTP round trip.
  await sample(20, () => get("/healthz"));
  const floor = await sample(SAMPLES, () => get("/healthz"));
  let i = 0;
  const one = await sample(SAMPLES, async () => {
    const host = `bench${i++ % 50}`;
    const out = await sendReport(asHost.get(host)!, report(host));
    if (!out.sent) throw new Error(out.reason!);
  });
  rows.push([
    "one report (sendReport, p50 / p99)",
    `${ms(pct(one, 50))} / ${ms(pct(one, 99))} ms`,
    `GET /healthz ${ms(pct(floor, 50))} / ${ms(pct(floor, 99))} ms`,
    `${(pct(one, 50) / pct(floor, 50)).toFixed(1)}x`,
  ]);

  // Every client at once.
  const t0 = performance.now();
  const outcomes = await Promise.all(
    Array.from(
      { length: CLIENTS },
      (_, k) => sendReport(asHost.get(`web${k}`)!, report(`web${k}`), { timeoutMs: 30_000 }),
    ),
  );
  const burst = performance.now() - t0;
  const failed = outcomes.filter((o) => !o.sent).length;
  rows.push([
    `${CLIENTS} clients reporting at once`,
    `${ms(burst)} ms (${Math.round(CLIENTS / (burst / 1000))} reports/s)`,
    failed ? `${failed} not stored` : "all stored",
    "",
  ]);

  // Reading the view with that many clients.
  const status = await sample(10, () => get("/status"));
  const json = await sample(10, () => get("/fleet.json"));
  const page = await sample(10, () => get("/fleet"));
  rows.push([
    `GET /fleet.json, ${CLIENTS + 50} clients (p50)`,
    `${ms(pct(json, 50))} ms`,
    `GET /status ${ms(pct(status, 50))} ms`,
    `${(pct(json, 50) / pct(status, 50)).toFixed(1)}x`,
  ]);
  rows.push([
    `GET /fleet (HTML), ${CLIENTS + 50} clients (p50)`,
    `${ms(pct(page, 50))} ms`,
    `GET /status ${ms(pct(status, 50))} ms`,
    `${(pct(page, 50) / pct(status, 50)).toFixed(1)}x`,
  ]);

  const cmd = await sample(3, async () => {
    const r = await lab.run(["fleet", "-c", lab.fleetFile]);
    if (r.code !== 0) throw new Error(r.stderr + r.stdout.slice(0, 500));
  });
  const ver = await sample(3, async () => void await lab.run(["--version"]));
  rows.push([
    "`fanout fleet -c` (process included, median)",
    `${ms(pct(cmd, 50))} ms`,
    `\`fanout --version\` ${ms(pct(ver, 50))} ms`,
    `${(pct(cmd, 50) / pct(ver, 50)).toFixed(1)}x`,
  ]);

  let db = 0;
  for (const f of ["fleet.db", "fleet.db-wal"]) {
    db += await Deno.stat(`${lab.dir}/state/rsync1/${f}`).then((s) => s.size).catch(() => 0);
  }
  rows.push([
    "fleet.db on disk",
    `${(db / 1024).toFixed(0)} KiB`,
    `${CLIENTS + 50} clients, ${SAMPLES + CLIENTS} reports`,
    "",
  ]);

  console.log(`\nfleet view (${quick ? "quick" : "full"}: ${CLIENTS} clients)\n`);
  console.log("| measure | fanout | floor, same run | ratio |");
  console.log("| --- | --- | --- | --- |");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
} finally {
  await lab.close();
}
