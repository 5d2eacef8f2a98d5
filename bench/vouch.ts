// A server's check of its own tree before it announces a version
// (lib/vouch): what it costs on a tree of each size, against the floors
// measured in the same run.
//
// - first check: nothing kept, every file hashed; floor: reading and hashing
//   every file (`find | xargs sha256sum`, whole process);
// - whole re-check: the kept stat record, nothing changed; floor: a stat walk
//   (`find -printf`, whole process);
// - a one-file version by difference: the log's path and the watched one
//   re-hashed, the kept manifest spliced and compared with the signed one;
//   floor: reading the signed manifest and hashing it (what any check of a
//   signed manifest must do), in process.
//
// The tree is bench/_release_tree.ts's, the page cache warm; versions are
// landed as a publish and a push leave them (files, manifest, envelope, log,
// marker last).
//
// Usage: deno run -A bench/vouch.ts [--files 5000,100000] [--runs 7]
import { parseArgs } from "node:util";
import {
  generateKeyPair,
  loadSigningKey,
  manifestDigest,
  readManifestState,
  RELEASE_SKIP,
  type SigningKey,
  signRelease,
  updateManifest,
  writeManifestState,
  writePrivateKey,
} from "../lib/release/mod.ts";
import { appendEntry, formatMarker, newEntry, type VersionMarker } from "../lib/version/mod.ts";
import { Voucher } from "../lib/vouch/mod.ts";
import { makeReleaseTree } from "./_release_tree.ts";

const args = parseArgs({
  args: Deno.args,
  options: { files: { type: "string" }, runs: { type: "string" } },
}).values;
const SIZES = (args.files ?? "5000,100000").split(",").map(Number);
const RUNS = Number(args.runs ?? 7);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Whole-process time of a shell line. */
function shell(line: string): number {
  const t = performance.now();
  const out = new Deno.Command("sh", { args: ["-c", line], stdout: "null" }).outputSync();
  if (!out.success) throw new Error(`${line}: ${new TextDecoder().decode(out.stderr)}`);
  return performance.now() - t;
}

/** A publisher of versions of `root`: its own kept manifest, so each version hashes what changed. */
class Lander {
  log = "";
  last: VersionMarker | null = null;
  constructor(readonly root: string, readonly state: string, readonly key: SigningKey) {}

  async land(seq: number, paths: string[]): Promise<void> {
    const files = { manifest: `${this.state}/pub.manifest`, record: `${this.state}/pub.record` };
    let before = null;
    try {
      before = readManifestState(files);
    } catch { /* first */ }
    const next = await updateManifest(this.root, before, {
      skip: [...RELEASE_SKIP, ".fanout-tmp"],
    });
    const bytes = await writeManifestState(files, next);
    const m = {
      seq,
      commit: seq.toString(16).padStart(40, "0"),
      ref: "main",
      published_at: new Date().toISOString(),
    };
    await Deno.writeFile(`${this.root}/.fanout-manifest`, bytes);
    const envelope = await signRelease(
      { ...m, manifest_sha256: await manifestDigest(bytes) },
      this.key,
    );
    await Deno.writeFile(`${this.root}/.fanout-release`, envelope);
    this.log = appendEntry(this.log, newEntry(this.last, m, { paths, deleted: [] }));
    await Deno.writeTextFile(`${this.root}/.fanout-changes`, this.log);
    await Deno.writeTextFile(`${this.root}/.fanout-version`, formatMarker(m));
    this.last = m;
  }
}

const base = await Deno.makeTempDir({ prefix: "fanout-bench-vouch-" });
try {
  const pair = await generateKeyPair();
  await writePrivateKey(`${base}/release.key`, pair.privatePem);
  const key = await loadSigningKey(`${base}/release.key`);
  const rows: string[] = [];
  for (const files of SIZES) {
    const root = `${base}/tree${files}`;
    makeReleaseTree(root, files);
    const state = `${base}/state${files}`;
    await Deno.mkdir(state);
    const lander = new Lander(root, state, key);
    await lander.land(1, []);
    shell(`find ${root} -type f -print0 | xargs -0 cat > /dev/null`);
    const voucher = new Voucher({
      root,
      stateDir: `${state}/vouch`,
      trusted: [key.publicKey],
      excludes: [],
      watched: () => true,
      quietMs: 0,
    });
    const first = await timed(() => voucher.check());
    const hashFloor = shell(`find ${root} -type f -print0 | xargs -0 sha256sum`);
    const whole = median(await runs(() => timed(() => voucher.check(true))));
    const walkFloor = median(
      await runs(() => Promise.resolve(shell(`find ${root} -printf '%y %m %s %T@ %C@ %i %p\\n'`))),
    );
    const byDifference: number[] = [];
    const manifestFloor: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const path = `m3/d0/f${3 + 50 * i}.ts`;
      await Deno.writeTextFile(`${root}/${path}`, `changed ${i} ${Math.random()}\n`);
      await lander.land(2 + i, [path]);
      voucher.changed([{ path, deep: false }]);
      let by = "";
      byDifference.push(
        await timed(async () => {
          const v = await voucher.check();
          by = v.state === "verified" ? v.by : v.state;
        }),
      );
      if (by !== "difference") throw new Error(`version ${2 + i} checked by ${by}`);
      manifestFloor.push(
        await timed(async () =>
          await manifestDigest(await Deno.readFile(`${root}/.fanout-manifest`))
        ),
      );
    }
    const d = median(byDifference), f = median(manifestFloor);
    rows.push(
      `| ${files} | ${first.toFixed(0)} ms (${(first / hashFloor).toFixed(2)}× ${
        hashFloor.toFixed(0)
      }) | ${whole.toFixed(0)} ms (${(whole / walkFloor).toFixed(2)}× ${walkFloor.toFixed(0)}) | ${
        d.toFixed(0)
      } ms, max ${Math.max(...byDifference).toFixed(0)} (${(d / f).toFixed(1)}× ${f.toFixed(0)}) |`,
    );
  }
  console.log(`\n### a server's check of its tree (median of ${RUNS}; × the floor, same run)\n`);
  console.log(
    "| files | first check (× hashing every file) | whole re-check (× find -printf) | one-file version by difference (× reading + hashing the manifest) |",
  );
  console.log("| ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(r);
  console.log(`\nload average after: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
} finally {
  await Deno.remove(base, { recursive: true });
}

async function runs(fn: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) out.push(await fn());
  return out;
}
