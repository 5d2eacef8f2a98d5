// rsync command lines, built and read: the arguments each job gets, the
// --stats and exit codes read back, a failure told in one bounded line, and
// real local runs of the installed rsync for what the counts say.
import assert from "node:assert/strict";
import {
  describeRsyncFailure,
  parseStats,
  requireRsync,
  rsyncArgs,
  rsyncExitMeaning,
  runRsync,
  writeFileList,
} from "./rsync.ts";
import { EnvironmentError } from "../core/mod.ts";

const BASE = ["-a", "--no-D", "--sockopts=TCP_NODELAY", "--stats"];

Deno.test("rsyncArgs: the fixed options, the timeout in whole seconds, source and dest last", () => {
  assert.deepEqual(rsyncArgs({ source: "/srv/t/", dest: "/tmp/d/", timeout: 30_000 }), [
    ...BASE,
    "--timeout=30",
    "--modify-window=-1",
    "/srv/t/",
    "/tmp/d/",
  ]);
  const timeout = (ms: number) => rsyncArgs({ source: "a", dest: "b", timeout: ms })[4];
  assert.equal(timeout(0), "--timeout=1", "0 would mean no timeout at all");
  assert.equal(timeout(1), "--timeout=1");
  assert.equal(timeout(1001), "--timeout=2");
});

Deno.test("rsyncArgs: connect timeout and source address only towards a daemon", () => {
  const job = { timeout: 5000, connectTimeout: 2500, address: "10.0.0.2" };
  const local = rsyncArgs({ ...job, source: "/a/", dest: "/b/" });
  assert.ok(!local.some((a) => /^--(contimeout|address)/.test(a)), local.join(" "));
  for (
    const [source, dest] of [
      ["/a/", "rsync://apps@10.0.0.3:873/t-push/"],
      ["rsync://10.0.0.3/t/", "/b/"],
      ["10.0.0.3::t/", "/b/"],
    ]
  ) {
    const a = rsyncArgs({ ...job, source, dest });
    assert.ok(a.includes("--contimeout=3") && a.includes("--address=10.0.0.2"), a.join(" "));
  }
});

Deno.test("rsyncArgs: every option of a job, in order, before source and dest", () => {
  const a = rsyncArgs({
    source: "/srv/t/",
    dest: "rsync://apps@10.0.0.3:873/t-push/",
    timeout: 30_000,
    passwordFile: "/etc/fanout/rsync.password",
    delete: true,
    deleteDelay: true,
    delayUpdates: true,
    maxDelete: 0,
    dryRun: true,
    itemize: true,
    checksum: true,
    sparse: true,
    exactTimes: false,
    backupDir: "/b",
    linkDest: "/l",
    tempDir: ".fanout-tmp",
    progress: true,
    filesFrom: "/state/files",
    excludes: ["*.tmp", "/.git"],
    extra: ["--bwlimit=1000"],
  });
  assert.deepEqual(a, [
    ...BASE,
    "--timeout=30",
    "--password-file=/etc/fanout/rsync.password",
    "--delete-delay",
    "--delay-updates",
    "--max-delete=0",
    "--dry-run",
    "--itemize-changes",
    "--out-format=%i %n",
    "--checksum",
    "--sparse",
    "--backup",
    "--backup-dir=/b",
    "--link-dest=/l",
    "--temp-dir=.fanout-tmp",
    "--info=progress2",
    "--from0",
    "--files-from=/state/files",
    "--exclude=*.tmp",
    "--exclude=/.git",
    "--bwlimit=1000",
    "/srv/t/",
    "rsync://apps@10.0.0.3:873/t-push/",
  ]);
  assert.ok(!a.some((x) => x.startsWith("--modify-window")), "exactTimes: false drops it");
  const plain = rsyncArgs({ source: "a", dest: "b", timeout: 1000, delete: true });
  assert.ok(plain.includes("--delete") && !plain.includes("--delete-delay"));
  const noDelete = rsyncArgs({ source: "a", dest: "b", timeout: 1000, deleteDelay: true });
  assert.ok(!noDelete.some((x) => x.startsWith("--delete")), "deleteDelay alone deletes nothing");
});

