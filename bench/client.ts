// Benchmark: a client keeping a 10k-file tree current, three ways, in one run:
//
// - fanout client from a replica (as cron runs it: `fanout --role client`), with a
//   full tree comparison every run (the default) and with the version fast path
//   (`client.verify_every`);
// - fanout client of a signed fleet (`release.public_keys`) from a second
//   replica serving a signed release of the same tree (manifest, envelope,
//   marker, as a publish and a push leave them), in place with the default
//   settings (dest compared with the manifest every run, the stat record
//   vouching for unchanged files), and on the fast path;
// - `git pull` from a local `git daemon` (the setup fanout replaces);
// - plain `rsync -az --delete` from the same replica, as the hand-made cron line runs it
//   (no TCP_NODELAY on the client side), and with `--sockopts=TCP_NODELAY`.
//
// Measures a no-op sync (wall time, bytes on the wire, the CPU of the server it
// reads from: the rsync or git daemon with its per-connection children, and
// the fanout server process, which answers the clients' GET /version), a
// one-file change, and the bytes on the client's disk. Bytes on the wire are counted by a small TCP relay
// in this process, used only for those runs (timings go direct); a fanout
// client's health endpoint (client.notify) is relayed too for them.
//
//   deno run -A bench/client.ts [--quick]
//
// Prints a markdown table with ratios against git pull and against the plain
// rsync cron line, measured in the same run, and the server CPU of one version
// look alone (GET /version against a module listing).
import { parseArgs } from "node:util";
import { canConnect, cpuSeconds, Lab, sh, sleep, waitFor, writeTree } from "../tests/_helpers.ts";
import {
  exists,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  V8_FLAGS,
  VERSION_LOG,
  VERSION_MARKER,
} from "../lib/core/mod.ts";
import {
  appendEntry,
  formatMarker,
  newEntry,
  readMarker,
  stampMarker,
  VERSION_ANSWER_MAX_BYTES,
  type VersionMarker,
} from "../lib/version/mod.ts";
import { getOnce } from "../lib/http/mod.ts";
import {
  buildManifest,
  formatManifest,
  generateKeyPair,
  loadSigningKey,
  manifestDigest,
  RELEASE_SKIP,
  type SigningKey,
  signRelease,
  writePrivateKey,
} from "../lib/release/mod.ts";

const args = parseArgs({ args: Deno.args, options: { quick: { type: "boolean" } } });
const quick = args.values.quick ?? false;
const FILES = 10_000;
const NOOP_RUNS = quick ? 7 : 25;
const CHANGE_RUNS = quick ? 3 : 9;
const HISTORY = quick ? 10 : 40;
const ROOT = new URL("..", import.meta.url).pathname;
/** The signed fleet's cron client, in place with the default settings. */
const SIGNED_DEFAULT = "fanout client, signed (in place, default)";

