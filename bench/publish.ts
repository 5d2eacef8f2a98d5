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
// Usage: deno run -A bench/publish.ts [--quick]
import { Lab, sh } from "../tests/_helpers.ts";
import { exists } from "../lib/core/mod.ts";

const quick = Deno.args.includes("--quick");
const FILES = quick ? 5_000 : 20_000;
const RUNS = quick ? 3 : 7;

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh("git", ["-c", "user.name=b", "-c", "user.email=b@lab", ...args], { cwd });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

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
} finally {
  await Deno.remove(root, { recursive: true }).catch(() => {});
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
