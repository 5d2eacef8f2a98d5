// Manifest: how long building the manifest of a code-like tree takes
// (walk by lstat, every file hashed, bench/_release_tree.ts), against
// coreutils' sha256sum over the same files in the same run:
//
//   manifest     buildManifest + formatManifest, in a fresh `deno run` each
//                time with fanout's V8 flags (lite mode: no optimizing
//                compiler), on its own clock (Deno's start-up left out), with
//                the process's peak RSS; then parseManifest of the result
//   sha256sum    `xargs -0 -a LIST sha256sum`: the same files, listed before
//   find+sha256  `find . -type f -print0 | xargs -0 sha256sum`: walk and hash
//
// Runs are interleaved, the page cache warm (a first untimed pass reads the
// tree); medians.
//
// Usage: deno run -A bench/manifest.ts [--quick] [--files 20000,100000] [--runs 5] [--dir DIR]
//   --dir keeps the trees in DIR (made when missing), for another run.
import { parseArgs } from "node:util";
import { V8_FLAGS } from "../lib/core/mod.ts";
import { buildManifest, formatManifest, parseManifest } from "../lib/release/mod.ts";
import { makeReleaseTree } from "./_release_tree.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    files: { type: "string" },
    runs: { type: "string" },
    dir: { type: "string" },
    child: { type: "string" },
  },
});

if (args.values.child) {
  // One build, timed from inside: what the publisher and a client pay.
  let t = performance.now();
  const bytes = formatManifest(await buildManifest(args.values.child));
  const ms = performance.now() - t;
  const hwm = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1];
  t = performance.now();
  parseManifest(bytes);
  const parseMs = performance.now() - t;
  console.log(JSON.stringify({ ms, rssKiB: Number(hwm), bytes: bytes.length, parseMs }));
  Deno.exit(0);
}

const SIZES = (args.values.files ?? (args.values.quick ? "5000" : "20000,100000")).split(",")
  .map(Number);
const RUNS = Number(args.values.runs ?? (args.values.quick ? 3 : 5));
const SELF = new URL(import.meta.url).pathname;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function shell(script: string, cwd: string): number {
  const t = performance.now();
  const out = new Deno.Command("sh", { args: ["-c", script], cwd, stdout: "null" }).outputSync();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
  return performance.now() - t;
}

interface Build {
  ms: number;
  rssKiB: number;
  bytes: number;
  parseMs: number;
}

function child(root: string): Build {
  const out = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${V8_FLAGS}`, SELF, "--child", root],
  }).outputSync();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const base = args.values.dir ?? await Deno.makeTempDir({ prefix: "fanout-bench-manifest-" });
try {
  const rows: string[] = [];
  for (const files of SIZES) {
    const root = `${base}/tree${files}`;
    const list = `${base}/tree${files}.list`;
    try {
      Deno.statSync(root);
    } catch {
      makeReleaseTree(root, files);
    }
    shell(`find . -type f -print0 > ${list} && xargs -0 -a ${list} cat > /dev/null`, root);
    const t = { manifest: [] as number[], sum: [] as number[], find: [] as number[] };
    let last: Build = { ms: 0, rssKiB: 0, bytes: 0, parseMs: 0 };
    for (let r = 0; r < RUNS; r++) {
      last = child(root);
      t.manifest.push(last.ms);
      t.sum.push(shell(`xargs -0 -a ${list} sha256sum`, root));
      t.find.push(shell("find . -type f -print0 | xargs -0 sha256sum", root));
    }
    const mb = Number(
      new TextDecoder().decode(
        new Deno.Command("du", { args: ["-sbL", root], stdout: "piped" }).outputSync().stdout,
      ).split("\t")[0],
    ) / 1e6;
    const m = median(t.manifest), s = median(t.sum), f = median(t.find);
    rows.push(
      `| ${files} files, ${mb.toFixed(0)} MB | ${m.toFixed(0)} ms | ${s.toFixed(0)} ms | ${
        f.toFixed(0)
      } ms | ${(m / s).toFixed(2)} | ${(m / f).toFixed(2)} | ${
        (last.rssKiB / 1024).toFixed(0)
      } MiB | ${(last.bytes / 1e6).toFixed(1)} MB, parsed in ${last.parseMs.toFixed(0)} ms |`,
    );
  }
  console.log(`\n### manifest build against sha256sum (median of ${RUNS}, warm cache)\n`);
  console.log(
    "| tree | manifest | sha256sum | find+sha256 | vs sha256sum | vs find+sha256 | peak RSS | manifest |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const r of rows) console.log(r);
  console.log(`\nload average after: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
} finally {
  if (!args.values.dir) await Deno.remove(base, { recursive: true });
}
