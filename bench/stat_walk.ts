// Stat walk: how long the client's stat record of a 100,000-file tree
// (bench/_release_tree.ts) takes, the ways Deno can make it, against find(1)
// in the same run:
//
//   recordTree   lib/release: one `find -printf` run read as it writes, sorted, as entries
//   lstat walk   lib/release's fallback: readDirSync and lstatSync, sorted, as entries
//   lstat async  readDirSync, then every lstat of a directory at once (Deno.lstat)
//   ffi statx    readDirSync, then statx(2) through FFI into one buffer
//                (nanosecond times; what recordTree would use if it needed them)
//   find         `find . -printf '%i %s %T@ %C@ %m %y %P\n'`, its output read
//
// Each in a fresh `deno run` with fanout's V8 flags (a cron client starts
// cold, in lite mode) that has spawned one process already (as a client has
// run rsync), timed from inside (find from its spawn); interleaved,
// medians, warm page cache. The recordTree runs also time formatting,
// parsing and comparing the record.
//
// Usage: deno run -A bench/stat_walk.ts [--quick] [--files 100000] [--runs 5] [--dir DIR]
//        [--against CHECKOUT]
//   --dir keeps the tree in DIR (made when missing), for another run.
//   --against times CHECKOUT's recordTree too (another commit of fanout, e.g.
//   from `git archive`), its bench/stat_walk.ts run the same way, interleaved.
import { parseArgs } from "node:util";
import {
  compareRecord,
  formatRecord,
  parseRecord,
  type RecordEntry,
  recordOf,
  recordTree,
} from "../lib/release/mod.ts";
// The fallback walk is no part of the folder's door; the benchmark compares it.
import { walkTreeByLstat } from "../lib/release/tree.ts";
import { V8_FLAGS } from "../lib/core/mod.ts";
import { makeReleaseTree } from "./_release_tree.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    files: { type: "string" },
    runs: { type: "string" },
    dir: { type: "string" },
    child: { type: "string" },
    root: { type: "string" },
    against: { type: "string" },
  },
});

function names(root: string): string[] {
  const out: string[] = [];
  const dirs = [""];
  while (dirs.length) {
    const d = dirs.pop()!;
    for (const e of Deno.readDirSync(d ? `${root}/${d}` : root)) {
      const p = d ? `${d}/${e.name}` : e.name;
      out.push(p);
      if (e.isDirectory) dirs.push(p);
    }
  }
  return out;
}

async function lstatAsync(root: string): Promise<number> {
  let n = 0;
  const dirs = [""];
  while (dirs.length) {
    const d = dirs.pop()!;
    const paths = [...Deno.readDirSync(d ? `${root}/${d}` : root)].map((e) =>
      d ? `${d}/${e.name}` : e.name
    );
    const sts = await Promise.all(paths.map((p) => Deno.lstat(`${root}/${p}`)));
    sts.forEach((st, i) => st.isDirectory && dirs.push(paths[i]));
    n += sts.length;
  }
  return n;
}

function statx(root: string): RecordEntry[] {
  const libc = Deno.dlopen("libc.so.6", {
    statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  });
  const buf = new Uint8Array(256), view = new DataView(buf.buffer);
  const pathBuf = new Uint8Array(8192), enc = new TextEncoder();
  const out: RecordEntry[] = [];
  for (const path of names(root)) {
    const { written } = enc.encodeInto(`${root}/${path}`, pathBuf);
    pathBuf[written] = 0;
    // AT_FDCWD, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS
    if (libc.symbols.statx(-100, pathBuf, 0x100, 0x7ff, buf) !== 0) throw new Error(path);
    const mode = view.getUint16(28, true);
    const ms = (o: number) =>
      Number(view.getBigInt64(o, true)) * 1000 + Math.floor(view.getUint32(o + 8, true) / 1e6);
    out.push({
      path,
      kind: (mode & 0o170000) === 0o040000 ? "dir" : "file",
      mode: mode & 0o7777,
      ino: Number(view.getBigUint64(32, true)),
      size: Number(view.getBigUint64(40, true)),
      mtimeMs: ms(112),
      ctimeMs: ms(96),
    });
  }
  libc.close();
  return out;
}

