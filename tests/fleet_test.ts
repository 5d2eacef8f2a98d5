// The whole fleet as a system: one fleet file, every role started through the
// CLI on loopback aliases (git server with the rendered hook, primary, three
// replicas with one behind a relay, proxy, clients), and faults no single
// role's tests cover: a replica killed behind the proxy, a flood of
// connections at it, secrets in the wrong mode. Every test ends with every
// host holding exactly a commit's tree and no process left behind. More of the
// whole fleet is in tests/whole_fleet_*_test.ts.
import assert from "node:assert/strict";
import { assertSameTree, rsync, waitFor } from "./_helpers.ts";
import {
  assertNothingLeft,
  bigFiles,
  fleetLab,
  git,
  hookSaid,
  onOneFleet,
  smallTree,
  Topology,
} from "./_fleet.ts";
import { floodFrom } from "./_flood.ts";

/** Pushes retry fast here: a replica that returns catches up within a second. */
const FAST_RETRY = { retry_min: "200ms", retry_max: "1s" };

/** One client run, timed. */
interface TimedRun {
  client: string;
  start: number;
  end: number;
  code: number;
  stderr: string;
}

Deno.test("fault: a replica killed behind the proxy while clients pull: no client run fails; a flood of 2,000 connections from one address at the proxy breaks no transfer in progress and locks no client out", async (ctx) => {
  // The flood starts where the kill ends: every server back in the proxy's rotation.
  await onOneFleet(ctx, { push: FAST_RETRY, clients: ["c1", "c2", "c3"] }, [
    ["a replica killed behind the proxy while clients pull: no client run fails", replicaKilled],
    [
      "a flood of 2,000 connections from one address at the proxy breaks no transfer in progress and locks no client out",
      flood,
    ],
  ]);
});

/** A replica of `t` dies while its clients pull through the proxy: no client run fails. */
async function replicaKilled(t: Topology): Promise<void> {
  const v1 = await t.publish({ ...smallTree(1500, "v1"), "lib/util.php": "<?php // v1\n" });
  await t.converged(v1, { clients: [] });

  const runs: TimedRun[] = [];
  let stop = false;
  const loops = t.clients.map(async (client) => {
    while (!stop) {
      const start = Date.now();
      const r = await t.runClient(client);
      runs.push({ client, start, end: Date.now(), code: r.code, stderr: r.stderr });
    }
  });
  // Every client has finished a run started after `since`: they keep pulling.
  const eachRanSince = (since: number) => () =>
    t.clients.every((c) => runs.some((r) => r.client === c && r.start > since));
  await waitFor("every client pulling", eachRanSince(0), 30_000);
  // The host dies: its fanout and its rsync daemon, with the pulls it was serving.
  const killedAt = Date.now();
  await t.killServer("rsync2");
  await waitFor("rsync2 out of rotation", async () => {
    return !(await t.proxyStatus()).rotation.includes("rsync2");
  });
  // A new version while it is down reaches the clients from the others.
  const v2 = await t.publish({ "lib/util.php": "<?php // v2\n", "src/m1/f1.php": null });
  await waitFor("every client pulling after v2", eachRanSince(Date.now()), 30_000);
  stop = true;
  await Promise.all(loops);

  const failed = runs.filter((r) => r.code !== 0);
  assert.deepEqual(
    failed.map((r) => `${r.client} +${r.start - killedAt}ms: exit ${r.code} ${r.stderr}`),
    [],
    "no client run failed",
  );
  const interval = 200; // proxy.interval in the lab
  const after = runs.filter((r) => r.start > killedAt + interval);
  assert.ok(after.length >= t.clients.length, `runs after the kill: ${after.length}`);
  const during = runs.filter((r) => r.start < killedAt && r.end > killedAt);
  assert.ok(during.length > 0, "some runs were pulling when rsync2 died");
  const px = await t.proxyStatus();
  assert.equal(px.backends.find((b) => b.name === "rsync2")?.state, "down");

  // It comes back and catches up; every host ends at v2.
  await t.startServer("rsync2");
  await t.converged(v2);
  await waitFor("rsync2 back in rotation", async () => {
    return (await t.proxyStatus()).rotation.includes("rsync2");
  });
}

/**
 * One address opens 2,000 connections at `t`'s proxy: no transfer in progress
 * breaks, no client is locked out.
 */