async function main(): Promise<void> {
  const lab = await Lab.create();
  const children: Deno.ChildProcess[] = [];
  try {
    await lab.fleet({ replicas: ["rsync2", "rsync3"] });
    const r2 = lab.hosts.rsync2;
    const r3 = lab.hosts.rsync3; // the signed release of the same tree
    const pair = await generateKeyPair();
    await writePrivateKey(`${lab.dir}/release.key`, pair.privatePem);
    const key = await loadSigningKey(`${lab.dir}/release.key`);
    // A signed fleet's clients trust the key; nothing else differs.
    const signedFleet = `${lab.dir}/fanout-signed.yaml`;
    await Deno.writeTextFile(
      signedFleet,
      `${await Deno.readTextFile(
        lab.fleetFile,
      )}release:\n  public_keys: [${pair.publicKey.text}]\n`,
    );
    const work = `${lab.dir}/work`; // the developers' repository
    const bare = `${lab.dir}/git/plugins.git`;
    console.error(`building a ${FILES}-file tree…`);
    await makeTree(work);
    await git(work, "init", "-q", "-b", "main");
    await git(work, "add", "-A");
    await git(work, "commit", "-qm", "initial");
    // Some history, as a real repository has: each commit reworks 500 files.
    for (let h = 0; h < HISTORY; h++) {
      for (let i = h * 500; i < h * 500 + 500; i++) {
        const f = `${work}/src/mod${(i % FILES) % 50}/file${i % FILES}.ts`;
        const text = (await Deno.readTextFile(f)).replaceAll("input", `input${h}`);
        await Deno.writeTextFile(f, `// rev ${h}\n` + text);
      }
      await git(work, "commit", "-qam", `rework ${h}`);
    }
    await sh("git", ["clone", "-q", "--bare", work, bare]);
    await git(work, "remote", "add", "origin", bare);
    // The replica holds the same tree, exported without .git, plus its marker.
    await sh("rsync", ["-a", "--exclude=.git", `${work}/`, `${r2.path}/`]);
    await sh("rsync", ["-a", "--exclude=.git", `${work}/`, `${r3.path}/`]);
    let seq = 1;
    await writeMarker(r2.path, seq);
    await writeMarker(r3.path, seq, (v) => writeRelease(r3.path, v, key));
    const serverProcs = {
      replica: await lab.server("replica", "rsync2"),
      signed: await lab.server("replica", "rsync3"),
    };

    const gitIp = lab.ip(40);
    const gitPort = lab.port(gitIp);
    const daemon = new Deno.Command("git", {
      args: [
        "daemon",
        "--reuseaddr",
        "--export-all",
        `--base-path=${lab.dir}/git`,
        `--listen=${gitIp}`,
        `--port=${gitPort}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
    children.push(daemon);
    await waitFor("git daemon", () => canConnect(gitIp, gitPort));
    // `git daemon` runs git-daemon as its child, which forks one per connection and reaps it.
    const gitDaemon = Number(
      (await Deno.readTextFile(`/proc/${daemon.pid}/task/${daemon.pid}/children`)).split(" ")[0],
    ) || daemon.pid;

    const relay = new CountingRelay(lab.ip(41));
    const relayFor = async (host: string, port: number) => await relay.add(host, port);
    const rsyncUrl = (at: { host: string; port: number }) =>
      `rsync://${at.host}:${at.port}/plugins/`;
    const gitUrl = (at: { host: string; port: number }) =>
      `git://${at.host}:${at.port}/plugins.git`;
    const direct = {
      replica: { host: r2.ip, port: r2.port },
      signed: { host: r3.ip, port: r3.port },
      git: { host: gitIp, port: gitPort },
    };
    const counted = {
      replica: await relayFor(r2.ip, r2.port),
      signed: await relayFor(r3.ip, r3.port),
      git: await relayFor(gitIp, gitPort),
    };
    // Direct runs find their notify endpoint by the source (the fleet's server);
    // counted runs name the relay of it.
    const countedHealth = {
      replica: await relayFor(r2.ip, r2.health),
      signed: await relayFor(r3.ip, r3.health),
    };

    const gitDest = `${lab.dir}/clients/git`;
    await sh("git", ["clone", "-q", gitUrl(direct.git), gitDest]);
    const dests = {
      fanout: `${lab.dir}/clients/fanout`,
      fast: `${lab.dir}/clients/fanout-fast`,
      fastBundle: `${lab.dir}/clients/fanout-fast-bundle`,
      signed: `${lab.dir}/clients/fanout-signed`,
      signedBundle: `${lab.dir}/clients/fanout-signed-bundle`,
      signedFast: `${lab.dir}/clients/fanout-signed-fast`,
      rsync: `${lab.dir}/clients/rsync`,
      rsyncNodelay: `${lab.dir}/clients/rsync-nodelay`,
    };

    // What ships where the binary cannot be built: the bundle, run by its
    // shebang's flags (compile.sh --print-run-flags).
    console.error("building the bundle…");
    const built = await lab.bundle();
    const source = ["-A", "--quiet", `--v8-flags=${V8_FLAGS}`, `--config=${ROOT}deno.json`];
    const bundle = ["--quiet", ...built.flags];

    // The server each tool reads from, for its CPU: the daemons' (their
    // per-connection children included) and the fanout server's own.
    const pidOf = async (r: string) =>
      Number(await Deno.readTextFile(`${lab.dir}/state/${r}/rsyncd.pid`));
    const servers = {
      replica: { daemon: await pidOf("rsync2"), fanout: serverProcs.replica.pid },
      signed: { daemon: await pidOf("rsync3"), fanout: serverProcs.signed.pid },
    };
    type Tool = { name: string; run: (counted: boolean) => Promise<void>; server: Server };
    const fanout = (
      name: string,
      dest: string,
      extra: string[] = [],
      from = "source",
      signed = false,
    ) =>
    (c: boolean) =>
      runOk(Deno.execPath(), [
        "run",
        ...(from === "bundle" ? [...bundle, built.path] : [...source, `${ROOT}main.ts`]),
        "--role",
        "client",
        "-c",
        signed ? signedFleet : lab.fleetFile,
        "--name",
        name,
        "--no-splay",
        "--source",
        rsyncUrl(
          signed ? (c ? counted.signed : direct.signed) : (c ? counted.replica : direct.replica),
        ),
        ...(c ? ["--notify", hostPort(signed ? countedHealth.signed : countedHealth.replica)] : []),
        "--dest",
        dest,
        ...extra,
      ]);
    const tools: Tool[] = [
      {
        name: "fanout client (full verify, default)",
        run: fanout("bench", dests.fanout),
        server: servers.replica,
      },
      {
        name: "fanout client (fast path, verify_every=1h)",
        run: fanout("bench-fast", dests.fast, ["--verify-every", "1h"]),
        server: servers.replica,
      },
      {
        name: "fanout client (fast path, the bundle dist/fanout.js)",
        run: fanout("bench-bundle", dests.fastBundle, ["--verify-every", "1h"], "bundle"),
        server: servers.replica,
      },
      {
        name: SIGNED_DEFAULT,
        run: fanout("bench-signed", dests.signed, [], "source", true),
        server: servers.signed,
      },
      {
        name: `${SIGNED_DEFAULT}, the bundle`,
        run: fanout("bench-signed-bundle", dests.signedBundle, [], "bundle", true),
        server: servers.signed,
      },
      {
        name: "fanout client, signed (fast path, verify_every=1h, the bundle)",
        run: fanout(
          "bench-signed-fast",
          dests.signedFast,
          ["--verify-every", "1h"],
          "bundle",
          true,
        ),
        server: servers.signed,
      },
      {
        name: "git pull (git daemon)",
        server: { daemon: gitDaemon },
        run: (c) =>
          runOk("git", [
            "-C",
            gitDest,
            "pull",
            "-q",
            "--ff-only",
            gitUrl(c ? counted.git : direct.git),
            "main",
          ]),
      },
      {
        name: "rsync -az --delete (hand-made cron line)",
        server: servers.replica,
        run: (c) =>
          runOk("rsync", [
            "-az",
            "--delete",
            rsyncUrl(c ? counted.replica : direct.replica),
            `${dests.rsync}/`,
          ]),
      },
      {
        name: "rsync -az --delete + TCP_NODELAY",
        server: servers.replica,
        run: (c) =>
          runOk("rsync", [
            "-az",
            "--delete",
            "--sockopts=TCP_NODELAY",
            rsyncUrl(c ? counted.replica : direct.replica),
            `${dests.rsyncNodelay}/`,
          ]),
      },
    ];

    console.error("first syncs…");
    for (const t of tools) await t.run(false);
    // The fast path needs one verified run on record; the first sync is one.

    const noop = new Map<string, number[]>();
    const noopCpu = new Map<string, number[]>();
    console.error(`no-op syncs (${NOOP_RUNS} rounds)…`);
    for (let i = 0; i < NOOP_RUNS; i++) {
      // Interleaved, so load from elsewhere on the machine hits every tool alike.
      for (const t of tools) {
        const cpu0 = serverCpu(t.server);
        push(noop, t.name, await timed(() => t.run(false)));
        // The daemon reaps its connection's child (and adds its CPU) when it exits.
        await sleep(20);
        push(noopCpu, t.name, (serverCpu(t.server) - cpu0) * 1000);
      }
    }
    const look = await versionLookCpu(r2, servers.replica);
    const noopBytes = new Map<string, number>();
    for (const t of tools) noopBytes.set(t.name, await relay.measure(() => t.run(true)));

    const change = new Map<string, number[]>();
    const changeBytes = new Map<string, number>();
    console.error(`one-file changes (${CHANGE_RUNS} rounds)…`);
    for (let i = 0; i < CHANGE_RUNS; i++) {
      // One file edited and published: a commit on the git server, the same
      // edit on the replica with the version log entry and the next marker,
      // as a publish and a push leave them (lib/publish/_marker.ts writes the entry
      // with the same functions, from rsync's list of what it sent).
      const file = `src/mod${i % 50}/file${i}.ts`;
      const text = `// edit ${i}\n` + await Deno.readTextFile(`${work}/${file}`);
      await Deno.writeTextFile(`${work}/${file}`, text);
      await git(work, "commit", "-qam", `edit ${i}`);
      await git(work, "push", "-q", "origin", "main");
      seq++;
      for (const r of [r2, r3]) {
        await Deno.writeTextFile(`${r.path}/${file}`, text);
        const from = readMarker(r.path);
        const signed = r === r3;
        const to = await writeMarker(r.path, seq, async (v) => {
          const log = await Deno.readTextFile(`${r.path}/${VERSION_LOG}`).catch(() => "");
          const entry = newEntry(from, v, { paths: [file], deleted: [] });
          await Deno.writeTextFile(`${r.path}/${VERSION_LOG}`, appendEntry(log, entry));
          if (signed) await writeRelease(r.path, v, key);
        });
        // Timed from when the replica announces it (its module comment), as a client sees it.
        await waitFor("the replica announces the version", async () => {
          const list = await sh("rsync", [`rsync://${r.ip}:${r.port}/`]);
          return list.stdout.includes(`seq=${to.seq} `);
        });
      }
      const last = i === CHANGE_RUNS - 1;
      for (const t of tools) {
        if (last) changeBytes.set(t.name, await relay.measure(() => t.run(true)));
        else push(change, t.name, await timed(() => t.run(false)));
      }
    }

    for (const [name, dest] of Object.entries(dests)) {
      const d = await Deno.readTextFile(`${dest}/src/mod0/file0.ts`);
      if (d !== await Deno.readTextFile(`${work}/src/mod0/file0.ts`)) {
        throw new Error(`${name} did not converge`);
      }
    }
    const disk = {
      gitWith: await du(gitDest),
      gitWithout: await du(gitDest, [".git"]),
      fanout: await du(dests.fanout),
    };

    // ---- report
    const gitName = tools.find((t) => t.name.startsWith("git pull"))!.name;
    const rsyncName = tools.find((t) => t.name.startsWith("rsync -az --delete (hand"))!.name;
    // The targets are judged on fanout's best way to run: unsigned, and a
    // signed fleet's default (in place, verify_every 0).
    const ours = tools.filter((t) => t.name.startsWith("fanout client (")).map((t) => t.name);
    const signedDefault = tools.filter((t) => t.name.startsWith(SIGNED_DEFAULT)).map((t) => t.name);
    const bestOf = (names: string[], m: Map<string, number[]>) =>
      Math.min(...names.map((n) => med(m, n)));
    const best = (m: Map<string, number[]>) => bestOf(ours, m);
    const med = (m: Map<string, number[]>, n: string) => median(m.get(n) ?? []);
    const rows: string[] = [];
    const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : "–");
    rows.push(
      "| client | no-op sync (median) | vs git pull | vs rsync | no-op bytes on the wire | server CPU per no-op (mean) | one-file change (median) | vs git pull | vs rsync | one-file change bytes |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const t of tools) {
      const n = med(noop, t.name);
      const c = med(change, t.name);
      rows.push(
        `| ${t.name} | ${n.toFixed(1)} ms | ${ratio(n, med(noop, gitName))} | ${
          ratio(n, med(noop, rsyncName))
        } | ${fmtBytes(noopBytes.get(t.name)!)} | ${mean(noopCpu.get(t.name)!).toFixed(1)} ms | ${
          c.toFixed(1)
        } ms | ${ratio(c, med(change, gitName))} | ${ratio(c, med(change, rsyncName))} | ${
          fmtBytes(changeBytes.get(t.name)!)
        } |`,
      );
    }
    rows.push(
      "",
      "| client's disk | bytes | vs git checkout |",
      "| --- | ---: | ---: |",
      `| git checkout (with .git) | ${fmtBytes(disk.gitWith)} | 1.00× |`,
      `| git checkout without .git | ${fmtBytes(disk.gitWithout)} | ${
        ratio(disk.gitWithout, disk.gitWith)
      } |`,
      `| fanout dest (no .git) | ${fmtBytes(disk.fanout)} | ${ratio(disk.fanout, disk.gitWith)} |`,
    );
    const noopTarget = best(noop) <= 0.5 * med(noop, gitName);
    const changeTarget = best(change) < med(change, gitName);
    const signedNoop = bestOf(signedDefault, noop) <= 0.5 * med(noop, gitName);
    const signedNoopBytes = Math.min(...signedDefault.map((n) => noopBytes.get(n)!)) <= 1024;
    const signedChange = bestOf(signedDefault, change) <= 0.5 * med(change, gitName);
    rows.push(
      "",
      `${FILES} files, ${fmtBytes(disk.gitWithout)}, ${
        HISTORY + 1
      } commits; ${NOOP_RUNS} no-op rounds, ${
        CHANGE_RUNS - 1
      } timed change rounds (+1 counted), interleaved; fanout runs as \`deno run\` of main.ts or of the bundle (start-up included).`,
      `Targets: no-op ≤ 0.5× git pull: ${noopTarget ? "met" : "NOT met"}; ` +
        `one-file change faster than git pull: ${changeTarget ? "met" : "NOT met"}; ` +
        `no .git on the client: ${await exists(`${dests.fanout}/.git`) ? "NOT met" : "met"}.`,
      `Signed targets (${SIGNED_DEFAULT}, best of main.ts and the bundle): ` +
        `no-op ≤ 0.5× git pull: ${signedNoop ? "met" : "NOT met"}; ` +
        `no-op ≤ 1 KiB on the wire: ${signedNoopBytes ? "met" : "NOT met"}; ` +
        `one-file version ≤ 0.5× git pull: ${signedChange ? "met" : "NOT met"}.`,
    );
    rows.push(
      `The version look alone, ${LOOKS} of each back to back, server CPU each: ` +
        `GET /version ${look.http.toFixed(2)} ms (the fanout server), a module listing ` +
        `${look.listing.toFixed(2)} ms (the rsync daemon and its child); the fanout server ` +
        `idles at ${look.idle.toFixed(2)} ms a second, counted in the no-op figures above.`,
    );
    console.log(rows.join("\n"));
    relay.close();
  } finally {
    for (const c of children) {
      try {
        Deno.kill(-c.pid, "SIGTERM");
      } catch { /* gone */ }
      await c.status;
    }
    await lab.close();
  }
}

// ---------------------------------------------------------------------------

/** A server's processes: its daemon, and fanout's own process where fanout serves. */
interface Server {
  daemon: number;
  fanout?: number;
}

/**
 * The CPU seconds a server has used: its daemon's with the per-connection
 * children it reaped (in clock ticks, 10 ms), and the fanout process's to
 * the nanosecond (its threads' schedstat), where a GET /version costs well
 * under a tick.
 */
function serverCpu(s: Server): number {
  return cpuSeconds(s.daemon) + (s.fanout ? threadsCpuSeconds(s.fanout) : 0);
}

/** Version looks measured alone, each way. */
const LOOKS = 50;

/**
 * The server CPU of one version look without a client's start around it: a
 * cron client's GET /version (the fanout process answers it) and a module
 * listing (the daemon forks a child), {@linkcode LOOKS} of each; and what
 * the fanout server spends idle, per second, which the no-op rows include.
 */
async function versionLookCpu(
  at: { ip: string; port: number; health: number },
  server: Server,
): Promise<{ http: number; listing: number; idle: number }> {
  const ms = () => serverCpu(server) * 1000;
  let t0 = ms();
  await sleep(2000);
  const idle = (ms() - t0) / 2;
  t0 = ms();
  for (let i = 0; i < LOOKS; i++) {
    await getOnce(`http://${at.ip}:${at.health}/version`, 2000, VERSION_ANSWER_MAX_BYTES);
  }
  const http = (ms() - t0) / LOOKS;
  t0 = ms();
  for (let i = 0; i < LOOKS; i++) await sh("rsync", [`rsync://${at.ip}:${at.port}/`]);
  await sleep(20);
  const listing = (ms() - t0) / LOOKS;
  return { http, listing, idle };
}

/** The CPU seconds of `pid`'s threads, from /proc's schedstat (ns on a CPU). */
function threadsCpuSeconds(pid: number): number {
  let ns = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0]);
    } catch { /* the thread ended */ }
  }
  return ns / 1e9;
}

