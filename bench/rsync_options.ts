// What fanout's own rsync options cost a one-file push: the same file sent
// to both replicas at once (bench/_floor.ts: --files-from, TCP_NODELAY), by
// plain rsync and with the options the primary's scoped push adds (lib/push,
// rsyncArgs), and with each of the costly-looking ones taken out,
// interleaved, on one lab.
//
// Usage: deno run -A bench/rsync_options.ts [--runs N]
import { parseArgs } from "node:util";
import { Lab } from "../tests/_helpers.ts";
import { floorPush } from "./_floor.ts";
import { spread } from "./_stats.ts";

const RUNS = Number(
  parseArgs({ args: Deno.args, options: { runs: { type: "string" } } }).values
    .runs ?? 30,
);

/** The options of a scoped push of a list (lib/push/transfer.ts, lib/rsync/rsync.ts), less the list. */
const FANOUT = [
  "--no-D",
  "--stats",
  "--timeout=30",
  "--contimeout=3",
  "--delay-updates",
  "--max-delete=1000",
  "--itemize-changes",
  "--out-format=%i %n",
  "--sparse",
  "--modify-window=-1",
  "--temp-dir=.fanout-tmp",
  "--exclude=/.fanout-version",
  "--exclude=/.fanout-changes",
  "--exclude=/.fanout-manifest",
  "--exclude=/.fanout-envelope",
  "--exclude=.~tmp~/",
  "--exclude=/.fanout-tmp/",
  "--exclude=.git",
];
const WAYS: Record<string, string[]> = {
  "plain (the floor)": [],
  "fanout's options": FANOUT,
  "without --delay-updates": FANOUT.filter((o) => o !== "--delay-updates"),
  "without --temp-dir": FANOUT.filter((o) => !o.startsWith("--temp-dir")),
  "without --stats, --itemize-changes": FANOUT.filter((o) =>
    !["--stats", "--itemize-changes", "--out-format=%i %n"].includes(o)
  ),
};

const lab = await Lab.create({ tmpfs: true });
try {
  await lab.fleet();
  const src = lab.hosts.rsync1.path;
  await Deno.mkdir(`${src}/d1/e1`, { recursive: true });
  await Deno.writeTextFile(`${src}/d1/e1/f.txt`, "0\n");
  for (const r of ["rsync2", "rsync3"]) await lab.server("replica", r);
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(WAYS).map((w) => [w, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const [name, extra] of Object.entries(WAYS)) {
      await Deno.writeTextFile(`${src}/d1/e1/f.txt`, `${name} ${i}\n`);
      times[name].push(await floorPush(lab, src, ["d1/e1/f.txt"], ["rsync2", "rsync3"], extra));
    }
  }
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `\none file to both replicas at once, ${RUNS} runs each, interleaved; load ${load}\n`,
  );
  console.log("| rsync | ms p50 / p90 / max |");
  console.log("| --- | ---: |");
  for (const [name, xs] of Object.entries(times)) console.log(`| ${name} | ${spread(xs)} |`);
} finally {
  await lab.close();
}
