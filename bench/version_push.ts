// A new version reaching two replicas: from the moment its marker lands on
// the primary (as a publish leaves it: the changed file, the version log,
// then the marker) until both replicas hold that marker. In one run, on one
// tree, alternating:
//
//   by version   the log entry lists the change path by path: the primary
//                pushes those paths and the marker (lib/push, planPush)
//   whole        the entry is marked whole (as a publish that cannot list
//                its change writes it): a whole-tree push per replica
//   floor        plain rsync of the changed file, the log and the marker to
//                both replicas at once (primary stopped), the same paths
//
// Usage: deno run -A bench/version_push.ts [--quick] [--files N] [--runs N]
import { parseArgs } from "node:util";
import { Lab, sh, sleep, waitFor } from "../tests/_helpers.ts";
import { floorPush } from "./_floor.ts";
import { pct } from "./_stats.ts";
import {
  appendEntry,
  formatMarker,
  newEntry,
  stampMarker,
  type VersionMarker,
} from "../lib/version/mod.ts";

const args = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean" }, files: { type: "string" }, runs: { type: "string" } },
}).values;
const quick = args.quick ?? false;
const FILES = Number(args.files ?? (quick ? 5_000 : 100_000));
const RUNS = Number(args.runs ?? (quick ? 4 : 8));
const PER_DIR = 100;

function markerOf(seq: number): VersionMarker {
  return {
    seq,
    commit: seq.toString(16).padStart(40, "0"),
    ref: "main",
    published_at: new Date().toISOString(),
  };
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
}

/** What a publish leaves on the primary: one changed file, the log's entry, the marker last. */
async function publishOne(
  src: string,
  prev: VersionMarker,
  seq: number,
  whole: boolean,
): Promise<{ marker: VersionMarker; path: string }> {
  const n = (seq * 7919) % FILES;
  const path = `d${Math.floor(n / PER_DIR)}/f${n}.txt`;
  await Deno.writeTextFile(`${src}/${path}`, `file ${n}, version ${seq}\n`);
  const marker = markerOf(seq);
  const log = await Deno.readTextFile(`${src}/.fanout-changes`).catch(() => "");
  await writeAtomic(
    `${src}/.fanout-changes`,
    appendEntry(log, newEntry(prev, marker, { paths: [path], deleted: [], whole })),
  );
  await writeAtomic(`${src}/.fanout-version`, formatMarker(marker));
  stampMarker(`${src}/.fanout-version`);
  return { marker, path };
}

/** Waits until every replica's marker names `seq`; ms since `t0`. */
async function landed(lab: Lab, seq: number, t0: number): Promise<number> {
  const needle = `"seq":${seq},`;
  await waitFor(
    `seq ${seq} on both replicas`,
    async () => {
      for (const r of ["rsync2", "rsync3"]) {
        const text = await Deno.readTextFile(`${lab.hosts[r].path}/.fanout-version`).catch(() =>
          ""
        );
        if (!text.replaceAll(" ", "").includes(needle)) return false;
      }
      return true;
    },
    120_000,
    2,
  );
  return performance.now() - t0;
}

const lab = await Lab.create();
try {
  await lab.fleet({ push: { reconcile: "1h" } });
  const p = lab.hosts.rsync1;
  const src = p.path;
  console.error(`bench: a tree of ${FILES} files`);
  for (let d = 0; d * PER_DIR < FILES; d++) {
    await Deno.mkdir(`${src}/d${d}`, { recursive: true });
    for (let i = d * PER_DIR; i < Math.min(FILES, (d + 1) * PER_DIR); i++) {
      Deno.writeTextFileSync(`${src}/d${d}/f${i}.txt`, `file ${i}\n`);
    }
  }
  let prev = markerOf(1);
  await Deno.writeTextFile(`${src}/.fanout-changes`, "");
  await writeAtomic(`${src}/.fanout-version`, formatMarker(prev));
  stampMarker(`${src}/.fanout-version`);
  for (const r of ["rsync2", "rsync3"]) {
    const res = await sh("rsync", ["-a", "--delete", `${src}/`, `${lab.hosts[r].path}/`]);
    if (res.code !== 0) throw new Error(res.stderr);
  }
  await lab.server("replica", "rsync2");
  await lab.server("replica", "rsync3");
  // FANOUT_BENCH_LOG=FILE: the primary's debug log, to see where time goes.
  const logTo = Deno.env.get("FANOUT_BENCH_LOG");
  const primary = await lab.server("primary", "rsync1", logTo ? ["--log-level", "debug"] : []);
  await waitFor("the first pushes", async () => {
    const s = await (await fetch(`http://${p.ip}:${p.health}/status`)).json();
    return s.replicas.every((r: { version: unknown }) => r.version) || null;
  }, 300_000);

  const times: Record<string, number[]> = { "by version": [], whole: [], floor: [] };
  let seq = 1;
  for (let i = 0; i < 2 * RUNS; i++) {
    const whole = i % 2 === 1;
    seq++;
    const t0 = performance.now();
    const { marker } = await publishOne(src, prev, seq, whole);
    times[whole ? "whole" : "by version"].push(await landed(lab, seq, t0));
    prev = marker;
    await sleep(200);
  }
  await primary.stop();
  if (logTo) await Deno.writeTextFile(logTo, primary.stderr);

  for (let i = 0; i < RUNS; i++) {
    seq++;
    const { marker, path } = await publishOne(src, prev, seq, false);
    times.floor.push(await floorPush(lab, src, [path, ".fanout-changes", ".fanout-version"]));
    prev = marker;
  }

  const floor50 = pct(times.floor, 50);
  console.log(
    `\n${FILES} files, ${RUNS} versions each; marker written on the primary → both replicas hold it\n`,
  );
  console.log("| push | p50 | max | p50 / floor |");
  console.log("|---|---|---|---|");
  for (const [name, xs] of Object.entries(times)) {
    console.log(
      `| ${name} | ${pct(xs, 50).toFixed(0)} ms | ${Math.max(...xs).toFixed(0)} ms | ${
        (pct(xs, 50) / floor50).toFixed(2)
      }× |`,
    );
  }
} finally {
  await lab.close();
}