function hostPort(at: { host: string; port: number }): string {
  return `${at.host}:${at.port}`;
}

async function makeTree(dir: string): Promise<void> {
  const files: Record<string, string> = {};
  const line = "export const value = compute(input, options); // some code\n";
  for (let i = 0; i < FILES; i++) {
    // ~2.5 KB of text a file, in 50 modules of 20 dirs: a plugin tree.
    files[`src/mod${i % 50}/file${i}.ts`] = `// file ${i}\n` + line.repeat(30 + (i % 30));
  }
  files["README.md"] = "plugins\n";
  await writeTree(dir, files);
}

/**
 * Writes marker `seq` into `dir`, after `before` (the version log's entry,
 * the signed release) when given, with its publish time as its mtime, as a
 * publish and a push leave it. (Unstamped, the file's time may fall a clock
 * tick before the `published_at` taken just before it: the kernel stamps
 * files from a coarser clock. A client then takes its marker for one that
 * came after its tree's listing, and compares the tree twice every run.)
 */
async function writeMarker(
  dir: string,
  seq: number,
  before?: (v: VersionMarker) => Promise<void>,
): Promise<VersionMarker> {
  const v: VersionMarker = {
    seq,
    commit: seq.toString(16).padStart(40, "0"),
    ref: "main",
    published_at: new Date().toISOString(),
  };
  await before?.(v);
  await Deno.writeTextFile(`${dir}/${VERSION_MARKER}`, formatMarker(v));
  stampMarker(`${dir}/${VERSION_MARKER}`);
  return v;
}

