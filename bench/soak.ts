// Soak: the whole fleet (git server with the hook, primary, three replicas
// with one behind a relay, proxy, five clients: three run as cron runs them,
// one of those with --verify-every 1h, two with --watch) under random commits, faults and client runs for a set
// time, with a convergence check every --check-every. Not in CI.
//
//   deno run -A bench/soak.ts [--duration 10m] [--check-every 30s] [--seed N] [--signed]
//
// --signed: a signed fleet (a release key made here, its public key in the
// fleet file): every server checks its tree against the signed manifest
// before it announces a version, every client verifies what it applies.
//   deno task soak
//
// Actions, drawn at random: a commit pushed through the hook (adds, changes,
// deletes, renames, a symlink, an exec bit); two pushes racing; a replica or
// the relay killed (SIGKILL, with its rsync daemon) and restarted a little
// later; the primary killed or restarted; the proxy killed and restarted; a
// client run, or one killed mid-sync; a --watch client killed and restarted.
//
// A check brings every process back, publishes by hand if the last push's
// publish failed (as the next push would), then wants every server and
// every client to hold exactly the newest commit's tree within a minute. A
// divergence is reported with the host, its version marker, the paths that
// differ, and the faults that hit it since the last check passed.
//
// At the end: the actions taken, client run results by exit code, publishes,
// checks passed, and every divergence. Exit 1 if any divergence.
import { parseArgs } from "node:util";
import { Lab, type Proc, sleep } from "../tests/_helpers.ts";
import { git, type GitRepo, hookSaid, MARKER, markerOf, Topology } from "../tests/_fleet.ts";
import { parseDuration } from "../lib/core/mod.ts";
import { signingSection } from "../tests/_signed.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10m" },
    "check-every": { type: "string", default: "30s" },
    seed: { type: "string" },
    signed: { type: "boolean" },
  },
});
const DURATION = parseDuration(args.values.duration!) ?? usage("--duration");
const CHECK_EVERY = parseDuration(args.values["check-every"]!) ?? usage("--check-every");

function usage(flag: string): never {
  console.error(`soak: ${flag}: expected a duration with a unit, like "30s" or "10m"`);
  Deno.exit(2);
}
let seed = Number(args.values.seed ?? Date.now() % 1_000_000);
const SEED = seed;

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed with --seed. */
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const between = (a: number, b: number) => a + Math.floor(rand() * (b - a));

const SERVERS = ["rsync1", "rsync2", "rsync3", "rsync4"] as const;
const CRON = ["c1", "c2", "c3"];
const WATCH = ["c4", "c5"];

interface Event {
  at: number;
  what: string;
  hosts: string[];
}
interface Divergence {
  check: number;
  host: string;
  expected: string;
  marker: string;
  paths: string[];
  faults: string[];
}

const counts = new Map<string, number>();
const count = (k: string, n = 1) => counts.set(k, (counts.get(k) ?? 0) + n);
const clientExits = new Map<number, number>();
const unexpected: string[] = [];
const events: Event[] = [];
const divergences: Divergence[] = [];
let checksPassed = 0;
let hostChecks = 0;
let checkRounds = 0;
let t0 = 0;

const log = (s: string) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);
const note = (what: string, hosts: string[]) => {
  events.push({ at: Date.now(), what, hosts });
  log(what);
};