async function flood(t: Topology): Promise<void> {
  const lab = t.lab;
  await bigFiles(t, 2, 16);
  const v1 = await t.publish({ ...smallTree(200, "v1") });
  await t.converged(v1, { clients: [] });
  const px = lab.hosts.proxy;
  const url = `rsync://${px.ip}:${px.port}/plugins/`;
  type Connections = {
    active: number;
    accepted: number;
    max_per_source: number;
    refused_max_connections_per_source: number;
  };
  const proxyStatus = async () =>
    (await t.proxyStatus()) as unknown as {
      connections: Connections;
      backends: { name: string; state: string }[];
    };

  // Transfers that last through the flood: slow pulls (--bwlimit).
  const slow = [0, 1].map((i) =>
    rsync(["-a", "--bwlimit=4m", url, `${lab.dir}/slow${i}/`]).then((r) => ({ i, ...r }))
  );
  await waitFor("the slow pulls under way", async () => {
    return (await proxyStatus()).connections.active >= 2;
  }, 20_000);

  // One host (not the clients' address) opens 2,000 connections and sends
  // nothing: it gets its share of slots, never a server, and the real
  // clients, started during the flood, are served.
  const before = (await proxyStatus()).connections.accepted;
  const flood = floodFrom(lab.ip(77), px, 2000);
  let during;
  try {
    assert.ok(flood.opened > 1000, flood.errors.join("; "));
    await waitFor("the flood accepted", async () => {
      return (await proxyStatus()).connections.accepted >= before + flood.opened;
    }, 30_000);
    const runs = await Promise.all(t.clients.map((c) => t.runClient(c)));
    runs.forEach((r, i) => {
      assert.deepEqual([r.code, r.stderr], [0, ""], `client ${t.clients[i]}`);
    });
    for (const c of t.clients) assert.equal(await t.divergence(t.dest(c), v1), "", c);
    during = await proxyStatus();
  } finally {
    flood.close();
  }
  const c = during.connections;
  assert.ok(c.refused_max_connections_per_source > 0, JSON.stringify(c));
  assert.ok(c.active <= c.max_per_source + 2 + t.clients.length, JSON.stringify(c));
  assert.deepEqual(
    during.backends.filter((b) => b.state !== "up").map((b) => b.name),
    [],
    "the flood took no backend out",
  );

  for (const r of await Promise.all(slow)) {
    assert.equal(r.code, 0, `slow pull ${r.i}: ${r.stderr}`);
    await assertSameTree(lab.hosts.rsync1.path, `${lab.dir}/slow${r.i}`);
  }
  await waitFor("the flood's connections gone", async () => {
    return (await proxyStatus()).connections.active === 0;
  }, 15_000);
  await t.converged(v1);
}

Deno.test("hostile: a fleet file with secrets in the wrong mode is refused by every role that needs them", async () => {
  await fleetLab(async (lab) => {
    // Each role refuses at start: nothing needs to run.
    const t = await Topology.prepare(lab, { clients: ["c1"] });
    const base = ["-c", t.fleetFile];
    const roles: Record<string, string[]> = {
      primary: ["--role", "primary", ...base],
      rsync2: ["--role", "replica", ...base, "--name", "rsync2"],
      rsync3: ["--role", "replica", ...base, "--name", "rsync3"], // a relay: it pushes too
      publish: ["--role", "publish", ...base, "--repo", t.repo.bare],
    };
    const cases: [file: string, key: string, needs: string[]][] = [
      [lab.secrets, "auth.secrets_file", ["primary", "rsync2", "rsync3"]],
      [lab.password, "auth.password_file", ["primary", "rsync3", "publish"]],
    ];
    for (const [file, key, needs] of cases) {
      for (const mode of [0o644, 0o640]) {
        await Deno.chmod(file, mode);
        try {
          // Each role alone refuses at start: they are asked at once.
          const refusals = await Promise.all(needs.map((name) => lab.run(roles[name])));
          for (const [i, name] of needs.entries()) {
            const r = refusals[i];
            assert.equal(r.code, 2, `${name} with ${key} mode ${mode.toString(8)}: ${r.stderr}`);
            const lines = r.stderr.trim().split("\n");
            assert.equal(lines.length, 1, `${name}: one line:\n${r.stderr}`);
            assert.match(
              lines[0],
              new RegExp(
                `^fanout: .*fanout\\.yaml: ${key.replace(".", "\\.")}: .* has mode ${
                  mode.toString(8)
                }, ${
                  mode === 0o640 ? "readable by group" : "readable by group and others"
                }; expected 600 or 400 \\(chmod 600 `,
              ),
            );
            assert.ok(!r.stderr.includes("lab-secret-1234"), "no secret in the message");
          }
          // The hook says why and keeps the push.
          if (needs.includes("publish")) {
            const c = await t.repo.commit({ "late.txt": `mode ${mode.toString(8)}\n` });
            const push = await t.repo.push();
            assert.equal(push.code, 0, push.stderr);
            assert.match(hookSaid(push)[0], /^fanout: not published \(exit 2\): .*password_file/);
            assert.equal(await git(t.repo.bare, "rev-parse", "main"), c);
          }
        } finally {
          await Deno.chmod(file, 0o600);
        }
        await assertNothingLeft(lab);
      }
    }
    // Roles that hold no secret do not care: the proxy starts, a client syncs.
    await Deno.chmod(lab.secrets, 0o644);
    await Deno.chmod(lab.password, 0o644);
    try {
      const proxy = await lab.proxy();
      assert.equal((await proxy.stop()).code, 0);
      // (Nothing serves now: the client fails, but for that reason, not for the secrets.)
      const client = await t.runClient("c1", ["--retries", "0"]);
      assert.equal(client.code, 3, client.stderr);
    } finally {
      await Deno.chmod(lab.secrets, 0o600);
      await Deno.chmod(lab.password, 0o600);
    }
    await assertNothingLeft(lab);
  });
});
