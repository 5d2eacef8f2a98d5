// The publisher's kept manifest (lib/release/update.ts): what building a
// tree's manifest costs from nothing, against building it from the kept
// manifest and stat record when one file changed, and where that time goes:
// reading the kept state, the lstat walk (with the one hash), writing the
// state again. Each run is a fresh `deno run` with fanout's V8 flags, timed
// from inside; the tree is bench/_release_tree.ts's, the page cache warm.
//
// Usage: deno run -A bench/manifest_update.ts [--files 20000,100000] [--runs 5] [--dir DIR]
//   --dir keeps the trees in DIR (made when missing), for another run.
import { parseArgs } from "node:util";
import { V8_FLAGS } from "../lib/core/mod.ts";
import { readManifestState, updateManifest, writeManifestState } from "../lib/release/mod.ts";
import { makeReleaseTree } from "./_release_tree.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    files: { type: "string" },
    runs: { type: "string" },
    dir: { type: "string" },
    child: { type: "string" },
    state: { type: "string" },
  },
}).values;

/** One run's times in ms. */
interface Run {
  fresh: number;
  read: number;
  update: number;
  write: number;
  hashed: number;
}

if (args.child) {
  const root = args.child, files = { manifest: `${args.state}.m`, record: `${args.state}.r` };
  let t = performance.now();
  const lap = () => {
    const now = performance.now(), ms = now - t;
    t = now;
    return ms;
  };
  await writeManifestState(files, await updateManifest(root, null));
  const fresh = lap();
  // One file rewritten (another size, so its lstat surely moves), as an export does.
  const one = `${root}/m3/d0/f3.ts`;
  Deno.writeTextFileSync(one, `changed ${Math.random()}\n`);
  lap();
  const before = readManifestState(files);
  const read = lap();
  const next = await updateManifest(root, before);
  const update = lap();
  await writeManifestState(files, next);
  const write = lap();
  const run: Run = { fresh, read, update, write, hashed: next.hashed };
  console.log(JSON.stringify(run));
  Deno.exit(0);
}

const SIZES = (args.files ?? "20000,100000").split(",").map(Number);
const RUNS = Number(args.runs ?? 5);
const SELF = new URL(import.meta.url).pathname;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const base = args.dir ?? await Deno.makeTempDir({ prefix: "fanout-bench-update-" });
try {
  const rows: string[] = [];
  for (const files of SIZES) {
    const root = `${base}/tree${files}`;
    try {
      Deno.statSync(root);
    } catch {
      makeReleaseTree(root, files);
    }
    new Deno.Command("sh", { args: ["-c", `find ${root} -type f -print0 | xargs -0 cat`] })
      .outputSync();
    const runs: Run[] = [];
    for (let r = 0; r < RUNS; r++) {
      const out = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `--v8-flags=${V8_FLAGS}`,
          SELF,
          "--child",
          root,
          "--state",
          `${base}/state${files}`,
        ],
      }).outputSync();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
      runs.push(JSON.parse(new TextDecoder().decode(out.stdout)));
    }
    const m = (k: keyof Run) => median(runs.map((r) => r[k])).toFixed(0);
    const kept = median(runs.map((r) => r.read + r.update + r.write)).toFixed(0);
    rows.push(
      `| ${files} files | ${m("fresh")} ms | ${kept} ms (${m("hashed")} hashed) | ${
        m("read")
      } ms | ${m("update")} ms | ${m("write")} ms |`,
    );
  }
  console.log(`\n### the kept manifest: one file changed (median of ${RUNS}, warm cache)\n`);
  console.log(
    "| tree | from nothing | from the kept one | read state | walk + hash | write state |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(r);
  console.log(`\nload average after: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
} finally {
  if (!args.dir) await Deno.remove(base, { recursive: true });
}