async function main(): Promise<void> {
  const lab = await Lab.create({ tmpfs: true });
  t0 = Date.now();
  let t: Topology | null = null;
  const down = new Set<string>();
  const pendingRestarts: Promise<void>[] = [];
  try {
    t = await Topology.start(lab, {
      push: { retry_min: "200ms", retry_max: "2s" },
      client: { retries: 3 },
      extra: args.values.signed ? await signingSection(lab) : undefined,
    });
    const fleet = t;
    // One cron client walks the tree only hourly: between walks it follows the
    // version log, as the --watch clients do between their minutely walks.
    fleet.clientFlags.set("c3", ["--verify-every", "1h"]);
    const repo = fleet.repo;
    const model = new TreeModel(repo);
    let head = await fleet.publish(await model.seed(), { msg: "seed" });
    const dev2 = await repo.another("dev2");
    let lastPublishOk = true;
    await fleet.converged(head, { clients: CRON });
    await fleet.startWatchers(WATCH);
    log(
      `soak: ${args.values.duration} (seed ${SEED}${
        args.values.signed ? ", signed" : ""
      }), checks every ${args.values["check-every"]}`,
    );

    const restartLater = (name: string, ms: number) => {
      down.add(name);
      pendingRestarts.push((async () => {
        await sleep(ms);
        await startHost(fleet, name);
        down.delete(name);
        log(`${name} back`);
      })());
    };

    let nextCheck = Date.now() + CHECK_EVERY;
    const deadline = t0 + DURATION;
    let sinceCheck: Event[] = [];
    while (Date.now() < deadline) {
      const before = events.length;
      const action = pick(ACTIONS);
      count(action);
      switch (action) {
        case "commit": {
          const files = model.change();
          const c = await model.commitAndPush(repo, files);
          head = c.commit;
          lastPublishOk = c.published;
          note(
            `commit ${c.commit.slice(0, 8)} (${c.summary})${c.published ? "" : `: ${c.said}`}`,
            [],
          );
          break;
        }
        case "race": {
          const r = await race(repo, dev2, model);
          head = r.commit;
          lastPublishOk = r.published;
          note(
            `race: two pushes at once, newer ${r.commit.slice(0, 8)}: ${r.said.join(" | ")}`,
            [],
          );
          break;
        }
        case "kill replica": {
          const name = pick(["rsync2", "rsync3", "rsync4"].filter((n) => !down.has(n)));
          if (!name) break;
          await fleet.killServer(name);
          note(`killed ${name} (SIGKILL, with its daemon)`, [name]);
          restartLater(name, between(300, 4000));
          break;
        }
        case "primary": {
          if (down.has("rsync1")) break;
          if (rand() < 0.5) {
            await fleet.procs.get("rsync1")?.stop("SIGTERM");
            fleet.procs.delete("rsync1");
            await fleet.startServer("rsync1");
            note("restarted the primary (SIGTERM, start)", ["rsync1"]);
          } else {
            await fleet.killServer("rsync1");
            note("killed the primary (SIGKILL, with its daemon)", ["rsync1"]);
            restartLater("rsync1", between(300, 3000));
          }
          break;
        }
        case "proxy": {
          if (down.has("proxy")) break;
          const p = fleet.procs.get("proxy")!;
          p.kill("SIGKILL");
          await p.status();
          fleet.procs.delete("proxy");
          note("killed the proxy (SIGKILL)", ["proxy"]);
          restartLater("proxy", between(200, 2000));
          break;
        }
        case "client run": {
          const names = CRON.filter(() => rand() < 0.7);
          const runs = await Promise.all(names.map((c) => fleet.runClient(c)));
          runs.forEach((r, i) => clientResult(names[i], r.code, r.stderr));
          break;
        }
        case "kill client": {
          const c = pick(CRON);
          const p = await fleet.spawnClient(c);
          await sleep(between(20, 600));
          if (p.exited) {
            clientResult(c, p.exited.code, p.stderr); // done before the kill
            break;
          }
          killClient(fleet, c, p);
          await p.status();
          note(`killed client ${c} mid-run`, [c]);
          break;
        }
        case "kill watcher": {
          const c = pick(WATCH);
          const p = fleet.watchers.get(c);
          if (!p || watcherExited(fleet, c)) break;
          killClient(fleet, c, p);
          await p.status();
          fleet.watchers.delete(c);
          note(`killed --watch client ${c} (SIGKILL)`, [c]);
          await sleep(between(100, 1500));
          await fleet.startWatchers([c]);
          break;
        }
        case "pause":
          await sleep(between(200, 1500));
          break;
      }
      sinceCheck = sinceCheck.concat(events.slice(before));
      if (Date.now() >= nextCheck || Date.now() >= deadline) {
        await Promise.all(pendingRestarts.splice(0));
        for (const name of [...down]) {
          await startHost(fleet, name);
          down.delete(name);
        }
        for (const c of WATCH) {
          watcherExited(fleet, c);
          if (!fleet.watchers.has(c)) await fleet.startWatchers([c]);
        }
        if (!lastPublishOk || (await markerOf(lab.hosts.rsync1.path))?.commit !== head) {
          // The push is in the repository; its publish failed (the primary was
          // down): the next publish catches up, here one by hand.
          const r = await lab.run([
            "--role",
            "publish",
            "-c",
            fleet.fleetFile,
            "--repo",
            repo.bare,
          ]);
          count("catch-up publish");
          note(`catch-up publish: exit ${r.code} ${r.stdout.trim() || r.stderr.trim()}`, []);
          lastPublishOk = r.code === 0;
        }
        await check(fleet, head, sinceCheck);
        sinceCheck = [];
        nextCheck = Date.now() + CHECK_EVERY;
      }
    }
    await fleet.shutdown();
  } finally {
    await Promise.allSettled(pendingRestarts);
    await lab.close();
  }
  report();
  if (divergences.length) Deno.exit(1);
}

