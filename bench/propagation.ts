// Propagation benchmark: write on the primary -> identical on two
// replicas, for fanout, lsyncd (delay = 0) and the hand-made inotifywait loop,
// on the same tree and the same replica daemons, in one run; and the floor:
// the bench itself sends each write the moment it is written, by plain rsync
// of its paths to both replicas at once (bench/_floor.ts).
//
//   deno run -A bench/propagation.ts            # 100k files in 10k dirs
//   deno run -A bench/propagation.ts --quick    # 10k files in 1k dirs, fewer samples
//   deno run -A bench/propagation.ts --files=50000 --only=fanout,floor
//
// Needs rsync, lsyncd and inotify-tools (apt-get install lsyncd inotify-tools).
import { Lab, sh, sleep, waitFor } from "../tests/_helpers.ts";
import { floorPush } from "./_floor.ts";
import { pct } from "./_stats.ts";

const quick = Deno.args.includes("--quick");
/** `--only=fanout,floor` (among fanout, bundle, floor, lsyncd, loop) runs those contenders. */
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const runs = (name: string) => !only || only.some((o) => name.startsWith(o));
/** `--files=N`: a tree of about N files (in thousands of directories of 10). */
const files = Number(Deno.args.find((a) => a.startsWith("--files="))?.slice(8) ?? 0);
const DIRS_B = 100; // subdirs each
const FILES = 10; // files per subdir
const DIRS_A = files ? Math.max(1, Math.round(files / (DIRS_B * FILES))) : quick ? 10 : 100; // top-level dirs
const SINGLE = quick ? 20 : 50;
const BURST = 500;
const LOOP_SINGLE = quick ? 3 : 5;
const LOOP_CAP_MS = quick ? 10_000 : 30_000;

