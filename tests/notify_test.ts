// Version notices end to end: a --watch client whose poll interval is a minute
// still holds a new version within seconds, because its server (or the proxy
// in front) answers its GET /version long-poll when the version changes; with
// no endpoint, or a failing one, it polls as before. Real servers, proxy and
// clients; no assertion on elapsed time: the interval is far longer than any
// deadline here, so getting the version at all proves the notice path.
import assert from "node:assert/strict";
import {
  assertSameTree,
  http,
  type Lab,
  landVersion,
  type Proc,
  waitFor,
  watchClient,
  withLab,
} from "./_helpers.ts";

const OURS = [".fanout-dest"];
/** Far longer than every wait below: a version that arrives came by a notice. */
const LONG = "60s";
/** How long a notice may take here, on a loaded test machine: still far below LONG. */
const PROMPT_MS = 20_000;

/** A --watch client `name` into `<lab>/<name>`, logging at debug level. */
function watcher(lab: Lab, name: string, extra: string[] = []): { proc: Proc; dest: string } {
  return watchClient(lab, name, ["--log-level", "debug", ...extra]);
}

/** Resolves once `name`'s last run holds `seq`. */
function holds(lab: Lab, name: string, seq: number, timeoutMs = PROMPT_MS): Promise<unknown> {
  const file = `${lab.dir}/state/${name}/client-status.json`;
  return waitFor(
    `${name} holds seq ${seq}`,
    async () => {
      try {
        const st = JSON.parse(await Deno.readTextFile(file));
        return st.exit_code === 0 && st.version?.seq === seq;
      } catch {
        return false;
      }
    },
    timeoutMs,
    20,
  );
}

Deno.test("notify: a --watch client polling once a minute gets a new version from its server at once", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], client: { retries: 0, watch_interval: LONG } });
    const r2 = lab.hosts.rsync2;
    await landVersion(r2.path, 1, { "a.txt": "a1\n" });
    await lab.server("replica", "rsync2");
    const source = `rsync://${r2.ip}:${r2.port}/plugins/`;
    const w = watcher(lab, "web1", ["--source", source]);
    await holds(lab, "web1", 1);
    await w.proc.waitFor(/msg="hearing of versions"|msg="version announced"/);
    assert.match(w.proc.stderr, new RegExp(`msg=watching .*notify=${r2.ip}:${r2.health}`));

    for (const seq of [2, 3]) {
      await landVersion(r2.path, seq, { "a.txt": `a${seq}\n`, [`new${seq}.txt`]: "n\n" });
      await holds(lab, "web1", seq);
      await assertSameTree(r2.path, w.dest, OURS);
    }
    assert.match(w.proc.stderr, /msg="version announced" .*version="seq 3/);
    assert.doesNotMatch(w.proc.stderr, /no version notices/);
    assert.equal((await w.proc.stop()).code, 0, "a held long-poll does not delay the stop");
  });
});

Deno.test("notify: behind the proxy, a client hears of a version once every backend in rotation holds it", async () => {
  await withLab(async (lab) => {
    // The proxy's own checks are rare here: it learns of versions by its long-polls.
    await lab.fleet({
      replicas: ["rsync2"],
      proxy: { interval: "30s" },
      client: { retries: 0, watch_interval: LONG },
    });
    for (const h of [lab.hosts.rsync1, lab.hosts.rsync2]) {
      await landVersion(h.path, 1, { "a.txt": "a1\n" });
    }
    await lab.server("primary", "rsync1");
    await lab.server("replica", "rsync2");
    await lab.proxy();
    const px = lab.hosts.proxy;
    const w = watcher(lab, "web1"); // source and notify: the proxy (the fleet's default)
    await holds(lab, "web1", 1);
    assert.match(w.proc.stderr, new RegExp(`msg=watching .*notify=${px.ip}:${px.health}`));

    // A change on the primary goes to the replica by a push, then to the client.
    await landVersion(lab.hosts.rsync1.path, 2, { "a.txt": "a2\n", "b.txt": "b\n" });
    await holds(lab, "web1", 2);
    await assertSameTree(lab.hosts.rsync1.path, w.dest, OURS);
    const st = JSON.parse((await http(`http://${px.ip}:${px.health}/status`)).body);
    assert.equal(st.served_version.seq, 2);
    const v = await http(`http://${px.ip}:${px.health}/version`);
    assert.equal(v.status, 200);
    assert.equal(JSON.parse(v.body).version.seq, 2);
    assert.equal((await w.proc.stop()).code, 0);
  });
});