const ACTIONS = [
  "commit",
  "commit",
  "commit",
  "race",
  "kill replica",
  "primary",
  "proxy",
  "client run",
  "client run",
  "client run",
  "kill client",
  "kill watcher",
  "pause",
] as const;

async function startHost(t: Topology, name: string): Promise<void> {
  if (name === "proxy") await t.startProxy();
  else await t.startServer(name);
}

function killClient(t: Topology, name: string, p: Proc): void {
  p.kill("SIGKILL");
  // Its rsync dies with the host too, or lives on as an orphan: both happen.
  if (rand() < 0.5) {
    try {
      const pid = Number(
        Deno.readTextFileSync(`${t.clientState(name)}/client-rsync.pid`).split("\n")[0],
      );
      if (pid > 1) Deno.kill(-pid, "SIGKILL");
    } catch { /* not transferring */ }
  }
}

/**
 * A --watch client that ended on its own (it must keep running through every
 * fault): an unexpected result, with the end of what it said. True when so.
 */
function watcherExited(t: Topology, name: string): boolean {
  const p = t.watchers.get(name);
  if (!p?.exited) return false;
  t.watchers.delete(name);
  const said = p.stderr.trim().split("\n").slice(-3).join(" | ");
  unexpected.push(`--watch client ${name}: exited ${p.exited.code}: ${said}`);
  log(`--watch client ${name} had exited (${p.exited.code}): ${said}`);
  return true;
}

function clientResult(name: string, code: number, stderr: string): void {
  clientExits.set(code, (clientExits.get(code) ?? 0) + 1);
  // 3 (cannot reach a server: the proxy or every backend was down) and 5
  // (the lock: a --watch or a killed run's successor) are expected here.
  if (![0, 3, 5].includes(code)) unexpected.push(`${name}: exit ${code}: ${stderr.trim()}`);
  else if (code === 3) log(`client ${name}: exit 3: ${stderr.trim().split("\n").at(-1)}`);
}

/** dev1 pushes A; dev2 (who has A) pushes B at once on top of it. */
async function race(
  repo: GitRepo,
  dev2: GitRepo,
  model: TreeModel,
): Promise<{ commit: string; published: boolean; said: string[] }> {
  await git(repo.work, "pull", "-q", "--ff-only", "origin", "main");
  const a = await repo.commit(model.change(), { msg: "race A" });
  await git(dev2.work, "pull", "-q", "--ff-only", repo.work, "main");
  // dev2's change is made in dev1's model, then written in dev2's clone.
  const bFiles = model.change();
  const b = await dev2.commit(bFiles, { msg: "race B" });
  const pushA = repo.push();
  for (let i = 0; i < 400; i++) {
    if ((await git(repo.bare, "rev-parse", "main")) === a) break;
    await sleep(5);
  }
  await sleep(between(0, 400));
  const [ra, rb] = await Promise.all([pushA, dev2.push()]);
  await git(repo.work, "pull", "-q", "--ff-only", "origin", "main");
  const said = [...hookSaid(ra), ...hookSaid(rb)].map((l) => l.trim());
  if (ra.code !== 0 || rb.code !== 0) {
    unexpected.push(`race: git push failed: ${ra.stderr} ${rb.stderr}`);
  }
  return {
    commit: b,
    // B's own hook ran after B landed: it published B unless the primary was down.
    published: hookSaid(rb).some((l) => /^(published|already published)/.test(l)),
    said,
  };
}