if (args.values.child) {
  const root = args.values.root!;
  // A client has run rsync before it walks dest: the first process a Deno
  // process spawns costs ~30 ms more than the next, and is paid before.
  new Deno.Command("true").outputSync();
  let t = performance.now();
  let n = 0;
  if (args.values.child === "async") n = await lstatAsync(root);
  else if (args.values.child === "statx") n = statx(root).length;
  else if (args.values.child === "lstat") n = recordOf(walkTreeByLstat(root)).entries.length;
  else {
    const rec = await recordTree(root);
    const ms = -t + (t = performance.now());
    const lap = () => -t + (t = performance.now());
    const text = formatRecord(rec);
    const format = lap();
    const back = parseRecord(text);
    const parse = lap();
    compareRecord(back, rec);
    const compare = lap();
    const extra = { format, parse, compare, bytes: text.length };
    console.log(JSON.stringify({ ms, n: rec.entries.length, extra }));
    Deno.exit(0);
  }
  console.log(JSON.stringify({ ms: performance.now() - t, n }));
  Deno.exit(0);
}

const FILES = Number(args.values.files ?? (args.values.quick ? 10_000 : 100_000));
const RUNS = Number(args.values.runs ?? (args.values.quick ? 3 : 5));
const SELF = new URL(import.meta.url).pathname;
const AGAINST = args.values.against;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Run {
  ms: number;
  n: number;
  extra?: { format: number; parse: number; compare: number; bytes: number };
}

function child(kind: string, root: string): Run {
  const [self, way] = kind === "against"
    ? [`${AGAINST}/bench/stat_walk.ts`, "record"]
    : [SELF, kind];
  const out = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${V8_FLAGS}`, self, "--child", way, "--root", root],
  }).outputSync();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function find(root: string): Run {
  const t = performance.now();
  const out = new Deno.Command("find", {
    args: [".", "-mindepth", "1", "-printf", "%i %s %T@ %C@ %m %y %P\\n"],
    cwd: root,
  }).outputSync();
  const ms = performance.now() - t;
  return { ms, n: out.stdout.filter((b) => b === 10).length };
}

const base = args.values.dir ?? await Deno.makeTempDir({ prefix: "fanout-bench-statwalk-" });
try {
  const root = `${base}/tree${FILES}`;
  try {
    Deno.statSync(root);
  } catch {
    makeReleaseTree(root, FILES);
  }
  find(root); // the inodes into the cache
  const ways = [
    "record",
    "lstat",
    ...(AGAINST ? ["against"] : []),
    "async",
    "statx",
    "find",
  ];
  const t: Record<string, number[]> = Object.fromEntries(ways.map((w) => [w, []]));
  let paths = 0;
  const rec: Record<string, number[]> = { format: [], parse: [], compare: [] };
  let bytes = 0;
  for (let r = 0; r < RUNS; r++) {
    for (const w of ways) {
      const got = w === "find" ? find(root) : child(w, root);
      if (paths && got.n !== paths) throw new Error(`${w} saw ${got.n} paths, not ${paths}`);
      paths = got.n;
      t[w].push(got.ms);
      if (got.extra && w === "record") {
        for (const k of ["format", "parse", "compare"] as const) rec[k].push(got.extra[k]);
        bytes = got.extra.bytes;
      }
    }
  }

  const f = median(t.find);
  console.log(`\n### stat walk of ${paths} paths (median of ${RUNS}, warm cache)\n`);
  console.log("| way | time | vs find |");
  console.log("| --- | ---: | ---: |");
  const label: Record<string, string> = {
    record: "recordTree (find -printf, read as it writes)",
    lstat: "recordOf(readDirSync, lstatSync)",
    against: `recordTree at ${AGAINST}`,
    async: "Deno.lstat, a directory at once",
    statx: "statx through FFI",
    find: "find -printf",
  };
  for (const w of ways) {
    const m = median(t[w]);
    console.log(`| ${label[w]} | ${m.toFixed(0)} ms | ${(m / f).toFixed(2)} |`);
  }
  const ms = (k: string) => `${median(rec[k]).toFixed(0)} ms`;
  console.log(
    `\nrecord: ${(bytes / 1e6).toFixed(1)} MB; format ${ms("format")}, parse ${
      ms("parse")
    }, compare ${ms("compare")}`,
  );
  console.log(`load average after: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
} finally {
  if (!args.values.dir) await Deno.remove(base, { recursive: true });
}
