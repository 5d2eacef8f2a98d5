// Benchmark: the self-contained dist/fanout (build/launcher.sh: sh, Deno and the
// bundle in one file) against the bundle run directly by the same Deno, both
// with no deno on PATH (`env -i PATH=/usr/bin:/bin`) and a warm code cache:
//
// - its size, and the first run's unpacking (a fresh cache dir, `--version`,
//   less a warm `--version`);
// - start-up: `--version`, and a cron no-op (`--role client --verify-every 1h`
//   against a replica, nothing to do), interleaved, medians and the median of
//   the paired differences.
//
//   deno run -A bench/onefile.ts [--file dist/fanout] [--runs 30]
//
// Without --file it builds one (`compile.sh --self-contained`) into a temp dir.
import { parseArgs } from "node:util";
import { Lab, sh, writeTree } from "../tests/_helpers.ts";

const args = parseArgs({
  args: Deno.args,
  options: { file: { type: "string" }, runs: { type: "string", default: "30" } },
});
const RUNS = Number(args.values.runs);
const ROOT = new URL("..", import.meta.url).pathname;

/** CPU milliseconds (user + system) of this process's waited-for children. */
function childCpu(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").replace(/^.*\) /, "").split(" ");
  return (Number(f[13]) + Number(f[14])) * 10; // cutime, cstime in 1/100 s
}

const cpu: Record<string, number[]> = {};

/**
 * Runs `env -i PATH=/usr/bin:/bin VARS… cmd…`; returns wall milliseconds and
 * adds its CPU milliseconds to `cpu[tag]`.
 */