function rssMB(pid: number, field = "VmRSS"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)`).exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

/** The deno process of a fanout started through `lab.spawn` (deno is the group leader). */
function rssTree(pid: number): number {
  return rssMB(pid);
}

async function makeTree(root: string): Promise<void> {
  const enc = new TextEncoder();
  for (let a = 0; a < DIRS_A; a++) {
    for (let b = 0; b < DIRS_B; b++) {
      const d = `${root}/d${a}/e${b}`;
      await Deno.mkdir(d, { recursive: true });
      for (let f = 0; f < FILES; f++) {
        Deno.writeFileSync(`${d}/f${f}.txt`, enc.encode(`${a}-${b}-${f}\n`));
      }
    }
  }
}

async function sameContent(path: string, want: string): Promise<boolean> {
  try {
    return (await Deno.readTextFile(path)) === want;
  } catch {
    return false;
  }
}

interface Result {
  name: string;
  missed: string;
  p50: number;
  p99: number;
  burst: number;
  /** How long writing the burst's files took (the floor of every tool's burst). */
  writes: number;
  setup: string;
  rss: string;
}

async function measure(
  lab: Lab,
  name: string,
  samples: number,
  cap: number,
  /** Sends the paths just written (the floor); without it, the tool under test does. */
  send?: (paths: string[]) => Promise<unknown>,
): Promise<{ lat: number[]; burst: number; writes: number; missed: number }> {
  const src = lab.hosts.rsync1.path;
  const reps = [lab.hosts.rsync2.path, lab.hosts.rsync3.path];
  const lat: number[] = [];
  for (let i = 0; i < samples; i++) {
    const rel = `d${i % DIRS_A}/e${(i * 7) % DIRS_B}/${name}-${i}.txt`;
    const content = `${name} ${i} ${crypto.randomUUID()}\n`;
    const t0 = performance.now();
    await Deno.writeTextFile(`${src}/${rel}`, content);
    await send?.([rel]);
    try {
      await waitFor(
        `${rel} on replicas`,
        async () => {
          for (const r of reps) if (!(await sameContent(`${r}/${rel}`, content))) return false;
          return true;
        },
        cap,
        1,
      );
      lat.push(performance.now() - t0);
    } catch {
      lat.push(Infinity); // never arrived: a change the tool missed
    }
    await sleep(30);
  }
  // A burst: 500 files in 50 directories, written as fast as possible.
  const tag = `${name}-burst-${Date.now()}`;
  const t0 = performance.now();
  const burstPaths: string[] = [];
  for (let i = 0; i < BURST; i++) {
    const rel = `d${i % DIRS_A}/e${i % 50}/${tag}-${i}.txt`;
    Deno.writeTextFileSync(`${src}/${rel}`, `${i}\n`);
    burstPaths.push(rel);
  }
  // No tool can finish before the files exist: on a slow disk creating them
  // is most of a burst, so the time they took is printed as its floor.
  const writes = performance.now() - t0;
  await send?.(burstPaths);
  let burst = NaN;
  try {
    // Files that arrived stay: each is checked until it is there, once.
    const next = reps.map(() => 0);
    await waitFor(
      "burst on replicas",
      async () => {
        for (const [k, r] of reps.entries()) {
          while (next[k] < BURST) {
            const i = next[k];
            if (
              !(await sameContent(`${r}/d${i % DIRS_A}/e${i % 50}/${tag}-${i}.txt`, `${i}\n`))
            ) return false;
            next[k]++;
          }
        }
        return true;
      },
      cap,
      2,
    );
    burst = performance.now() - t0;
  } catch {
    burst = Infinity;
  }
  return { lat, burst, writes, missed: lat.filter((x) => x === Infinity).length };
}

async function syncReplicas(lab: Lab): Promise<void> {
  const src = lab.hosts.rsync1.path;
  for (const r of ["rsync2", "rsync3"]) {
    const res = await sh("rsync", ["-a", "--delete", `${src}/`, `${lab.hosts[r].path}/`]);
    if (res.code !== 0) throw new Error(res.stderr);
  }
}

async function main() {
  for (const tool of ["rsync", "lsyncd", "inotifywait"]) {
    if ((await sh("sh", ["-c", `command -v ${tool}`])).code !== 0) {
      console.error(
        `bench/propagation: ${tool} is missing (apt-get install rsync lsyncd inotify-tools)`,
      );
      Deno.exit(2);
    }
  }
  const lab = await Lab.create();
  const results: Result[] = [];
  try {
    await lab.fleet({ push: { reconcile: "1h" } });
    const src = lab.hosts.rsync1.path;
    console.error(
      `bench: making a tree of ${DIRS_A * DIRS_B * FILES} files in ${DIRS_A * DIRS_B} directories`,
    );
    await makeTree(src);
    await syncReplicas(lab);
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const r2 = lab.hosts.rsync2, r3 = lab.hosts.rsync3, p = lab.hosts.rsync1;
    const target = (h: typeof r2) => `rsync://fanout@${h.ip}:${h.port}/plugins-push/`;

    // --- fanout, from main.ts and from the bundle (what ships where the binary cannot be built)
    // The bundle too, unless --only names fanout without "bundle".
    const bundles = !only || runs("bundle") ? [false, true] : [false];
    for (const bundle of runs("fanout") ? bundles : []) {
      const name = bundle ? "fanout (bundle)" : "fanout";
      if (bundle) await lab.bundle();
      const t0 = performance.now();
      // FANOUT_BENCH_LOG=FILE: the primary's debug log, to see where time goes.
      const logTo = Deno.env.get("FANOUT_BENCH_LOG");
      const proc = await lab.server(
        "primary",
        "rsync1",
        logTo ? ["--log-level", "debug"] : [],
        { bundle },
      );
      const st = await waitFor("initial sync", async () => {
        const s = await (await fetch(`http://${p.ip}:${p.health}/status`)).json();
        return s.replicas.every((r: { last_success: string | null }) => r.last_success) ? s : null;
      }, 120_000);
      const ready = performance.now() - t0;
      console.error(
        `bench: ${name} ready in ${Math.round(ready)}ms (watch setup ${st.watch.setup_ms}ms)`,
      );
      const m = await measure(lab, bundle ? "fanoutb" : "fanout", SINGLE, 60_000);
      // Now, and the most it held (the first full push of the tree).
      const rss = `${rssTree(proc.pid)} MB (peak ${rssMB(proc.pid, "VmHWM")} MB)`;
      results.push({
        name,
        missed: `${m.missed}/${SINGLE}`,
        p50: pct(m.lat, 50),
        p99: pct(m.lat, 99),
        burst: m.burst,
        writes: m.writes,
        setup: `${st.watch.setup_ms} ms`,
        rss,
      });
      await proc.stop();
      if (logTo) await Deno.writeTextFile(bundle ? `${logTo}.bundle` : logTo, proc.stderr);
    }

    // --- the floor: each write sent by the bench the moment it is written
    if (runs("floor")) {
      await syncReplicas(lab);
      const m = await measure(lab, "floor", SINGLE, 60_000, (paths) => floorPush(lab, src, paths));
      results.push({
        name: "floor: plain rsync of the paths",
        missed: `${m.missed}/${SINGLE}`,
        p50: pct(m.lat, 50),
        p99: pct(m.lat, 99),
        burst: m.burst,
        writes: m.writes,
        setup: "-",
        rss: "-",
      });
    }

    // --- lsyncd, delay = 0, as fast as it goes (with TCP_NODELAY like fanout)
    for (const nodelay of runs("lsyncd") ? [false, true] : []) {
      await syncReplicas(lab);
      const name = nodelay ? "lsyncd delay=0 +NODELAY" : "lsyncd delay=0";
      const conf = `${lab.dir}/lsyncd-${nodelay}.lua`;
      const extra = [`"--address=${p.ip}"`, ...(nodelay ? [`"--sockopts=TCP_NODELAY"`] : [])].join(
        ", ",
      );
      const syncs = [r2, r3].map((h) => `
sync {
  default.rsync,
  source = "${src}",
  target = "${target(h)}",
  delay = 0,
  rsync = { archive = true, password_file = "${lab.password}", _extra = { ${extra} } },
}`).join("\n");
      await Deno.writeTextFile(
        conf,
        `settings { logfile = "${lab.dir}/lsyncd.log", nodaemon = true, insist = true }\n${syncs}\n`,
      );
      const t0 = performance.now();
      const child = new Deno.Command("lsyncd", {
        args: [conf],
        stdout: "null",
        stderr: "null",
        detached: true,
      })
        .spawn();
      try {
        await waitFor(
          "lsyncd startup",
          async () => {
            const log = await Deno.readTextFile(`${lab.dir}/lsyncd.log`).catch(() => "");
            return (log.match(/Startup of .* finished/g) ?? []).length >= 2;
          },
          300_000,
          50,
        );
        const ready = performance.now() - t0;
        const m = await measure(lab, nodelay ? "lsyncdn" : "lsyncd", SINGLE, 60_000);
        results.push({
          name,
          missed: `${m.missed}/${SINGLE}`,
          p50: pct(m.lat, 50),
          p99: pct(m.lat, 99),
          burst: m.burst,
          writes: m.writes,
          setup: `${Math.round(ready)} ms (incl. startup rsync)`,
          rss: `${rssMB(child.pid)} MB`,
        });
      } finally {
        Deno.kill(-child.pid, "SIGTERM");
        await child.status;
        await Deno.remove(`${lab.dir}/lsyncd.log`).catch(() => {});
      }
    }

    // --- the hand-made loop this replaces
    if (runs("loop")) {
      await syncReplicas(lab);
      const rs = [r2, r3].map((h) =>
        `rsync -az --delete --address=${p.ip} --password-file=${lab.password} ${src}/ ${target(h)}`
      ).join("; ");
      const script = `while inotifywait -qq -r -e modify,create,delete,move ${src}; do ${rs}; done`;
      const child = new Deno.Command("sh", {
        args: ["-c", script],
        stdout: "null",
        stderr: "null",
        detached: true,
      })
        .spawn();
      try {
        await sleep(quick ? 1000 : 3000); // let inotifywait set its watches
        const m = await measure(lab, "loop", LOOP_SINGLE, LOOP_CAP_MS);
        results.push({
          name: "inotifywait loop",
          missed: `${m.missed}/${LOOP_SINGLE}`,
          p50: pct(m.lat, 50),
          p99: pct(m.lat, 99),
          burst: m.burst,
          writes: m.writes,
          setup: "re-walks per event",
          rss: "-",
        });
      } finally {
        Deno.kill(-child.pid, "SIGTERM");
        await child.status;
      }
    }
  } finally {
    await lab.close();
  }

  const f = results.find((r) => r.name === "fanout") ?? results[0];
  const fmt = (ms: number) => ms === Infinity ? "missed" : `${ms.toFixed(1)} ms`;
  const ratio = (a: number, b: number) => (b === Infinity ? "∞" : `${(a / b).toFixed(1)}×`);
  console.log(
    `\nPropagation, write on the primary -> identical on 2 replicas, ${
      DIRS_A * DIRS_B * FILES
    } files / ${DIRS_A * DIRS_B} dirs (${SINGLE} single writes; ${BURST}-file burst)\n`,
  );
  console.log(
    "| tool | one file p50 | p99 | missed | 500-file burst (writing it) | vs fanout (p50 / burst) | watch setup | RSS |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const floor = results.find((r) => r.name.startsWith("floor"));
  for (const r of results) {
    console.log(
      `| ${r.name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.missed} | ${fmt(r.burst)} (${
        fmt(r.writes)
      }) | ${
        r === f ? "1×" : `${ratio(r.p50, f.p50)} / ${ratio(r.burst, f.burst)}`
      } | ${r.setup} | ${r.rss} |`,
    );
  }
  if (floor && f !== floor) {
    console.log(
      `\n${f.name} / floor: one file p50 ${ratio(f.p50, floor.p50)}, p99 ${
        ratio(f.p99, floor.p99)
      }, burst ${ratio(f.burst, floor.burst)}`,
    );
  }
}

if (import.meta.main) await main();
