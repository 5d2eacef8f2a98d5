// Client affinity end to end: two replicas holding different signed versions,
// both in the proxy's rotation (the lagging one within version_grace), and
// signed clients syncing through the proxy. A signed run makes several rsync
// connections (the version's listing, the release files, the files they
// name); each run must reach one server and apply one whole version, and a
// client held to a server that leaves the rotation moves to another one.
import assert from "node:assert/strict";
import {
  assertSameTree,
  clientArgs,
  http,
  type Lab,
  type Proc,
  waitFor,
  withLab,
} from "./_helpers.ts";
import { newKey, OURS, publish, V1, V2 } from "./_signed.ts";
import { parseMarker } from "../lib/version/mod.ts";

interface ProxyStatus {
  rotation: string[];
  affinity: { window: string; clients: number };
  backends: { name: string; connections: number; version: { seq: number } | null }[];
}

async function status(lab: Lab): Promise<ProxyStatus> {
  const px = lab.hosts.proxy;
  return JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
}

/** The connections the proxy has sent to each backend so far. */
async function connections(lab: Lab): Promise<Record<string, number>> {
  return Object.fromEntries((await status(lab)).backends.map((b) => [b.name, b.connections]));
}

Deno.test("proxy affinity: while the backends hold different versions, each signed client run reaches one of them and applies its version whole", async () => {
  await withLab(async (lab) => {
    const trusted = await newKey(lab, "release");
    await lab.fleet({
      replicas: ["rsync2", "rsync3"],
      publisher: false,
      // The lagging backend stays in rotation for the whole test; so does a client's backend.
      proxy: { backends: "[rsync2, rsync3]", version_grace: "1h", affinity: "1h" },
      client: { retries: 0 },
      extra: `release:\n  public_keys: ["${trusted.text}"]`,
    });
    // No primary runs: nothing pushes, each replica keeps the version written here.
    const seqOf: Record<string, number> = { rsync2: 1, rsync3: 2 };
    await publish(lab.hosts.rsync2.path, 1, V1, trusted.key);
    await publish(lab.hosts.rsync3.path, 2, V2, trusted.key);
    const servers: Record<string, Proc> = {
      rsync2: await lab.server("replica", "rsync2"),
      rsync3: await lab.server("replica", "rsync3"),
    };
    await lab.proxy();
    const bothIn = async () => {
      const st = await status(lab);
      return st.rotation.length === 2 && st.backends.every((b) => b.version?.seq === seqOf[b.name]);
    };
    await waitFor("both backends in rotation at their versions", bothIn);

    /** Runs client `web<i>` into a dest of its own; returns the one backend it reached. */
    const run = async (i: number): Promise<string> => {
      const dest = `${lab.dir}/apps/web${i}`;
      const before = await connections(lab);
      const r = await lab.run([
        ...clientArgs(lab, `web${i}`, ["--dest", dest]),
      ]);
      const after = await connections(lab);
      assert.deepEqual([r.code, r.stderr], [0, ""], `run ${i}`);
      const reached = Object.keys(after).filter((n) => after[n] > (before[n] ?? 0));
      assert.equal(reached.length, 1, `run ${i}'s connections reached ${reached.join(" and ")}`);
      const [name] = reached;
      assert.ok(after[name] - before[name] >= 2, `run ${i}: more than one connection`);
      await assertSameTree(lab.hosts[name].path, dest, OURS);
      const marker = parseMarker(await Deno.readTextFile(`${dest}/.fanout-version`));
      assert.equal(marker?.seq, seqOf[name], `run ${i}: the version of ${name}`);
      return name;
    };

    const first = await run(1);
    assert.deepEqual(
      [await run(2), await run(3)],
      [first, first],
      "one client address, one backend",
    );
    assert.deepEqual((await status(lab)).affinity, { window: "1h", clients: 1 });

    // Its backend leaves the rotation: the next run goes to the other one, and stays there
    // once the first is back.
    const other = first === "rsync2" ? "rsync3" : "rsync2";
    await servers[first].stop();
    await waitFor(`${first} out of rotation`, async () => {
      return (await status(lab)).rotation.join() === other;
    });
    assert.equal(await run(4), other);
    servers[first] = await lab.server("replica", first);
    await waitFor(`${first} back in rotation`, bothIn);
    assert.deepEqual([await run(5), await run(6)], [other, other]);
  });
});