Deno.test("parseStats: rsync's --stats block, thousands separators and all; null without it", () => {
  const lines = [
    "Number of files: 1,204 (reg: 1,000, dir: 204)",
    "Number of created files: 3 (reg: 3)",
    "Number of deleted files: 2 (reg: 2)",
    "Number of regular files transferred: 5",
    "Total file size: 12,345,678 bytes",
    "Total transferred file size: 4,096 bytes",
    "Literal data: 4,096 bytes",
    "Total bytes sent: 5,000",
    "Total bytes received: 321",
  ];
  assert.deepEqual(parseStats(lines), {
    files: 1204,
    created: 3,
    deleted: 2,
    transferred: 5,
    totalSize: 12_345_678,
    transferredSize: 4096,
    bytesSent: 5000,
    bytesReceived: 321,
  });
  assert.equal(parseStats([]), null);
  assert.equal(parseStats(["sending incremental file list", "x".repeat(100_000)]), null);
  assert.equal(parseStats(["  Number of files: 9"]), null, "only at a line's start");
});

Deno.test("rsyncExitMeaning: rsync's codes in words; signals; unknown ones", () => {
  assert.equal(rsyncExitMeaning(30), "timeout in data send/receive");
  assert.equal(rsyncExitMeaning(23), "partial transfer due to error");
  assert.equal(rsyncExitMeaning(25), "the --max-delete limit stopped deletions");
  assert.equal(rsyncExitMeaning(137), "killed by signal 9");
  assert.equal(rsyncExitMeaning(99), "unknown error");
});

Deno.test("describeRsyncFailure: the daemon's @ERROR first, else the most telling line", () => {
  assert.equal(
    describeRsyncFailure({
      code: 5,
      stderr: "some noise\n@ERROR: auth failed on module t-push\n" +
        "rsync error: error starting client-server protocol (code 5) at main.c(1863) [sender=3.2.7]",
    }),
    "rsync exit 5 (error starting the client-server protocol): @ERROR: auth failed on module t-push",
  );
  assert.equal(
    describeRsyncFailure({
      code: 10,
      stderr: "opening tcp connection\n" +
        "rsync: [sender] failed to connect to 10.0.0.3 (10.0.0.3): Connection refused (111)\n",
    }),
    "rsync exit 10 (error in socket I/O): rsync: [sender] failed to connect to 10.0.0.3 (10.0.0.3): Connection refused (111)",
  );
  assert.equal(
    describeRsyncFailure({ code: 23, stderr: "rsync: link_stat x (code 23) at main.c(1)" }),
    "rsync exit 23 (partial transfer due to error): rsync: link_stat x",
  );
  assert.equal(
    describeRsyncFailure({ code: 30, stderr: "" }),
    "rsync exit 30 (timeout in data send/receive)",
  );
  assert.equal(
    describeRsyncFailure({ code: 12, stderr: "rsync error: only this\n" }),
    "rsync exit 12 (error in the rsync protocol data stream)",
  );
});

Deno.test("describeRsyncFailure: a daemon's words reach the message without control characters, bounded", () => {
  const said = describeRsyncFailure({
    code: 5,
    stderr: `@ERROR: go away\x1b[2J${
      "x".repeat(10_000)
    }\nrsync error: error starting client-server protocol (code 5) at main.c(1863)`,
  });
  assert.ok(
    said.startsWith(
      "rsync exit 5 (error starting the client-server protocol): @ERROR: go away?[2J",
    ),
    said,
  );
  assert.ok(said.length < 700, `${said.length} characters`);
  assert.doesNotMatch(
    describeRsyncFailure({ code: 5, stderr: "@ERROR: a\x9bb\x7fc\x00d" }),
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f-\x9f]/,
  );
});

async function withTrees(fn: (src: string, dst: string, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "fanout-rsync-" });
  try {
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    await Deno.mkdir(`${dir}/dst`);
    await fn(`${dir}/src`, `${dir}/dst`, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runRsync: a real local run: exit 0, stats, created and deleted counted", async () => {
  await withTrees(async (src, dst) => {
    await Deno.writeTextFile(`${src}/a.txt`, "a\n");
    await Deno.writeTextFile(`${src}/sub/b.txt`, "b\n");
    await Deno.writeTextFile(`${dst}/stale.txt`, "old\n");
    const job = {
      source: `${src}/`,
      dest: `${dst}/`,
      timeout: 10_000,
      delete: true,
      itemize: true,
    };
    const r = await runRsync(rsyncArgs(job));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.deleted, 1);
    assert.equal(r.created, 3, r.items.join("\n")); // a.txt, sub/, sub/b.txt
    assert.ok(r.items.some((l) => l.endsWith(" sub/b.txt")), r.items.join("\n"));
    assert.equal(r.stats?.files, 4); // ., a.txt, sub, sub/b.txt
    assert.equal(await Deno.readTextFile(`${dst}/sub/b.txt`), "b\n");
    // Again: nothing to do, and the lines need not be kept to be counted.
    await Deno.writeTextFile(`${dst}/stale2.txt`, "old\n");
    const again = await runRsync(rsyncArgs(job), { keepItems: false });
    assert.deepEqual([again.code, again.created, again.deleted, again.items], [0, 0, 1, []]);
  });
});

