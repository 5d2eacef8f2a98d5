// Publish: one-file change in a tree of many files, from a bare repository to
// a real primary (fanout's own rsync daemon on loopback), three ways:
//
//   fanout     `fanout --role publish` (process start included): private-index
//              export into persistent staging, tree, then marker
//   checkout   the hand-made way: `git pull` in a checkout on the git server,
//              then `rsync -az --delete checkout/ rsync://…` (ships .git too)
//   archive    a naive export: `git archive | tar -x` into a fresh dir, then
//              `rsync -a --delete` (every mtime is new, so every file is read)
//
// With --signed, fanout alone, unsigned against signed (release.public_keys
// set: the manifest of staging built from the kept one, the envelope signed
// and sent with the marker), each publish of a change by both in turn: the
// first publish of the whole tree (with the first manifest's time, from the
// publisher's own log line, and its size), then one-file changes.
//
// With --difference, publishing by difference against the whole tree, each
// unsigned and signed, and the hand-made checkout way, each to its own
// primary, every change published by all five in turn (rotating who goes
// first). "whole" has its record of the last publish removed before each
// publish, so it sends the whole tree as every publish did before publishing
// by difference.
//
// With --before DIR (and --difference), the fanout checked out in DIR too
// (say the commit before publishing by difference), unsigned and signed, in
// the same rotation: its own tests/_helpers.ts makes its labs, which run its
// own main.ts.
//
// Usage: deno run -A bench/publish.ts [--quick] [--signed | --difference [--before DIR]]
//   [--files N] [--runs N]
import { parseArgs } from "node:util";
import { Lab, type Ran, sh } from "../tests/_helpers.ts";
import { exists } from "../lib/core/mod.ts";
import { generateKeyPair, writePrivateKey } from "../lib/release/mod.ts";
import { git } from "./_git.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    signed: { type: "boolean" },
    difference: { type: "boolean" },
    before: { type: "string" },
    files: { type: "string" },
    runs: { type: "string" },
  },
}).values;
const quick = args.quick ?? false;
const FILES = Number(args.files ?? (quick ? 5_000 : 20_000));
const RUNS = Number(args.runs ?? (quick ? 3 : 7));

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const root = await Deno.makeTempDir({ prefix: "fanout-bench-publish-" });
try {
  const bare = `${root}/origin.git`;
  const work = `${root}/work`;
  await git(root, "init", "-q", "--bare", "-b", "main", bare);
  await git(root, "clone", "-q", bare, work);
  await git(work, "symbolic-ref", "HEAD", "refs/heads/main");
  for (let i = 0; i < FILES; i++) {
    const dir = `${work}/d${i % 500}`;
    if (i < 500) await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/f${i}.php`, `<?php // file ${i}\n${"x".repeat(i % 2000)}\n`);
  }
  await git(work, "add", "-A");
  await git(work, "commit", "-q", "-m", "tree");
  await git(work, "push", "-q", "origin", "main");
  let n = 0;
  const change = async () => {
    await Deno.writeTextFile(`${work}/d7/f7.php`, `<?php // change ${n++}\n`);
    await git(work, "commit", "-q", "-am", `change ${n}`);
    await git(work, "push", "-q", "origin", "main");
  };

  if (args.signed) await signedAgainstUnsigned(bare, change);
  else if (args.difference) await byDifference(bare, change);
  else await threeWays(bare, change);
} finally {
  await Deno.remove(root, { recursive: true }).catch(() => {});
}