/**
 * Writes the signed release of `dir`'s tree as version `v`: its manifest and
 * envelope, each renamed into place, as a publish and a push leave them (the
 * marker follows).
 */
async function writeRelease(dir: string, v: VersionMarker, key: SigningKey): Promise<void> {
  // As the publisher lists it: the server's temp dir is never content.
  const skip = [...RELEASE_SKIP, SERVER_TEMP_DIR];
  const manifest = formatManifest(await buildManifest(dir, { skip }));
  const envelope = await signRelease(
    { ...v, manifest_sha256: await manifestDigest(manifest) },
    key,
  );
  for (
    const [name, bytes] of [[RELEASE_MANIFEST, manifest], [RELEASE_ENVELOPE, envelope]] as const
  ) {
    await Deno.writeFile(`${dir}/${name}.tmp`, bytes);
    await Deno.rename(`${dir}/${name}.tmp`, `${dir}/${name}`);
  }
}

async function git(cwd: string, ...a: string[]): Promise<void> {
  const r = await sh("git", ["-c", "user.name=bench", "-c", "user.email=b@b", ...a], { cwd });
  if (r.code !== 0) throw new Error(`git ${a.join(" ")}: ${r.stderr}`);
}

async function runOk(cmd: string, a: string[]): Promise<void> {
  const r = await sh(cmd, a);
  if (r.code !== 0) throw new Error(`${cmd} ${a.join(" ")} exited ${r.code}: ${r.stderr}`);
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function push(m: Map<string, number[]>, k: string, v: number): void {
  m.set(k, [...(m.get(k) ?? []), v]);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function du(dir: string, exclude: string[] = []): Promise<number> {
  const r = await sh("du", ["-sb", ...exclude.map((x) => `--exclude=${x}`), dir]);
  return Number(r.stdout.split("\t")[0]);
}

function fmtBytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** A TCP relay that counts the bytes of every connection, both ways. */
class CountingRelay {
  #host: string;
  #listeners: Deno.Listener[] = [];
  #bytes = 0;
  #open = new Set<Promise<void>>();
  constructor(host: string) {
    this.#host = host;
  }

  /** Starts relaying a new local port to `host:port`; returns the local address. */
  add(host: string, port: number): Promise<{ host: string; port: number }> {
    const l = Deno.listen({ hostname: this.#host, port: 0 });
    this.#listeners.push(l);
    (async () => {
      for await (const conn of l) {
        const p = this.#pipe(conn, host, port);
        this.#open.add(p);
        p.finally(() => this.#open.delete(p));
      }
    })().catch(() => {});
    return Promise.resolve({ host: this.#host, port: (l.addr as Deno.NetAddr).port });
  }

  /** Bytes relayed while `fn` ran (and its connections drained). */
  async measure(fn: () => Promise<void>): Promise<number> {
    this.#bytes = 0;
    await fn();
    await Promise.all(this.#open);
    await sleep(10);
    return this.#bytes;
  }

  async #pipe(client: Deno.TcpConn, host: string, port: number): Promise<void> {
    const server = await Deno.connect({ hostname: host, port });
    client.setNoDelay(true);
    server.setNoDelay(true);
    const copy = async (from: Deno.TcpConn, to: Deno.TcpConn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          this.#bytes += n;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* reset */ }
      try {
        await to.closeWrite();
      } catch { /* closed */ }
    };
    await Promise.all([copy(client, server), copy(server, client)]);
    client.close();
    server.close();
  }

  close(): void {
    for (const l of this.#listeners) l.close();
  }
}

await main();