Deno.test("writeFileList: any name but one with a NUL travels to rsync as it is", async () => {
  await withTrees(async (src, dst, dir) => {
    const names = ["plain.txt", "sp ace.txt", "new\nline.txt", "-rf", "*?[x]", "tab\t.txt"];
    for (const n of [...names, "not-listed.txt"]) await Deno.writeTextFile(`${src}/${n}`, n);
    await writeFileList(`${dir}/list`, names);
    const r = await runRsync(
      rsyncArgs({ source: `${src}/`, dest: `${dst}/`, timeout: 10_000, filesFrom: `${dir}/list` }),
    );
    assert.equal(r.code, 0, r.stderr);
    const got = [];
    for await (const e of Deno.readDir(dst)) got.push(e.name);
    assert.deepEqual(got.sort(), [...names].sort());
  });
});

Deno.test("runRsync: a failing run returns its code and stderr, bounded; it does not throw", async () => {
  await withTrees(async (_src, dst, dir) => {
    const r = await runRsync(
      rsyncArgs({ source: `${dir}/missing/`, dest: `${dst}/`, timeout: 5000 }),
    );
    assert.equal(r.code, 23);
    assert.match(r.stderr, /missing/);
    assert.ok(r.stderr.length <= 4096);
    assert.match(describeRsyncFailure(r), /^rsync exit 23 \(partial transfer due to error\): /);
  });
});

Deno.test("runRsync: a missing binary is an EnvironmentError saying how to install rsync", async () => {
  await assert.rejects(
    runRsync(["--version"], { rsync: "/nonexistent/rsync" }),
    (e) =>
      e instanceof EnvironmentError &&
      /rsync is not installed .*apt-get install rsync/.test(e.message),
  );
});

Deno.test("runRsync: the program spawned leads its own session and process group, as the pid spawned, and an abort stops the group", async () => {
  const ac = new AbortController();
  let pid = 0;
  const run = runRsync(["-c", "sleep 30 & wait"], {
    rsync: "sh",
    signal: ac.signal,
    onSpawn: (p) => pid = p,
  });
  let stat: string[] = [];
  let sleeper = 0;
  for (let i = 0; i < 100 && !sleeper; i++) {
    await new Promise((r) => setTimeout(r, 20));
    stat = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(") ")[1].split(" ");
    sleeper = Number((await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`)).trim());
  }
  // Fields after the name: state, ppid, pgrp, session.
  assert.equal(Number(stat[2]), pid, "process group");
  assert.equal(Number(stat[3]), pid, "session");
  assert.equal(Number(stat[1]), Deno.pid, "fanout's child");
  ac.abort();
  const r = await run;
  assert.notEqual(r.code, 0);
  // The group's other member stopped too.
  const alive = () => {
    try {
      return Deno.readTextFileSync(`/proc/${sleeper}/stat`).split(") ")[1][0] !== "Z";
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(), false, "sleep stopped with its group");
});

Deno.test("requireRsync: the installed rsync's version", async () => {
  assert.match(await requireRsync(), /^\d+\.\d+\.\d+$/);
});

Deno.test("requireRsync: each path is checked on its own, not answered from another's check", async () => {
  const version = await requireRsync("rsync");
  assert.equal(await requireRsync("/usr/bin/rsync"), version);
  await assert.rejects(
    requireRsync("/nonexistent/rsync"),
    (e) => e instanceof EnvironmentError && /no "\/nonexistent\/rsync" on PATH/.test(e.message),
  );
  // echo prints "--version" back: a program, but no rsync.
  await assert.rejects(requireRsync("echo"), /echo --version printed no version: is it rsync\?/);
  assert.equal(await requireRsync("rsync"), version, "the good answer stays");
});
