// A cron client's look at the source's version through its server's health
// endpoint (GET /version, client.notify): a no-op through the proxy opens no
// rsync connection; a new version, an endpoint that is down, or one that
// answers anything but fanout's own answer, and the run reads the version
// through rsync as it does without one. Real servers, proxy and clients; a
// small Deno server in the test plays the hostile endpoint.
import assert from "node:assert/strict";
import {
  assertSameTree,
  clientArgs,
  http,
  type Lab,
  landVersion,
  sh,
  treeListing,
  waitFor,
  withLab,
} from "./_helpers.ts";
import type { VersionMarker } from "../lib/version/mod.ts";

const OURS = [".fanout-dest"];
const NAME = "web1";

/** A cron run of client `NAME` on the fast path, logging at debug level. */
function cron(lab: Lab, dest: string, extra: string[] = []) {
  return lab.run(
    clientArgs(lab, NAME, [
      "--dest",
      dest,
      "--verify-every",
      "1h",
      "--log-level",
      "debug",
      ...extra,
    ]),
  );
}

async function status(
  lab: Lab,
): Promise<{ mode: string; exit_code: number; version: VersionMarker }> {
  return JSON.parse(await Deno.readTextFile(`${lab.dir}/state/${NAME}/client-status.json`));
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

Deno.test("client notify: a no-op through the proxy makes no rsync connection; a new version still syncs", async () => {
  await withLab(async (lab) => {
    // The proxy's own checks are rare here: it learns of versions by its long-polls.
    await lab.fleet({ replicas: ["rsync2"], proxy: { interval: "30s" }, client: { retries: 0 } });
    for (const h of [lab.hosts.rsync1, lab.hosts.rsync2]) {
      await landVersion(h.path, 1, { "a.txt": "a1\n", "d/b.txt": "b\n" });
    }
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    await lab.proxy();
    const px = lab.hosts.proxy;
    const accepted = async () => {
      const text = (await http(`http://${px.ip}:${px.health}/metrics`)).body;
      return Number(/^fanout_proxy_connections_total (\d+)$/m.exec(text)?.[1]);
    };
    const dest = `${lab.dir}/apps/plugins`;
    const first = await cron(lab, dest); // source and notify: the proxy (the fleet's default)
    assert.equal(first.code, 0, first.stderr);
    await assertSameTree(lab.hosts.rsync1.path, dest, OURS);

    const before = [await accepted(), await treeListing(dest)] as const;
    const noop = await cron(lab, dest);
    assert.equal(noop.code, 0, noop.stderr);
    assert.equal(noop.stdout, "");
    assert.match(
      noop.stderr,
      new RegExp(`msg="version read by http: dest's" .*from=${px.ip}:${px.health}`),
    );
    assert.doesNotMatch(noop.stderr, /module listing|marker file/);
    assert.equal((await status(lab)).mode, "fast");
    assert.deepEqual(
      [await accepted(), await treeListing(dest)],
      before,
      "no rsync connection, dest as it was",
    );

    // A new version: the endpoint names another, and the run takes the normal path.
    await landVersion(lab.hosts.rsync1.path, 2, { "a.txt": "a2\n", "c.txt": "c\n" });
    await waitFor("the proxy announces seq 2", async () => {
      const v = await http(`http://${px.ip}:${px.health}/version`);
      return JSON.parse(v.body).version?.seq === 2;
    });
    const next = await cron(lab, dest);
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stderr, /msg="version read by http: another; reading it through rsync"/);
    assert.match(next.stderr, /msg="version read from the module listing" .*version="seq 2 /);
    const st = await status(lab);
    assert.deepEqual([st.mode, st.version.seq], ["sync", 2]);
    await assertSameTree(lab.hosts.rsync1.path, dest, OURS);
    assert.ok((await accepted()) > before[0], "the sync went through the proxy");
  });
});

Deno.test("client notify: an endpoint down, or hostile, is passed over: the run reads the version through rsync", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], client: { retries: 0 } });
    const r2 = lab.hosts.rsync2;
    await landVersion(r2.path, 1, { "a.txt": "a1\n" });
    await lab.server("replica", "rsync2");
    const source = ["--source", `rsync://${r2.ip}:${r2.port}/plugins/`];
    const dest = `${lab.dir}/apps/plugins`;
    assert.equal((await cron(lab, dest, source)).code, 0);
    const held = (await status(lab)).version;

    // What a hostile endpoint answers, by kind; none of it is fanout's answer.
    let release = () => {};
    const hang = new Promise<Response>((r) => release = () => r(new Response("late")));
    const answers: Record<string, () => Response | Promise<Response>> = {
      oversized: () => new Response(JSON.stringify({ version: held, pad: "x".repeat(1 << 20) })),
      endless: () => {
        const chunk = new TextEncoder().encode(" ".repeat(4096));
        return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }));
      },
      garbage: () => new Response("\x1b]0;owned\x07\x9b2J<html>not a version</html>"),
      control: () => Response.json({ version: { ...held, commit: `${held.commit}\x1b[2J` } }),
      error: () => Response.json({ version: held }, { status: 500 }),
      hang: () => hang,
    };
    let kind = "";
    const hostile = Deno.serve(
      { hostname: lab.ip(9), port: lab.port(lab.ip(9)), onListen() {} },
      () => answers[kind](),
    );
    try {
      const down = `${lab.ip(10)}:${lab.port(lab.ip(10))}`;
      const cases: [string, string, RegExp][] = [
        ["down", down, /why="connection refused"/],
        ...Object.keys(answers).map((k): [string, string, RegExp] => [
          k,
          `${lab.ip(9)}:${hostile.addr.port}`,
          k === "control" ? /version read by http: another/ : /no version from the health endpoint/,
        ]),
      ];
      for (const [k, at, said] of cases) {
        kind = k;
        const r = await cron(lab, dest, [...source, "--notify", at]);
        assert.equal(r.code, 0, `${k}: ${r.stderr}`);
        assert.match(r.stderr, said, `${k}: ${r.stderr}`);
        assert.match(r.stderr, /msg="version read from the module listing" .*version="seq 1 /, k);
        assert.doesNotMatch(r.stderr, CONTROL, k);
        assert.equal((await status(lab)).mode, "fast", k);
      }

      // Down and hostile alike, a new version is synced as without an endpoint.
      const next = [["down", down], ["garbage", `${lab.ip(9)}:${hostile.addr.port}`]] as const;
      for (const [i, [k, at]] of next.entries()) {
        const seq = 2 + i;
        await landVersion(r2.path, seq, { "a.txt": `a${seq}\n`, [`new${seq}.txt`]: "n\n" });
        await waitFor(`the server announces seq ${seq}`, async () => {
          const list = await sh("rsync", [`rsync://${r2.ip}:${r2.port}/`]);
          return list.stdout.includes(`seq=${seq} `);
        });
        kind = k;
        const r = await cron(lab, dest, [...source, "--notify", at]);
        assert.equal(r.code, 0, `${k}: ${r.stderr}`);
        const st = await status(lab);
        assert.deepEqual([st.mode, st.version.seq], ["sync", seq], k);
        await assertSameTree(r2.path, dest, OURS);
      }
    } finally {
      release();
      await hostile.shutdown();
    }
  });
});