/** fanout, the hand-made checkout and a naive archive, each in its own lab. */
async function threeWays(bare: string, change: () => Promise<void>): Promise<void> {
  // Each way gets its own lab (its own primary), so none undoes another's work.
  const ways: Record<string, (lab: Lab) => () => Promise<void>> = {
    fanout: (lab) => async () => {
      const r = await lab.run(["--role", "publish", "-c", lab.fleetFile, "--repo", bare]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
    checkout: (lab) => {
      const checkout = `${lab.dir}/checkout`;
      return async () => {
        if (!(await exists(checkout))) await git(lab.dir, "clone", "-q", bare, checkout);
        else await git(checkout, "pull", "-q", "--ff-only");
        const r = await rsyncTo(lab, checkout, ["-az"]);
        if (r.code !== 0) throw new Error(r.stderr);
      };
    },
    archive: (lab) => async () => {
      const dir = `${lab.dir}/export`;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.mkdir(dir);
      const x = await sh("sh", ["-c", `git --git-dir="${bare}" archive main | tar -x -C "${dir}"`]);
      if (x.code !== 0) throw new Error(x.stderr);
      const r = await rsyncTo(lab, dir, ["-a"]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
  };
  const times: Record<string, number[]> = {};
  for (const [name, make] of Object.entries(ways)) {
    const lab = await Lab.create();
    try {
      await lab.fleet({ replicas: [] });
      await lab.server("primary", "rsync1");
      const fn = make(lab);
      await fn(); // the first, full send
      times[name] = [];
      for (let i = 0; i < RUNS; i++) {
        await change();
        times[name].push(await timed(fn));
      }
    } finally {
      await lab.close();
    }
  }
  const base = median(times.fanout);
  console.log(`\n### publish: one changed file in a ${FILES}-file tree (median of ${RUNS})\n`);
  console.log("| way | median | vs fanout | ships .git |");
  console.log("| --- | ---: | ---: | --- |");
  for (const [name, xs] of Object.entries(times)) {
    const m = median(xs);
    console.log(
      `| ${name} | ${m.toFixed(0)} ms | ${(m / base).toFixed(2)}x | ${
        name === "checkout" ? "yes" : "no"
      } |`,
    );
  }
}

/** What a signed publish's log line says of its manifest. */
interface ManifestLine {
  paths: number;
  hashed: number;
  ms: number;
}

function manifestLine(r: Ran): ManifestLine | null {
  const line = r.stderr.split("\n").find((l) => l.includes('msg="manifest built"'));
  if (!line) return null;
  const field = (k: string) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(line)![1]);
  return { paths: field("paths"), hashed: field("hashed"), ms: field("ms") };
}

/**
 * fanout unsigned and signed, each with its own primary, publishing the same
 * commits in turn: the whole tree first, then RUNS one-file changes.
 */
async function signedAgainstUnsigned(bare: string, change: () => Promise<void>): Promise<void> {
  const labs = { unsigned: await Lab.create(), signed: await Lab.create() };
  try {
    const key = await generateKeyPair();
    await writePrivateKey(`${labs.signed.dir}/release.key`, key.privatePem);
    await labs.unsigned.fleet({ replicas: [] });
    await labs.signed.fleet({
      replicas: [],
      extra: `release:\n  signing_key_file: ${labs.signed.dir}/release.key\n` +
        `  public_keys: [${key.publicKey.text}]`,
    });
    for (const lab of Object.values(labs)) await lab.server("primary", "rsync1");
    const publish = async (lab: Lab): Promise<{ ms: number; manifest: ManifestLine | null }> => {
      const t = performance.now();
      const r = await lab.run([
        "--role",
        "publish",
        "-c",
        lab.fleetFile,
        "--repo",
        bare,
        "--log-level",
        "debug",
      ]);
      const ms = performance.now() - t;
      if (r.code !== 0) throw new Error(r.stderr);
      return { ms, manifest: manifestLine(r) };
    };
    const firstUnsigned = await publish(labs.unsigned);
    const firstSigned = await publish(labs.signed);
    const manifestBytes = (await Deno.stat(`${labs.signed.hosts.rsync1.path}/.fanout-manifest`))
      .size;
    const times = { unsigned: [] as number[], signed: [] as number[], manifest: [] as number[] };
    let hashed = 0;
    for (let i = 0; i < RUNS; i++) {
      await change();
      // Alternating which goes first, so neither always meets a cooler cache.
      const order = i % 2 ? ["signed", "unsigned"] as const : ["unsigned", "signed"] as const;
      for (const way of order) {
        const r = await publish(labs[way]);
        times[way].push(r.ms);
        if (r.manifest) {
          times.manifest.push(r.manifest.ms);
          hashed = Math.max(hashed, r.manifest.hashed);
        }
      }
    }
    const m = firstSigned.manifest!;
    console.log(`\n### publish, unsigned and signed: a ${FILES}-file tree\n`);
    console.log("| publish | unsigned | signed | of which the manifest |");
    console.log("| --- | ---: | ---: | ---: |");
    console.log(
      `| the whole tree, first | ${firstUnsigned.ms.toFixed(0)} ms | ${
        firstSigned.ms.toFixed(0)
      } ms | ${m.ms} ms (${m.paths} paths, ${m.hashed} hashed; ${
        (manifestBytes / 1e6).toFixed(1)
      } MB) |`,
    );
    console.log(
      `| one changed file (median of ${RUNS}) | ${median(times.unsigned).toFixed(0)} ms | ${
        median(times.signed).toFixed(0)
      } ms | ${median(times.manifest).toFixed(0)} ms (at most ${hashed} hashed) |`,
    );
  } finally {
    for (const lab of Object.values(labs)) await lab.close();
  }
}

/** A way of publishing, in its own lab; `publish` sends the newest commit. */
interface Way {
  name: string;
  lab: Lab;
  publish: () => Promise<void>;
}

/** fanout's publish, whole or by difference, unsigned or signed; checks the way it went. */
async function fanoutWay(
  bare: string,
  signed: boolean,
  whole: boolean,
  from: { name: string; Lab: typeof Lab } | null = null,
): Promise<Way> {
  const lab = await (from?.Lab ?? Lab).create();
  let release = "";
  if (signed) {
    const key = await generateKeyPair();
    await writePrivateKey(`${lab.dir}/release.key`, key.privatePem);
    release = `release:\n  signing_key_file: ${lab.dir}/release.key\n` +
      `  public_keys: [${key.publicKey.text}]`;
  }
  await lab.fleet({ replicas: [], extra: release });
  await lab.server("primary", "rsync1");
  const args = ["--role", "publish", "-c", lab.fleetFile, "--repo", bare, "--log-level", "debug"];
  let first = true;
  return {
    name: `fanout ${signed ? "signed" : "unsigned"}, ${
      from ? from.name : whole ? "whole tree" : "by difference"
    }`,
    lab,
    publish: async () => {
      const r = await lab.run(args);
      if (r.code !== 0) throw new Error(r.stderr);
      const by = r.stderr.includes('msg="publishing by difference"');
      if (!first && by === whole) {
        throw new Error(`not ${whole ? "whole" : "by difference"}:\n${r.stderr}`);
      }
      first = false;
    },
  };
}

/** The hand-made way: `git pull` in a checkout on the git server, `rsync -az --delete` of it. */
async function checkoutWay(bare: string): Promise<Way> {
  const lab = await Lab.create();
  await lab.fleet({ replicas: [] });
  await lab.server("primary", "rsync1");
  const checkout = `${lab.dir}/checkout`;
  return {
    name: "hand-made: git pull + rsync -az",
    lab,
    publish: async () => {
      if (!(await exists(checkout))) await git(lab.dir, "clone", "-q", bare, checkout);
      else await git(checkout, "pull", "-q", "--ff-only");
      const r = await rsyncTo(lab, checkout, ["-az"]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
  };
}

/**
 * Publishing by difference against the whole tree (unsigned and signed) and
 * the hand-made way, RUNS one-file changes each published by all in turn.
 */
async function byDifference(bare: string, change: () => Promise<void>): Promise<void> {
  // Another checkout of fanout (the code before publishing by difference):
  // its own test helpers run its own main.ts.
  const before = args.before
    ? { name: `as ${args.before}`, Lab: (await import(`${args.before}/tests/_helpers.ts`)).Lab }
    : null;
  const ways = [
    await checkoutWay(bare),
    ...(before ? [await fanoutWay(bare, false, true, before)] : []),
    await fanoutWay(bare, false, true),
    await fanoutWay(bare, false, false),
    ...(before ? [await fanoutWay(bare, true, true, before)] : []),
    await fanoutWay(bare, true, true),
    await fanoutWay(bare, true, false),
  ];
  try {
    for (const w of ways) await w.publish(); // the first, full send
    const times = ways.map(() => [] as number[]);
    for (let i = 0; i < RUNS; i++) {
      await change();
      for (let j = 0; j < ways.length; j++) {
        const k = (i + j) % ways.length;
        const w = ways[k];
        if (w.name.endsWith("whole tree")) {
          await Deno.remove(`${w.lab.dir}/state/git1/published.json`).catch(() => {});
        }
        times[k].push(await timed(w.publish));
      }
    }
    const base = median(times[0]);
    console.log(`\n### publish: one changed file in a ${FILES}-file tree (median of ${RUNS})\n`);
    console.log("| way | median | vs hand-made |");
    console.log("| --- | ---: | ---: |");
    ways.forEach((w, k) => {
      const m = median(times[k]);
      console.log(`| ${w.name} | ${m.toFixed(0)} ms | ${(m / base).toFixed(2)}x |`);
    });
  } finally {
    for (const w of ways) await w.lab.close();
  }
}

function rsyncTo(lab: Lab, src: string, extra: string[]) {
  const p = lab.hosts.rsync1;
  return sh("rsync", [
    ...extra,
    "--delete",
    "--sockopts=TCP_NODELAY",
    `--address=${lab.ip(250)}`,
    `--password-file=${lab.password}`,
    `${src}/`,
    `rsync://fanout@${p.ip}:${p.port}/plugins-push/`,
  ]);
}