/** Waits for every host to hold `commit` exactly; records what diverged and why. */
async function check(t: Topology, commit: string, since: Event[]): Promise<void> {
  checkRounds++;
  log(`check ${checkRounds}: every host at ${commit.slice(0, 8)}?`);
  const want = await t.archive(commit);
  const settle = async (dir: string, deadline: number) => {
    let last = "";
    while (Date.now() < deadline) {
      last = await t.divergence(dir, commit);
      if (last === "") return "";
      await sleep(250);
    }
    return last;
  };
  const deadline = Date.now() + 60_000;
  const servers = await Promise.all(SERVERS.map((s) => settle(t.treeOf(s), deadline)));
  const runs = await Promise.all(CRON.map((c) => t.runClient(c)));
  runs.forEach((r, i) => clientResult(CRON[i], r.code, r.stderr));
  const clients = await Promise.all(
    [...CRON, ...WATCH].map((c) => settle(t.treeOf(c), Date.now() + 30_000)),
  );
  const hosts = [...SERVERS, ...CRON, ...WATCH];
  const results = [...servers, ...clients];
  for (const [i, diff] of results.entries()) {
    hostChecks++;
    if (diff === "") {
      checksPassed++;
      continue;
    }
    const host = hosts[i];
    const m = await markerOf(t.treeOf(host));
    const d: Divergence = {
      check: checkRounds,
      host,
      expected: commit.slice(0, 8),
      marker: m ? `seq ${m.seq} ${m.commit.slice(0, 8)}` : "none",
      paths: pathsOf(diff, want, t.treeOf(host)),
      faults: since.filter((e) => e.hosts.includes(host) || e.hosts.length === 0).map((e) =>
        `+${((e.at - t0) / 1000).toFixed(1)}s ${e.what}`
      ).slice(-8),
    };
    divergences.push(d);
    log(
      `DIVERGED: ${host} (marker ${d.marker}, want ${d.expected}): ${
        d.paths.slice(0, 5).join(", ")
      }`,
    );
  }
}

/** "Only in …" / "Files … differ" lines of diff -r, as relative paths. */
function pathsOf(diff: string, want: string, have: string): string[] {
  const out: string[] = [];
  for (const line of diff.split("\n")) {
    let m = /^Only in (.*?): (.*)$/.exec(line);
    if (m) {
      const where = m[1].startsWith(want) ? "missing" : "extra";
      const base = m[1].startsWith(want) ? want : have;
      out.push(`${where} ${(m[1] + "/" + m[2]).slice(base.length + 1)}`);
      continue;
    }
    m = /^Files (.*?) and (.*?) differ$/.exec(line);
    if (m) out.push(`differs ${m[1].slice(want.length + 1)}`);
    else if (line.includes(MARKER)) out.push(line);
  }
  return out.length ? out : [diff.slice(0, 300)];
}

/** What the repository holds, so each commit changes things that exist. */
class TreeModel {
  files = new Map<string, string>();
  #n = 0;
  constructor(readonly repo: GitRepo) {}

  seed(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (let i = 0; i < 300; i++) out[`src/d${i % 12}/f${i}.php`] = this.#content(i);
    out["bin/run.sh"] = "#!/bin/sh\necho run\n";
    for (const [p, c] of Object.entries(out)) this.files.set(p, c);
    return Promise.resolve(out);
  }

