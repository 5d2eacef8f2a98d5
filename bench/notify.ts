// Version notices: how long after a new marker lands on a server a --watch
// client holds it, when it hears of it by a GET /version long-poll (its poll
// interval a minute) and when it only polls (the 2 s default), directly from
// a replica and through the proxy (the marker then lands on the primary and
// reaches the replica by a push first). Also the notice alone: a long-poll
// of the bench's own, answered when the server announces the marker.
//
//   deno run -A bench/notify.ts            # 30 versions each
//   deno run -A bench/notify.ts --quick    # 8 versions each
import { Lab, landVersion, sleep, waitFor, watchClient } from "../tests/_helpers.ts";
import { readMarker } from "../lib/version/mod.ts";
import { pct } from "./_stats.ts";

const quick = Deno.args.includes("--quick");
const SAMPLES = quick ? 8 : 30;

/** One new file, as a publish leaves it (its log entry, then the marker). */
async function land(dir: string, seq: number): Promise<void> {
  await landVersion(dir, seq, { [`v/${seq}.txt`]: `version ${seq}\n` });
}

/** Resolves with the ms from `t0` until `dir`'s marker says `seq` (looked at every ms). */
async function heldAfter(dir: string, seq: number, t0: number): Promise<number> {
  await waitFor(
    `seq ${seq} in ${dir}`,
    () => Promise.resolve(readMarker(dir)?.seq === seq),
    30_000,
    1,
  );
  return performance.now() - t0;
}

/** The bench's own long-poll: resolves with the ms from `t0` to the answer naming `seq`. */
async function noticeAfter(health: string, after: number, t0: () => number): Promise<number> {
  const res = await fetch(`http://${health}/version?after=${after}&wait=30`);
  await res.json();
  return performance.now() - t0();
}

interface Row {
  name: string;
  lat: number[];
  notice: number[];
}

/** `SAMPLES` versions landed in `landIn`; each timed until `dest` holds it. */
async function measure(
  name: string,
  landIn: string,
  dest: string,
  health: string | null,
  first: number,
): Promise<Row> {
  const lat: number[] = [];
  const notice: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const seq = first + i;
    let t0 = 0;
    const heard = health ? noticeAfter(health, seq - 1, () => t0) : null;
    // At a random point of a 2 s poll interval: a poll then waits 1 s on average.
    await sleep(100 + Math.random() * 2000);
    t0 = performance.now();
    await land(landIn, seq);
    lat.push(await heldAfter(dest, seq, t0));
    if (heard) notice.push(await heard);
  }
  return { name, lat, notice };
}

async function direct(): Promise<Row[]> {
  const lab = await Lab.create({ tmpfs: true });
  try {
    await lab.fleet({ replicas: ["rsync2"], client: { retries: 0 } });
    const r2 = lab.hosts.rsync2;
    await land(r2.path, 1);
    await lab.server("replica", "rsync2");
    const health = `${r2.ip}:${r2.health}`;
    const source = ["--source", `rsync://${r2.ip}:${r2.port}/plugins/`];
    const rows: Row[] = [];
    let seq = 2;
    for (
      const [name, extra] of [
        ["direct: notice (watch_interval 60s)", ["--set", "client.watch_interval=60s"]],
        ["direct: polling (watch_interval 2s)", ["--notify", "off"]],
      ] as const
    ) {
      const { proc, dest } = watchClient(lab, `web${rows.length + 1}`, [...source, ...extra]);
      await heldAfter(dest, seq - 1, performance.now());
      rows.push(await measure(name, r2.path, dest, health, seq));
      seq += SAMPLES;
      await proc.stop();
    }
    return rows;
  } finally {
    await lab.close();
  }
}

async function viaProxy(): Promise<Row> {
  const lab = await Lab.create({ tmpfs: true });
  try {
    await lab.fleet({
      replicas: ["rsync2"],
      proxy: { interval: "2s" },
      client: { retries: 0, watch_interval: "60s" },
    });
    for (const h of [lab.hosts.rsync1, lab.hosts.rsync2]) await land(h.path, 1);
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    await lab.proxy();
    const px = lab.hosts.proxy;
    const { proc, dest } = watchClient(lab, "web1");
    await heldAfter(dest, 1, performance.now());
    const row = await measure(
      "proxy: notice (land on the primary, push, proxy)",
      lab.hosts.rsync1.path,
      dest,
      `${px.ip}:${px.health}`,
      2,
    );
    await proc.stop();
    return row;
  } finally {
    await lab.close();
  }
}

function fmt(xs: number[]): string {
  if (!xs.length) return "–";
  return `${pct(xs, 50).toFixed(1)} / ${pct(xs, 90).toFixed(1)} / ${Math.max(...xs).toFixed(1)}`;
}

const rows = [...(await direct()), await viaProxy()];
console.log(`\n${SAMPLES} versions each; ms p50 / p90 / max\n`);
console.log(
  "| watching client | marker landed → client holds it | marker landed → /version answers |",
);
console.log("| --- | ---: | ---: |");
for (const r of rows) console.log(`| ${r.name} | ${fmt(r.lat)} | ${fmt(r.notice)} |`);