Deno.test("notify: without an endpoint, or with a failing one, --watch polls as before", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"], client: { retries: 0, watch_interval: "200ms" } });
    const r2 = lab.hosts.rsync2;
    await landVersion(r2.path, 1, { "a.txt": "a1\n" });
    await lab.server("replica", "rsync2");
    // Something else on the port: answers 404 (an older fanout has no /version).
    const other = lab.port(lab.ip(9));
    const plain = Deno.serve(
      { hostname: lab.ip(9), port: other, onListen() {} },
      () => new Response("not found\n", { status: 404 }),
    );
    try {
      const source = ["--source", `rsync://${r2.ip}:${r2.port}/plugins/`];
      const absent = watcher(lab, "web1", [...source, "--notify", `${lab.ip(9)}:${other}`]);
      const refused = watcher(lab, "web2", [
        ...source,
        "--notify",
        `${lab.ip(9)}:${lab.port(lab.ip(9))}`,
      ]);
      const off = watcher(lab, "web3", [...source, "--notify", "off"]);
      for (const n of ["web1", "web2", "web3"]) await holds(lab, n, 1);
      await landVersion(r2.path, 2, { "a.txt": "a2\n" });
      for (const n of ["web1", "web2", "web3"]) await holds(lab, n, 2);
      await absent.proc.waitFor(/msg="no version notices; polling meanwhile" .*why="HTTP 404"/);
      await refused.proc.waitFor(
        /msg="no version notices; polling meanwhile" .*why="connection refused"/,
      );
      assert.match(off.proc.stderr, /msg=watching .*notify=off/);
      for (const w of [absent, refused, off]) assert.equal((await w.proc.stop()).code, 0);
    } finally {
      await plain.shutdown();
    }
  });
});

Deno.test("notify: hostile /version requests get a one-line 4xx; held ones are bounded and freed on hang-up", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    const r2 = lab.hosts.rsync2;
    await landVersion(r2.path, 7, { "a.txt": "a\n" });
    const server = await lab.server("replica", "rsync2");
    const base = `http://${r2.ip}:${r2.health}`;

    for (
      const [query, status, why] of [
        ["after=x", 400, /^after must be a seq/],
        ["after=1&after=2", 400, /^after given twice/],
        ["after=99999999999999999999", 400, /^after must be a seq/],
        ["wait=1e9", 400, /^wait must be seconds/],
        ["after=1&wait=-1", 400, /^wait must be seconds/],
        ["callback=x", 400, /^unknown parameter/],
        [`after=1&pad=${"x".repeat(10_000)}`, 414, /^query longer than 128 bytes/],
      ] as const
    ) {
      const r = await http(`${base}/version?${query}`);
      assert.equal(r.status, status, query.slice(0, 40));
      assert.match(r.body, why);
      assert.equal(r.body.trim().split("\n").length, 1, "one line");
    }
    const post = await http(`${base}/version`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    // Bigger than the server reads at all: refused before fanout sees it.
    const huge = await http(`${base}/version?after=${"9".repeat(300_000)}`).catch(() => null);
    assert.ok(huge === null || huge.status >= 400, `huge URL: ${huge?.status}`);

    // A flood of held requests from one address: 256 wait, the rest get 429 at once.
    const ac = new AbortController();
    const answers = await Promise.all(
      Array.from(
        { length: 300 },
        () => fetch(`${base}/version?after=7&wait=55`, { signal: ac.signal }),
      ),
    );
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(refused.length, 44, "past 256 per address, 429");
    assert.equal(refused[0].headers.get("retry-after"), "10");
    for (const a of refused) await a.body?.cancel();
    const metric = async (name: string) => {
      const text = (await http(`${base}/metrics`)).body;
      return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1]);
    };
    assert.equal(await metric("fanout_version_waiters"), 256);
    assert.equal((await http(`${base}/healthz`)).status, 200, "the server still answers");
    // Clients that hang up free their places.
    ac.abort();
    await Promise.all(answers.map((a) => a.body?.cancel().catch(() => {})));
    await waitFor("waiters freed", async () => (await metric("fanout_version_waiters")) === 0);

    // Half-sent requests (a slowloris) hold no place and stop no one.
    const slow = await Promise.all(Array.from({ length: 50 }, async () => {
      const c = await Deno.connect({ hostname: r2.ip, port: r2.health });
      await c.write(new TextEncoder().encode("GET /version?after=7&wait=55 HTTP/1.1\r\nHost:"));
      return c;
    }));
    try {
      // A real waiter still gets the next version the moment it lands.
      const waiting = fetch(`${base}/version?after=7&wait=55`).then((r) => r.json());
      await waitFor("one waiter", async () => (await metric("fanout_version_waiters")) === 1);
      await landVersion(r2.path, 8, { "a.txt": "a8\n" });
      assert.equal((await waiting).version.seq, 8);
    } finally {
      for (const c of slow) c.close();
    }
    assert.equal(server.exited, null, "the server runs on");
  });
});
