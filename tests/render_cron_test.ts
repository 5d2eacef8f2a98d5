// `fanout render cron`: a valid /etc/cron.d file whose command survives cron and sh intact.
import assert from "node:assert/strict";
import { sh, withLab } from "./_helpers.ts";

const RANGES: [number, number][] = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 7]];

/** Checks /etc/cron.d syntax; returns the job lines as [fields, user, command]. */
function parseCronD(text: string): { time: string[]; user: string; command: string }[] {
  assert.ok(text.endsWith("\n"), "cron ignores a last line without a newline");
  const jobs = [];
  for (const [i, line] of text.slice(0, -1).split("\n").entries()) {
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    if (/^[A-Za-z_][A-Za-z0-9_]*\s*=/.test(line)) continue;
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(line);
    assert.ok(m, `line ${i + 1} is neither a comment, a variable nor a job: ${line}`);
    const time = m.slice(1, 6);
    time.forEach((field, k) => {
      for (const part of field.split(",")) {
        const p = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
        assert.ok(p, `line ${i + 1}: bad time field "${field}"`);
        for (const n of [p[2], p[3]].filter(Boolean).map(Number)) {
          assert.ok(n >= RANGES[k][0] && n <= RANGES[k][1], `line ${i + 1}: ${n} out of range`);
        }
      }
    });
    assert.match(m[6], /^[a-z_][a-z0-9_-]*\$?$/, `line ${i + 1}: bad user "${m[6]}"`);
    assert.doesNotMatch(m[7], /(^|[^\\])%/, `line ${i + 1}: an unescaped % ends the command`);
    jobs.push({ time, user: m[6], command: m[7] });
  }
  return jobs;
}

/** What cron does to a command before sh sees it, then sh's word splitting. */
async function argvOf(command: string): Promise<string[]> {
  const unescaped = command.replaceAll("\\%", "%");
  const r = await sh("/bin/sh", ["-c", `set -- ${unescaped}; for a; do printf '%s\\n' "$a"; done`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.slice(0, -1).split("\n");
}

Deno.test("render cron: a valid cron.d file running the client every minute", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], client: { dest: "/apps/dat/plugins", user: "apps" } });
    const r = await lab.run(["render", "cron", "-c", lab.fleetFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^# Rendered by fanout \S+ from .*fanout\.yaml; do not edit, re-render\.\n/,
    );
    const jobs = parseCronD(r.stdout);
    assert.equal(jobs.length, 1);
    assert.deepEqual(jobs[0].time, ["*", "*", "*", "*", "*"]);
    assert.equal(jobs[0].user, "apps");
    assert.deepEqual(await argvOf(jobs[0].command), [
      "/usr/local/bin/fanout",
      "--role",
      "client",
      "-c",
      lab.fleetFile,
    ]);
    assert.match(r.stdout, /splay \(below 30s\)/);
    assert.match(r.stdout, /^SHELL=\/bin\/sh$/m);
  });
});

Deno.test("render cron: odd paths and flags survive cron's % and the shell", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], client: { dest: "/apps/dat/plugins" } });
    const bin = "/opt/fan out/50%/fan'out";
    const r = await lab.run([
      "render",
      "cron",
      "--role",
      "client",
      "-c",
      lab.fleetFile,
      "--name",
      "web 7",
      "--set",
      `binary=${bin}`,
      "--splay",
      "10s",
      "--dest",
      "/apps/dat/100%",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [job] = parseCronD(r.stdout);
    assert.equal(job.user, "root");
    assert.deepEqual(await argvOf(job.command), [
      bin,
      "--role",
      "client",
      "-c",
      lab.fleetFile,
      "--name",
      "web 7",
      "--set",
      "client.dest=/apps/dat/100%",
      "--set",
      "client.splay=10s",
      "--set",
      `binary=${bin}`,
    ]);
  });
});

Deno.test("render cron: other roles and fleets without a client dest are refused", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const noDest = await lab.run(["render", "cron", "-c", lab.fleetFile]);
    assert.equal(noDest.code, 2);
    assert.match(noDest.stderr, /render cron: the fleet file has no client\.dest/);
    const replica = await lab.run(["render", "cron", "--role", "replica", "-c", lab.fleetFile]);
    assert.equal(replica.code, 2);
    assert.match(replica.stderr, /render cron is for --role client/);
  });
});