  #content(i: number): string {
    return `<?php // ${i} ${this.#n}\n` + "x".repeat(between(0, 4000));
  }

  /** A random change: adds, edits, deletes, renames (as files: string, null). */
  change(): Record<string, string | null> {
    this.#n++;
    const out: Record<string, string | null> = {};
    const paths = [...this.files.keys()];
    const ops = between(1, 4);
    for (let k = 0; k < ops; k++) {
      const op = pick(["add", "add", "edit", "edit", "delete", "rename", "dir"]);
      if (op === "add" || paths.length < 50) {
        for (let i = 0; i < between(1, 6); i++) {
          const p = `src/d${between(0, 16)}/n${this.#n}_${i}.php`;
          out[p] = this.#content(this.#n);
        }
      } else if (op === "edit") {
        for (let i = 0; i < between(1, 6); i++) out[pick(paths)] = this.#content(this.#n);
      } else if (op === "delete") {
        for (let i = 0; i < between(1, 4); i++) out[pick(paths)] = null;
      } else if (op === "rename") {
        // A rename is a delete and an add of the same content.
        const from = pick(paths);
        if (out[from] === undefined && this.files.has(from)) {
          out[`src/moved${between(0, 4)}/${from.split("/").pop()}`] = this.files.get(from)!;
          out[from] = null;
        }
      } else {
        // A whole new directory.
        for (let i = 0; i < between(2, 10); i++) {
          out[`lib/v${this.#n}/m${i}.php`] = this.#content(i);
        }
      }
    }
    for (const [p, c] of Object.entries(out)) {
      if (c === null) this.files.delete(p);
      else this.files.set(p, c);
    }
    return out;
  }

  async commitAndPush(
    repo: GitRepo,
    files: Record<string, string | null>,
  ): Promise<{ commit: string; published: boolean; said: string; summary: string }> {
    // Deleting a path git no longer tracks (deleted twice) is not a change.
    const tracked = new Set((await git(repo.work, "ls-files")).split("\n"));
    const real = Object.fromEntries(
      Object.entries(files).filter(([p, c]) => c !== null || tracked.has(p)),
    );
    const commit = await repo.commit(real);
    const r = await repo.push();
    if (r.code !== 0) unexpected.push(`git push failed: ${r.stderr}`);
    const said = hookSaid(r).join(" ").trim();
    const adds = Object.values(real).filter((c) => c !== null).length;
    const dels = Object.values(real).length - adds;
    return {
      commit,
      published: /^(published|already published)/.test(said),
      said,
      summary: `${adds} written, ${dels} deleted`,
    };
  }
}

function report(): void {
  const min = ((Date.now() - t0) / 60_000).toFixed(1);
  console.log(`\n## Soak report (${min} min, seed ${SEED})\n`);
  console.log(
    `Convergence checks: **${checksPassed} of ${hostChecks} passed** ` +
      `(${checkRounds} rounds × ${SERVERS.length + CRON.length + WATCH.length} hosts), ` +
      `${divergences.length} divergences.\n`,
  );
  console.log("| action | times |\n|---|--:|");
  for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1])) console.log(`| ${k} | ${v} |`);
  console.log("\n| client run exit | runs |\n|---|--:|");
  for (const [k, v] of [...clientExits].sort((a, b) => a[0] - b[0])) {
    console.log(`| ${k} | ${v} |`);
  }
  if (unexpected.length) {
    console.log("\nUnexpected results:\n");
    for (const u of unexpected.slice(0, 20)) {
      console.log(`- ${u.replaceAll("\n", " ").slice(0, 400)}`);
    }
  }
  if (divergences.length) {
    console.log("\nDivergences:\n");
    for (const d of divergences) {
      console.log(
        `- check ${d.check}: **${d.host}** holds ${d.marker}, want ${d.expected}: ` +
          d.paths.slice(0, 10).join("; ") +
          `\n  faults since the last check: ${d.faults.join("; ") || "none"}`,
      );
    }
  } else {
    console.log("\nNo divergence.");
  }
}

if (import.meta.main) await main();