async function timed(cmd: string[], vars: Record<string, string>, tag = ""): Promise<number> {
  const c0 = childCpu();
  const t0 = performance.now();
  const out = await new Deno.Command("env", {
    args: [
      "-i",
      "PATH=/usr/bin:/bin",
      ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
      ...cmd,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  (cpu[tag] ??= []).push(childCpu() - c0);
  if (out.code !== 0) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

async function main(): Promise<void> {
  const lab = await Lab.create();
  try {
    let file = args.values.file;
    if (!file) {
      console.error("building dist/fanout (compile.sh --self-contained)…");
      const built = await sh("bash", [`${ROOT}compile.sh`, "--self-contained"], {
        env: { OUT_DIR: `${lab.dir}/dist` },
      });
      if (built.code !== 0) throw new Error(built.stderr);
      file = `${lab.dir}/dist/fanout`;
    }
    const size = (await Deno.stat(file)).size;
    const cache = `${lab.dir}/cache`;

    // First runs: a fresh cache dir each, against a warm --version.
    const version = [file, "--version"];
    const first: number[] = [];
    for (let i = 0; i < 3; i++) {
      first.push(await timed(version, { FANOUT_CACHE: `${lab.dir}/fresh${i}` }));
      await Deno.remove(`${lab.dir}/fresh${i}`, { recursive: true });
    }
    await timed(version, { FANOUT_CACHE: cache });
    const [dir] = [...Deno.readDirSync(cache)].map((e) => e.name);
    const unpacked = `${cache}/${dir}`;
    const unpackedSize = (await Deno.stat(`${unpacked}/deno`)).size +
      (await Deno.stat(`${unpacked}/fanout.js`)).size;

    // The bundle run directly: the same Deno, flags and bundle, its own warm code cache.
    const header = new TextDecoder().decode((await Deno.readFile(file)).subarray(0, 16384));
    const flags = /exec "\$dir\/deno" run (.*) "\$dir\/fanout\.js"/.exec(header)![1]
      .split(" ").map((f) => f.replace(/^'|'$/g, ""));
    const direct = [`${unpacked}/deno`, "run", ...flags, `${unpacked}/fanout.js`];
    const directEnv = { DENO_DIR: `${lab.dir}/deno-dir`, DENO_NO_UPDATE_CHECK: "1" };

    await lab.fleet({ replicas: ["rsync2"] });
    const r2 = lab.hosts.rsync2;
    const files: Record<string, string> = {};
    for (let i = 0; i < 200; i++) files[`d${i % 10}/f${i}.txt`] = `file ${i}\n`;
    files[".fanout-version"] = JSON.stringify({
      seq: 1,
      commit: "c0ffee1",
      ref: "main",
      published_at: "2026-11-25T00:00:01Z",
    }) + "\n";
    await writeTree(r2.path, files);
    await lab.server("replica", "rsync2");
    const client = (name: string) => [
      "--role",
      "client",
      "-c",
      lab.fleetFile,
      "--name",
      name,
      "--no-splay",
      "--verify-every",
      "1h",
      "--source",
      `rsync://${r2.ip}:${r2.port}/plugins/`,
      "--dest",
      `${lab.dir}/clients/${name}`,
    ];
    const xdg = { XDG_CACHE_HOME: `${lab.dir}/xdg` };
    const cases = {
      "--version": {
        onefile: () => timed(version, { FANOUT_CACHE: cache }, "v1"),
        bundle: () => timed([...direct, "--version"], directEnv, "v2"),
      },
      // The launcher alone: its header exec'ing /bin/true instead of Deno (the
      // process after exec is the same in both), against /bin/true itself.
      "the launcher alone (header exec'ing /bin/true)": {
        onefile: () => timed([`${lab.dir}/header`, "--version"], { FANOUT_CACHE: cache }, "h1"),
        bundle: () => timed(["/bin/true", "--version"], {}, "h2"),
      },
      "cron no-op (client, nothing to do)": {
        onefile: () => timed([file, ...client("one")], { FANOUT_CACHE: cache, ...xdg }, "c1"),
        bundle: () => timed([...direct, ...client("bun")], { ...directEnv, ...xdg }, "c2"),
      },
    };
    await Deno.writeTextFile(
      `${lab.dir}/header`,
      header.slice(0, header.indexOf("\nexit 70\n") + 9).replace(
        'exec "$dir/deno" run',
        'exec /bin/true "$dir/deno" run',
      ),
      { mode: 0o755 },
    );
    const rows: string[] = [];
    const warm: Record<string, number> = {};
    for (const [name, c] of Object.entries(cases)) {
      for (let i = 0; i < 3; i++) await c.onefile(), await c.bundle(); // warm-up, first sync
      const one: number[] = [], bun: number[] = [], diff: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        let x: number, y: number;
        if (i % 2) x = await c.onefile(), y = await c.bundle();
        else y = await c.bundle(), x = await c.onefile();
        one.push(x), bun.push(y), diff.push(x - y);
      }
      warm[name] = median(one);
      const [t1, t2] = Object.keys(cpu).slice(-2);
      const mean = (xs: number[]) => xs.slice(-RUNS).reduce((a, b) => a + b, 0) / RUNS;
      const sign = (ms: number) => (ms >= 0 ? "+" : "") + fmt(ms);
      rows.push(
        `| ${name} | ${fmt(median(bun))} | ${fmt(median(one))} | ${sign(median(diff))} | ${
          fmt(mean(cpu[t2]))
        } | ${fmt(mean(cpu[t1]))} | ${sign(mean(cpu[t1]) - mean(cpu[t2]))} |`,
      );
    }
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`;
    console.log(
      `dist/fanout: ${size} bytes (${mb(size)}); unpacked ${mb(unpackedSize)}; ` +
        `first run (unpack + --version): ${first.map(fmt).join(", ")}; ` +
        `unpacking alone ~${fmt(median(first) - warm["--version"])}\n`,
    );
    console.log(
      `| ${RUNS} runs each, interleaved | bundle, deno run | dist/fanout | median paired difference | CPU, bundle (mean) | CPU, dist/fanout | CPU difference |`,
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const r of rows) console.log(r);
    console.log(
      `\n(load average at the end: ${Deno.loadavg().map((l) => l.toFixed(1)).join(" ")})`,
    );
  } finally {
    await lab.close();
  }
}

await main();
