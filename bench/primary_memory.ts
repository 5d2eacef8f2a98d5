// The primary's memory as its tree grows: its RSS and peak RSS (VmHWM) for
// trees of 100k and 200k files (10 files a directory), after the first whole
// push to two empty replicas, then after a burst rewriting 5% of the files
// (an event storm: a re-walk and a whole push), then after 10% more files
// arrive in new directories. The target (docs/benchmarks.md) is under
// 80 MB at 100k files.
//
//   deno run -A bench/primary_memory.ts [--files 100000,200000]
import { http, Lab, waitFor } from "../tests/_helpers.ts";

const arg = Deno.args.indexOf("--files");
const SIZES = (arg >= 0 ? Deno.args[arg + 1] : "100000,200000").split(",").map(Number);

function procMB(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function makeTree(root: string, files: number): void {
  const enc = new TextEncoder();
  for (let i = 0; i < files / 10; i++) {
    const d = `${root}/d${i % 100}/e${Math.floor(i / 100)}`;
    Deno.mkdirSync(d, { recursive: true });
    for (let f = 0; f < 10; f++) Deno.writeFileSync(`${d}/f${f}.txt`, enc.encode(`${i}-${f}\n`));
  }
}

async function settled(lab: Lab, after: number): Promise<void> {
  const h = lab.hosts.rsync1;
  await waitFor(
    "both replicas pushed whole and idle",
    async () => {
      const st = JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body);
      return st.replicas.every((
        r: { state: string; last_success: string | null; pending_full: string | null },
      ) =>
        r.state === "ok" && r.pending_full === null && Date.parse(r.last_success ?? "0") > after
      );
    },
    600_000,
    200,
  );
}

async function heapMB(lab: Lab): Promise<number> {
  const h = lab.hosts.rsync1;
  const m = /fanout_heap_used_bytes (\d+)/.exec(
    (await http(`http://${h.ip}:${h.health}/metrics`)).body,
  );
  return m ? Math.round(Number(m[1]) / 1048576) : NaN;
}

const rows: string[] = [];
for (const files of SIZES) {
  const lab = await Lab.create({ tmpfs: "8g" });
  try {
    await lab.fleet({ push: { reconcile: "1h" } });
    const src = lab.hosts.rsync1.path;
    makeTree(src, files);
    await lab.server("replica", "rsync2");
    await lab.server("replica", "rsync3");
    const t0 = Date.now();
    const primary = await lab.server("primary", "rsync1");
    await settled(lab, t0);
    const first = `${procMB(primary.pid, "VmRSS")} MB (peak ${
      procMB(primary.pid, "VmHWM")
    } MB, heap ${await heapMB(lab)} MB)`;
    const t1 = Date.now();
    const enc = new TextEncoder();
    for (let i = 0; i < files / 10; i += 2) {
      Deno.writeFileSync(
        `${src}/d${i % 100}/e${Math.floor(i / 100)}/f0.txt`,
        enc.encode(`new ${i}\n`),
      );
    }
    await settled(lab, t1);
    const burst = `${procMB(primary.pid, "VmRSS")} MB (peak ${
      procMB(primary.pid, "VmHWM")
    } MB, heap ${await heapMB(lab)} MB)`;
    // New directories arrive while running (a publish adding 10%): each is
    // watched, then pushed whole.
    const t2 = Date.now();
    for (let i = 0; i < files / 100; i++) {
      const d = `${src}/new${i % 10}/n${i}`;
      Deno.mkdirSync(d, { recursive: true });
      for (let f = 0; f < 10; f++) Deno.writeFileSync(`${d}/f${f}.txt`, enc.encode(`${i}\n`));
    }
    await settled(lab, t2);
    const grown = `${procMB(primary.pid, "VmRSS")} MB (peak ${
      procMB(primary.pid, "VmHWM")
    } MB, heap ${await heapMB(lab)} MB)`;
    rows.push(`| ${files} | ${files / 10} | ${first} | ${burst} | ${grown} |`);
    console.error(rows.at(-1));
  } finally {
    await lab.close();
  }
}
console.log(
  "| files | dirs | after the first whole push | after a 5% burst | after 10% more in new dirs |",
);
console.log("| ----: | ---: | --- | --- | --- |");
for (const r of rows) console.log(r);
