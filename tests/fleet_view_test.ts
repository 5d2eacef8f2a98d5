// The fleet view end to end: a real primary with a direct replica and a
// relayed one, real publishes from a real git repository, clients simulated
// by sendReport() with the versions those publishes made, and what an
// operator looks at: /fleet.json, /metrics, `fanout fleet`, and the /fleet
// page as headless Chromium renders it.
import assert from "node:assert/strict";
import { type Fleet, loadFleet } from "../lib/config/mod.ts";
import type { FleetSnapshot } from "../lib/fleet/mod.ts";
import {
  type ClientReport,
  hostToken,
  sendReport,
  SIGNATURE_HEADER,
  signReport,
} from "../lib/report/mod.ts";
import { readMarker, type VersionMarker } from "../lib/version/mod.ts";
import {
  asReportingHost,
  GaveUp,
  http,
  type Lab,
  Proc,
  type Ran,
  sh,
  sleep,
  waitFor,
  withLab,
  writeTree,
} from "./_helpers.ts";

const TOKEN = "lab-report-token-5678";
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh("git", ["-c", "user.name=t", "-c", "user.email=t@lab", ...args], { cwd });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A repository to publish from, and the publishes made so far. */
class Source {
  constructor(readonly lab: Lab, readonly bare: string, readonly work: string) {}

  static async create(lab: Lab): Promise<Source> {
    const s = new Source(lab, `${lab.dir}/origin.git`, `${lab.dir}/origin-work`);
    await git(lab.dir, "init", "-q", "--bare", "-b", "main", s.bare);
    await git(lab.dir, "clone", "-q", s.bare, s.work);
    await git(s.work, "symbolic-ref", "HEAD", "refs/heads/main");
    return s;
  }

  /** Commits `files`, pushes, runs `fanout --role publish`; returns the primary's new marker. */
  async publish(files: Record<string, string>): Promise<VersionMarker> {
    await writeTree(this.work, files);
    await git(this.work, "add", "-A");
    await git(this.work, "commit", "-q", "-m", "change");
    await git(this.work, "push", "-q", "origin", "main");
    const r = await this.lab.run([
      "--role",
      "publish",
      "-c",
      this.lab.fleetFile,
      "--repo",
      this.bare,
    ]);
    assert.equal(r.code, 0, `publish failed:\n${r.stderr}`);
    const m = readMarker(this.lab.hosts.rsync1.path);
    assert.ok(m, "the primary has a marker after a publish");
    return m;
  }
}

function base(lab: Lab): string {
  const h = lab.hosts.rsync1;
  return `http://${h.ip}:${h.health}`;
}

async function view(lab: Lab, query = ""): Promise<FleetSnapshot> {
  const r = await http(`${base(lab)}/fleet.json${query}`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

/** Waits until every server holds `seq` as the primary sees it. */
async function serversAt(lab: Lab, seq: number): Promise<FleetSnapshot> {
  return await waitFor(
    `every server at seq ${seq}`,
    async () => {
      const v = await view(lab);
      return v.servers.every((s) => s.state === "current" && s.version?.seq === seq) ? v : null;
    },
    15_000,
    100,
  );
}

let lastStart = 0;

/**
 * A run result as a client reports it. Two runs never start in the same
 * millisecond; two identical reports signed in the same second would be
 * refused as a replay.
 */
function run(
  host: string,
  version: VersionMarker | null,
  over: Partial<ClientReport> = {},
): ClientReport {
  return {
    host,
    version,
    started_at: new Date(lastStart = Math.max(Date.now(), lastStart + 1)).toISOString(),
    duration_ms: 120,
    exit_code: 0,
    drift: 0,
    error: null,
    source: "rsync://127.0.0.1:873/plugins/",
    ...over,
  };
}

/** Sends `r` as its own host would. */
async function send(fleet: Fleet, r: ClientReport) {
  return await sendReport(await asReportingHost(fleet, r.host), r);
}

async function report(fleet: Fleet, r: ClientReport): Promise<void> {
  const out = await send(fleet, r);
  assert.deepEqual(out, { sent: true, status: 200, reason: null }, `report of ${r.host}`);
}

function fanoutFleet(lab: Lab, ...args: string[]): Promise<Ran> {
  return lab.run(["fleet", "-c", lab.fleetFile, ...args]);
}

/** Starts rsync3 (relayed by rsync2), rsync2 and the primary. */
async function startFleet(
  lab: Lab,
  extra: string,
): Promise<{ fleet: Fleet; primary: Proc; rsync2: Proc }> {
  await lab.fleet({ replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }], extra });
  await lab.server("replica", "rsync3");
  const rsync2 = await lab.server("replica", "rsync2");
  const primary = await lab.server("primary", "rsync1");
  return { fleet: await loadFleet(lab.fleetFile), primary, rsync2 };
}

/**
 * How long Chromium may take to start, or to load a page: about a second on
 * an idle machine, many times that on a loaded one; the bound is there for
 * one that hangs.
 */
const CHROMIUM_TIMEOUT = 180_000;

/** A reply of the DevTools protocol (events have no id). */
interface CdpReply {
  id?: number;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/**
 * One headless Chromium, driven over the DevTools protocol: each page is
 * read in a tab of its own. Starting Chromium takes seconds of CPU, a tab a
 * fraction of one.
 */
class Browser {
  #replies = new Map<number, (r: CdpReply) => void>();
  #next = 0;

  private constructor(readonly proc: Proc, readonly ws: WebSocket, readonly closed: Promise<void>) {
    ws.onmessage = (e) => {
      const r = JSON.parse(e.data) as CdpReply;
      if (r.id !== undefined) this.#replies.get(r.id)?.(r);
    };
    closed.then(() => {
      for (const settle of [...this.#replies.values()]) {
        settle({ error: { message: "Chromium closed the connection" } });
      }
    });
  }

  /** Starts Chromium with a profile under `dir` and connects to it. */
  static async start(dir: string): Promise<Browser> {
    const profile = await Deno.makeTempDir({ dir, prefix: "chromium-" });
    const proc = new Proc(
      new Deno.Command(CHROMIUM!, {
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-dev-shm-usage",
          "--disable-extensions",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          `--user-data-dir=${profile}`,
          "--remote-debugging-port=0",
          "about:blank",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn(),
    );
    try {
      const [, url] = await proc.waitFor(/DevTools listening on (ws:\/\/\S+)/, CHROMIUM_TIMEOUT);
      const ws = new WebSocket(url);
      const closed = new Promise<void>((res) => ws.addEventListener("close", () => res()));
      await new Promise((res, rej) => {
        ws.onopen = res;
        ws.onerror = () => rej(new Error(`cannot connect to Chromium at ${url}`));
      });
      return new Browser(proc, ws, closed);
    } catch (e) {
      proc.kill("SIGKILL");
      await proc.status();
      throw e;
    }
  }

  /** Sends a DevTools command (to a tab's session when `sessionId` is given). */
  call(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    if (this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new GaveUp(`${method}: Chromium is gone`));
    }
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      const settle = (r: CdpReply) => {
        clearTimeout(timer);
        this.#replies.delete(id);
        // Without an id, no answer came (Chromium is gone or out of time):
        // waiting for the page longer is no use.
        const failure = r.id === undefined ? GaveUp : Error;
        if (r.error) reject(new failure(`${method}: ${r.error.message}`));
        else resolve(r.result ?? {});
      };
      const timer = setTimeout(
        () => settle({ error: { message: `no answer in ${CHROMIUM_TIMEOUT / 1000}s` } }),
        CHROMIUM_TIMEOUT,
      );
      this.#replies.set(id, settle);
      this.ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** The DOM of `file` once Chromium has loaded it, as --dump-dom prints it. */
  async dom(file: string): Promise<string> {
    const url = `file://${file}`;
    const { targetId } = await this.call("Target.createTarget", { url: "about:blank" });
    try {
      const { sessionId } = await this.call("Target.attachToTarget", { targetId, flatten: true });
      await this.call("Page.navigate", { url }, sessionId as string);
      const expression = `location.href === ${
        JSON.stringify(url)
      } && document.readyState === "complete" ? document.documentElement.outerHTML : ""`;
      return await waitFor(
        `Chromium to load ${url}`,
        async () => {
          const r = await this.call(
            "Runtime.evaluate",
            { expression, returnByValue: true },
            sessionId as string,
          );
          return (r.result as { value?: string }).value ?? "";
        },
        CHROMIUM_TIMEOUT,
        20,
      );
    } finally {
      await this.call("Target.closeTarget", { targetId }).catch(() => {});
    }
  }

  /** Kills Chromium (its whole process group) and waits for the connection to close. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.status();
    this.ws.close();
    await this.closed;
  }
}

/**
 * The DOM headless Chromium makes of pages the primary serves, from one
 * Chromium started at the first page. Each page is fetched first and
 * Chromium reads it from a file, so how long Chromium takes (seconds on a
 * busy machine) does not change what the page shows. A Chromium killed by a
 * signal or out of time (the time limit on a starved machine, the kernel's
 * OOM killer) is started once more; any other failure is the page's or the
 * test's, and fails at once.
 */
class Pages {
  #browser: Browser | null = null;
  #starting: Promise<Browser> | null = null;

  constructor(readonly lab: Lab) {}

  /**
   * Starts Chromium in the background, when there is one: its seconds of
   * start-up then pass while the test does other things (a page is read only
   * once the fleet has something to show).
   */
  warm(): void {
    if (!CHROMIUM || this.#browser || this.#starting) return;
    this.#starting = Browser.start(this.lab.dir);
    this.#starting.catch(() => {}); // its failure is dom()'s, at the first page
  }

  /** The Chromium started by warm() (or now), once it is up. */
  async #started(): Promise<Browser> {
    const starting = this.#starting ?? Browser.start(this.lab.dir);
    this.#starting = null;
    return await starting;
  }

  /** The DOM of the page at `path` as the primary serves it now. */
  async dom(path: string): Promise<string> {
    const r = await http(`${base(this.lab)}${path}`);
    assert.equal(r.status, 200, r.body);
    const file = await Deno.makeTempFile({ dir: this.lab.dir, prefix: "fleet-", suffix: ".html" });
    await Deno.writeTextFile(file, r.body);
    for (let attempt = 1;; attempt++) {
      try {
        this.#browser ??= await this.#started();
        return await this.#browser.dom(file);
      } catch (e) {
        const why = (e as Error).message;
        const goneOrLate = e instanceof GaveUp || why.startsWith("timed out");
        const proc = this.#browser?.proc;
        await this[Symbol.asyncDispose]();
        if (attempt === 1 && goneOrLate) continue;
        return assert.fail(
          `chromium gave no DOM (${why}; exit ${proc?.exited?.code}, signal ${proc?.exited?.signal}):\n${
            proc?.stderr.slice(-1500) ?? ""
          }`,
        );
      }
    }
  }

  /** Stops Chromium, if it runs (or is starting). */
  async [Symbol.asyncDispose](): Promise<void> {
    const starting = this.#starting;
    this.#starting = null;
    this.#browser ??= await starting?.catch(() => null) ?? null;
    await this.#browser?.[Symbol.asyncDispose]();
    this.#browser = null;
  }
}

function count(dom: string, id: string): number {
  const m = new RegExp(`id="${id}"[^>]*data-count="(\\d+)"`).exec(dom) ??
    new RegExp(`data-count="(\\d+)"[^>]*id="${id}"`).exec(dom);
  assert.ok(m, `no #${id} with a data-count in the page`);
  return Number(m[1]);
}

function rows(dom: string): Record<string, string> {
  return Object.fromEntries(
    [...dom.matchAll(/<tr[^>]*data-host="([^"]+)"[^>]*data-state="([^"]+)"/g)].map((
      m,
    ) => [m[1], m[2]]),
  );
}

Deno.test({
  name:
    "fleet view: reports from clients, publishes and servers add up in JSON, metrics, CLI and the page",
  fn: async (t) => {
    await withLab(async (lab) => {
      await using pages = new Pages(lab);
      pages.warm();
      const started = await startFleet(lab, "fleet:\n  silent_after: 5s\n  report_rate: 30");
      const fleet = started.fleet;
      let primary = started.primary;
      const src = await Source.create(lab);
      const v1 = await src.publish({ "a.txt": "one\n", "lib/x.php": "<?php\n" });
      let v = await serversAt(lab, v1.seq);
      assert.equal(v.current?.commit, v1.commit);
      assert.deepEqual(v.servers.map((s) => [s.name, s.upstream, s.state]), [
        ["rsync1", null, "current"],
        ["rsync2", "rsync1", "current"],
        ["rsync3", "rsync2", "current"],
      ]);

      // Nothing reported yet: all current, and fanout fleet says so.
      let r = await fanoutFleet(lab);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /^primary rsync1: seq 1 \(/);
      assert.match(r.stdout, /every host is current/);
      assert.match(r.stdout, /no client has reported yet/);

      // web4 reports once, then falls silent (silent_after: 5s); the others
      // report again before each look, as cron would run them.
      // Every client is there before seq 2 is published (however long the
      // publish takes on a busy machine), so each counts for its time to converge.
      await Promise.all(["web1", "web2", "web3", "web4"].map((h) => report(fleet, run(h, v1))));
      const web4At = Date.now();
      const v2 = await src.publish({ "a.txt": "two\n", "new.txt": "new\n" });
      assert.equal(v2.seq, v1.seq + 1);
      await serversAt(lab, v2.seq);
      const tick = () =>
        Promise.all([
          report(fleet, run("web1", v2, { duration_ms: 310 })),
          report(fleet, run("web2", v1, { drift: 2 })),
          report(
            fleet,
            run("web3", v1, { exit_code: 3, error: "rsync failed: connection refused (code 10)" }),
          ),
        ]);
      await tick();
      await sleep(Math.max(0, web4At + 5_300 - Date.now()));
      await tick();

      v = await view(lab);
      assert.deepEqual(v.counts.clients, {
        total: 4,
        current: 1,
        behind: 1,
        failing: 1,
        silent: 1,
      });
      assert.deepEqual(v.counts.servers, {
        total: 3,
        current: 3,
        behind: 0,
        failing: 0,
        unknown: 0,
      });
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems, ["1 client behind", "1 client failing", "1 client silent"]);
      const byHost = Object.fromEntries(v.clients.map((c) => [c.host, c]));
      assert.equal(byHost.web1.state, "current");
      assert.equal(byHost.web1.duration_ms, 310);
      assert.equal(byHost.web2.state, "behind");
      assert.equal(byHost.web2.version?.seq, v1.seq);
      assert.equal(byHost.web2.drift, 2);
      assert.equal(byHost.web3.state, "failing");
      assert.equal(byHost.web3.error, "rsync failed: connection refused (code 10)");
      assert.equal(byHost.web4.state, "silent");
      assert.ok(byHost.web4.age_s >= 5);
      // Time to converge: seq 2 reached by web1 alone of the three concerned
      // (web4 is silent and never had it, so it does not hold the version back).
      const c2 = v.converge.find((c) => c.seq === v2.seq)!;
      assert.deepEqual([c2.clients, c2.reached, c2.converged], [3, 1, false]);
      assert.equal(c2.max_s, null);

      // Filters.
      assert.deepEqual((await view(lab, "?state=behind,failing")).clients.map((c) => c.host), [
        "web2",
        "web3",
      ]);
      assert.deepEqual(
        (await view(lab, "?state=silent&state=current")).clients.map((c) => c.host),
        ["web1", "web4"],
      );
      assert.deepEqual((await view(lab, "?host=EB1")).clients.map((c) => c.host), ["web1"]);
      assert.equal(
        (await view(lab, "?state=behind")).counts.clients.total,
        4,
        "counts are never filtered",
      );

      // Alerts as metrics.
      const m = (await http(`${base(lab)}/metrics`)).body;
      for (
        const [name, n] of [
          ["fanout_fleet_clients", 4],
          ["fanout_fleet_clients_current", 1],
          ["fanout_fleet_clients_behind", 1],
          ["fanout_fleet_clients_failing", 1],
          ["fanout_fleet_clients_silent", 1],
          ["fanout_fleet_replicas_lagging", 0],
        ] as const
      ) {
        assert.match(m, new RegExp(`^${name} ${n}$`, "m"), `${name} ${n} in\n${m}`);
      }
      assert.match(m, /^fanout_fleet_reports_total\{result="stored"\} 10$/m);

      // The terminal view (the others report again: web4 alone is to be silent,
      // however long fanout takes to start on a busy machine).
      await tick();
      r = await fanoutFleet(lab);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.match(r.stdout, /not current: 1 client behind, 1 client failing, 1 client silent/);
      assert.match(r.stdout, /^SERVER +KIND +UPSTREAM +VERSION +STATE/m);
      assert.match(r.stdout, /^rsync3 +replica +rsync2 +2 +current/m);
      assert.match(r.stdout, /^CLIENT +STATE +VERSION +LAST REPORT/m);
      assert.match(r.stdout, /^web2 +behind +1 /m);
      assert.match(
        r.stdout,
        /^web3 +failing +1 .* 3 +0 +rsync failed: connection refused \(code 10\)$/m,
      );
      assert.match(
        r.stdout,
        /clients: 1 current, 1 behind, 1 failing, 1 silent \(4 in all\); servers: 3 of 3 current/,
      );
      await tick();
      r = await fanoutFleet(lab, "--json");
      assert.equal(r.code, 1);
      assert.deepEqual(JSON.parse(r.stdout).counts.clients, v.counts.clients);

      await t.step({
        name: "the /fleet page in headless Chromium shows the counts",
        ignore: !CHROMIUM,
        fn: async () => {
          await tick();
          const dom = await pages.dom("/fleet");
          assert.match(
            dom,
            /<title>fanout fleet: 1 client behind, 1 client failing, 1 client silent<\/title>/,
          );
          assert.deepEqual(
            ["current", "behind", "failing", "silent", "total", "lagging"].map((s) =>
              count(dom, `count-${s}`)
            ),
            [1, 1, 1, 1, 4, 0],
          );
          assert.deepEqual(rows(dom), {
            web1: "current",
            web2: "behind",
            web3: "failing",
            web4: "silent",
          });
          assert.match(
            dom,
            new RegExp(
              `<p id="current">published <b>seq ${v2.seq}</b> <code>${
                v2.commit.slice(0, 12)
              }</code>`,
            ),
          );
          assert.match(dom, /data-name="rsync3" data-state="current"/);
          assert.match(
            dom,
            new RegExp(`<g class="bar open" data-seq="${v2.seq}" data-converged="false">`),
          );
          await tick();
          const filtered = await pages.dom("/fleet?state=behind&host=web");
          assert.deepEqual(rows(filtered), { web2: "behind" });
          assert.equal(count(filtered, "shown"), 1);
          assert.match(
            filtered,
            /<input type="checkbox" name="state" value="behind" checked(="")?>/,
          );
        },
      });
      if (!CHROMIUM) {
        console.log("SKIPPED: /fleet page in Chromium: no chromium (apt-get install chromium)");
      }

      // Everyone catches up: all current, exit 0, seq 2 converged.
      for (const h of ["web1", "web2", "web3", "web4"]) await report(fleet, run(h, v2));
      r = await fanoutFleet(lab);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, /every host is current/);
      assert.match(r.stdout, /clients: 4 current, 0 behind, 0 failing, 0 silent \(4 in all\)/);
      v = await view(lab);
      const done = v.converge.find((c) => c.seq === v2.seq)!;
      assert.deepEqual([done.clients, done.reached, done.converged], [4, 4, true]);
      // The last client had it by now: no more time than has passed since the publish.
      const since = (Date.now() - Date.parse(v2.published_at)) / 1000;
      assert.ok(done.max_s !== null && done.max_s >= 0, JSON.stringify(done));
      assert.ok(done.max_s <= since + 0.1, `max_s ${done.max_s} > ${since} s since the publish`);
      assert.ok(done.p50_s !== null && done.p50_s <= done.max_s!);
      if (CHROMIUM) {
        await Promise.all(["web1", "web2", "web3", "web4"].map((h) => report(fleet, run(h, v2))));
        const dom = await pages.dom("/fleet");
        assert.match(dom, /<p id="verdict" class="ok" data-ok="true">every host is current/);
        assert.equal(count(dom, "count-current"), 4);
        assert.match(dom, new RegExp(`<g class="bar" data-seq="${v2.seq}" data-converged="true">`));
      }

      // Stored, not remembered: a restarted primary still knows every client.
      await primary.stop();
      primary = await lab.server("primary", "rsync1");
      v = await view(lab);
      assert.deepEqual(v.clients.map((c) => [c.host, c.version?.seq]), [
        ["web1", v2.seq],
        ["web2", v2.seq],
        ["web3", v2.seq],
        ["web4", v2.seq],
      ]);

      // A relay goes down: it fails, the replica behind it is unknown.
      await started.rsync2.stop();
      await src.publish({ "a.txt": "three\n" });
      v = await waitFor(
        "rsync2 failing, rsync3 unknown",
        async () => {
          const x = await view(lab);
          const state = (name: string) => x.servers.find((s) => s.name === name)?.state;
          return state("rsync2") === "failing" && state("rsync3") === "unknown" ? x : null;
        },
        15_000,
        100,
      );
      const rs3 = v.servers.find((s) => s.name === "rsync3")!;
      assert.equal(rs3.state, "unknown");
      assert.match(rs3.error ?? "", /cannot read rsync2's \/status/);
      assert.match((await http(`${base(lab)}/metrics`)).body, /^fanout_fleet_replicas_lagging 2$/m);
      // Fresh reports, still at seq 2: behind, not silent, however slow this run was.
      for (const h of ["web1", "web2", "web3", "web4"]) await report(fleet, run(h, v2));
      r = await fanoutFleet(lab);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /1 server failing, 1 server unknown, 4 clients behind/);
    });
  },
});

/** POSTs `body` to /report with `signature` (none when null). */
async function post(
  lab: Lab,
  body: string | ReadableStream<Uint8Array>,
  signature: string | null,
): Promise<{ status: number; body: string; retryAfter: string | null }> {
  const res = await fetch(`${base(lab)}/report`, {
    method: "POST",
    headers: signature ? { [SIGNATURE_HEADER]: signature } : {},
    body,
  });
  return {
    status: res.status,
    body: await res.text(),
    retryAfter: res.headers.get("retry-after"),
  };
}

const now = () => Math.floor(Date.now() / 1000);

Deno.test("fleet view: unsigned, badly signed, stale, replayed, oversized, invalid and too frequent reports are refused", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [], extra: "fleet:\n  report_rate: 3" });
    await lab.server("primary", "rsync1");
    const fleet = await loadFleet(lab.fleetFile);
    const body = JSON.stringify(run("web1", null));

    let r = await post(lab, body, null);
    assert.deepEqual([r.status, r.body.trim()], [
      401,
      `unsigned report: expected header ${SIGNATURE_HEADER}: t=<unix seconds>,sig=<hex HMAC-SHA256>`,
    ]);
    r = await post(lab, body, "t=123,sig=nothex");
    assert.equal(r.status, 401);
    assert.match(r.body, /^unsigned report/);
    const web1 = await hostToken(TOKEN, "web1");
    // Signed with the push password instead of web1's token.
    r = await post(lab, body, await signReport("lab-secret-1234", body, now()));
    assert.deepEqual([r.status, r.body.trim()], [
      401,
      "bad signature: not signed with web1's token (on the primary, fanout render report-token " +
      "--name web1 -c FILE prints web1's token; install it as web1's auth.report_token_file)",
    ]);
    // Signed with the primary's secret itself (a client set up with one shared token).
    r = await post(lab, body, await signReport(TOKEN, body, now()));
    assert.equal(r.status, 401);
    assert.match(
      r.body,
      /^signed with the primary's report secret, not web1's own token: on the primary, fanout render report-token --name web1/,
    );
    // The right token over another body (a report altered on the way).
    r = await post(lab, body.replace("web1", "web9"), await signReport(web1, body, now()));
    assert.equal(r.status, 401);
    assert.match(r.body, /^bad signature/);
    // Six minutes off the primary's clock, either way.
    for (const t of [now() - 360, now() + 360]) {
      r = await post(lab, body, await signReport(web1, body, t));
      assert.equal(r.status, 401);
      assert.match(
        r.body,
        /^stale report: signed 6(\.0)?m away from the primary's clock \(at most 5m\)/,
      );
    }
    // Accepted once; the same request again is a replay.
    const sig = await signReport(web1, body, now());
    r = await post(lab, body, sig);
    assert.deepEqual([r.status, r.body], [200, "stored\n"]);
    r = await post(lab, body, sig);
    assert.deepEqual([r.status, r.body.trim()], [
      401,
      "replayed report: this signature was already used",
    ]);
    // Over 8 KiB, with a length or streamed without one.
    const big = JSON.stringify(run("web2", null, { error: "x".repeat(9000) }));
    r = await post(lab, big, await signReport(await hostToken(TOKEN, "web2"), big, now()));
    assert.deepEqual([r.status, r.body.trim()], [413, "report larger than 8192 bytes"]);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode("y".repeat(1000)));
        c.close();
      },
    });
    r = await post(lab, stream, await signReport(web1, "y".repeat(10_000), now()));
    assert.equal(r.status, 413);
    // Signed but not a report.
    for (
      const [text, why] of [
        ["{not json", "report is not JSON"],
        [JSON.stringify({ ...run("../etc", null) }), "invalid report: host: expected a host name"],
        [JSON.stringify({ ...run("web3", null), exit_code: -1 }), "invalid report: exit_code"],
        [
          JSON.stringify({ ...run("web3", null), version: { seq: "x" } }),
          "invalid report: version",
        ],
      ]
    ) {
      r = await post(lab, text, await signReport(web1, text, now()));
      assert.equal(r.status, 400, text);
      assert.ok(r.body.startsWith(why), `${r.body} should start with ${why}`);
    }
    // Client web2 reports as web1, with its own valid token: refused, web1 unchanged.
    const web1Row = async () => {
      const c = (await view(lab)).clients.find((c) => c.host === "web1")!;
      return [c.exit_code, c.error, c.last_report];
    };
    const before = await web1Row();
    const forged = JSON.stringify(run("web1", null, { exit_code: 3, error: "forged by web2" }));
    r = await post(lab, forged, await signReport(await hostToken(TOKEN, "web2"), forged, now()));
    assert.equal(r.status, 401);
    assert.match(r.body, /^bad signature: not signed with web1's token/);
    assert.deepEqual(await web1Row(), before);
    // report_rate: 3 a minute per host; web1 has used one.
    for (let i = 0; i < 2; i++) {
      assert.equal((await send(fleet, run("web1", null))).status, 200);
    }
    const limited = await send(fleet, run("web1", null));
    assert.equal(limited.sent, false);
    assert.equal(limited.status, 429);
    assert.match(limited.reason!, /too many reports from web1: at most 3 a minute/);
    const raw = JSON.stringify(run("web1", null));
    r = await post(lab, raw, await signReport(web1, raw, now()));
    assert.equal(r.status, 429);
    assert.ok(
      Number(r.retryAfter) > 0 && Number(r.retryAfter) <= 60,
      `retry-after ${r.retryAfter}`,
    );
    // Another host is not held back by web1.
    assert.equal((await send(fleet, run("web2", null))).status, 200);
    // Reading endpoints stay read-only, /report takes POST only.
    assert.equal((await http(`${base(lab)}/report`)).status, 405);
    assert.equal((await http(`${base(lab)}/fleet.json`, { method: "DELETE" })).status, 405);

    // Only the accepted reports were stored.
    const v = await view(lab);
    assert.deepEqual(v.clients.map((c) => c.host), ["web1", "web2"]);
    const m = (await http(`${base(lab)}/metrics`)).body;
    for (
      const [result, n] of [
        ["stored", 4],
        ["unsigned", 2],
        ["bad_signature", 3],
        ["primary_secret", 1],
        ["stale", 2],
        ["replayed", 1],
        ["too_large", 2],
        ["invalid", 4],
        ["rate_limited", 2],
      ] as const
    ) {
      assert.match(m, new RegExp(`^fanout_fleet_reports_total\\{result="${result}"\\} ${n}$`, "m"));
    }
  });
});

Deno.test("fleet view: sendReport never throws and never waits long", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [] });
    const fleet = await loadFleet(lab.fleetFile);
    const report = run("web1", null);
    // No primary running: connection refused, at once.
    let out = await sendReport(fleet, report);
    assert.equal(out.sent, false);
    assert.equal(out.status, null);
    assert.match(out.reason!, /refused/i);
    // A primary that accepts the connection and never answers: 1 s at most.
    const h = lab.hosts.rsync1;
    const mute = Deno.listen({ hostname: h.ip, port: h.health });
    const t0 = performance.now();
    out = await sendReport(fleet, report);
    const ms = performance.now() - t0;
    mute.close();
    // Its own deadline ended it (a timer fires late on a busy machine, never early).
    assert.deepEqual(out, { sent: false, status: null, reason: "timed out" });
    assert.ok(ms >= 900, `gave up after ${ms} ms, before its 1 s`);
    // A token readable by others is not used.
    await Deno.chmod(lab.reportToken, 0o644);
    out = await sendReport(fleet, report);
    assert.equal(out.sent, false);
    assert.match(
      out.reason!,
      /report\.token has mode 644, readable by (group and )?others; expected 600 or 400/,
    );
    await Deno.remove(lab.reportToken);
    out = await sendReport(fleet, report);
    assert.match(out.reason!, /report\.token does not exist/);
  });
});

Deno.test("fanout fleet and the primary: bad token, no token, no fleet file, primary down", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [] });
    // The primary is not running: exit 3 naming the URL.
    let r = await lab.run(["fleet", "-c", lab.fleetFile]);
    assert.equal(r.code, 3);
    const h = lab.hosts.rsync1;
    assert.match(
      r.stderr,
      new RegExp(
        `^fanout: cannot read the fleet view of the primary rsync1 at http://${h.ip}:${h.health}/fleet.json: .*refused`,
      ),
    );
    // No fleet file: exit 2.
    r = await lab.run(["fleet", "-c", `${lab.dir}/nope.yaml`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /nope\.yaml: cannot read the fleet file: no such file/);
    r = await lab.run(["fleet", "-c", lab.fleetFile, "--set", "fleet.silent_after=soon"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--set fleet\.silent_after: expected a duration/);
    r = await lab.run(["fleet", "-c", lab.fleetFile, "--dest", "/x"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--dest does not apply to "fanout fleet"/);

    // A world-readable token: the primary refuses to start, as for the other secrets.
    await Deno.chmod(lab.reportToken, 0o644);
    r = await lab.run(["--role", "primary", "-c", lab.fleetFile]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /auth\.report_token_file: .*report\.token has mode 644, readable by (group and )?others; expected 600 or 400 \(chmod 600 /,
    );
    r = await lab.run(["check-config", "-c", lab.fleetFile, "--role", "primary"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /auth\.report_token_file: .*mode 644/);
    await Deno.writeTextFile(lab.reportToken, "\n");
    await Deno.chmod(lab.reportToken, 0o600);
    r = await lab.run(["--role", "primary", "-c", lab.fleetFile]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /auth\.report_token_file: .*report\.token is empty/);

    // No token at all: the primary runs, says reports are off, refuses them with 503.
    await Deno.remove(lab.reportToken);
    const primary = await lab.server("primary", "rsync1");
    assert.match(
      primary.stderr,
      /level=warn msg="fleet reports off" .*report\.token does not exist/,
    );
    const res = await post(lab, "{}", null);
    assert.equal(res.status, 503);
    assert.match(res.body, /^reports are off: .*report\.token does not exist on the primary/);
    const v = await view(lab);
    assert.equal(v.reports_enabled, false);
    r = await lab.run(["fleet", "-c", lab.fleetFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /client reports are off: the primary has no report token/);
  });
});

Deno.test("fleet view: real client runs report; fanout fleet exits 0 only once every client has the publish", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2"] });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    const src = await Source.create(lab);
    const noName = await lab.run(["render", "report-token", "-c", lab.fleetFile]);
    assert.equal(noName.code, 2);
    assert.match(noName.stderr, /^fanout: render report-token needs --name HOST/);
    // Each client's own token, as the operator makes them on the primary.
    const tokenOf = (n: number) => `${lab.dir}/web${n}.token`;
    await Promise.all([1, 2, 3].map(async (n) => {
      const r = await lab.run(["render", "report-token", "-c", lab.fleetFile, "--name", `web${n}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^[0-9a-f]{64}\n$/);
      await Deno.writeTextFile(tokenOf(n), r.stdout, { mode: 0o600 });
      await Deno.chmod(tokenOf(n), 0o600);
    }));
    const runAs = (name: string, token: string, dest: string, extra: string[]) =>
      lab.run([
        "--role",
        "client",
        "-c",
        lab.fleetFile,
        "--name",
        name,
        "--dest",
        dest,
        "--no-splay",
        "--set",
        `auth.report_token_file=${token}`,
        ...extra,
      ]);
    const client = (n: number, ...extra: string[]) =>
      runAs(`web${n}`, tokenOf(n), `${lab.dir}/dest${n}`, extra);
    const fleetExit = async () => (await fanoutFleet(lab)).code;
    const v1 = await src.publish({ "a.txt": "one\n" });
    // Three hosts, each with its own dest: their first runs go at once.
    for (const r of await Promise.all([1, 2, 3].map((n) => client(n)))) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", "a run that reports is still silent");
    }
    await waitFor("fanout fleet exit 0", async () => await fleetExit() === 0);

    const v2 = await src.publish({ "a.txt": "two\n" });
    await serversAt(lab, v2.seq);
    assert.equal(await fleetExit(), 1, "published, no client has it yet");
    assert.equal((await client(1)).code, 0);
    assert.equal((await client(2)).code, 0);
    let r = await fanoutFleet(lab);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /not current: 1 client behind/);
    assert.match(r.stdout, new RegExp(`^web3 +behind +${v1.seq} `, "m"));
    assert.equal((await client(3)).code, 0);
    r = await fanoutFleet(lab);
    assert.equal(r.code, 0, r.stdout);
    const v = await view(lab);
    assert.deepEqual(v.clients.map((c) => [c.host, c.state, c.version?.seq]), [
      ["web1", "current", v2.seq],
      ["web2", "current", v2.seq],
      ["web3", "current", v2.seq],
    ]);
    const c2 = v.converge.find((c) => c.seq === v2.seq)!;
    assert.deepEqual([c2.clients, c2.reached, c2.converged], [3, 3, true]);

    // A failed run is reported too (and still fails the run, with its own exit code).
    const dead = `rsync://${lab.ip(99)}:${lab.port(lab.ip(99))}/plugins/`;
    r = await client(3, "--source", dead, "--retries", "0");
    assert.equal(r.code, 3, r.stderr);
    const web3 = (await view(lab)).clients.find((c) => c.host === "web3")!;
    assert.equal(web3.state, "failing");
    assert.equal(web3.exit_code, 3);
    assert.match(web3.error ?? "", /cannot sync from rsync:\/\//);
    assert.equal(await fleetExit(), 1);

    // web2 runs as web3, with its own token, or with the primary's secret:
    // the runs succeed (a report never fails a run), web3's entry is unchanged.
    const web3Row = async () => {
      const c = (await view(lab)).clients.find((c) => c.host === "web3")!;
      return [c.state, c.exit_code, c.last_report];
    };
    const before = await web3Row();
    for (const token of [tokenOf(2), lab.reportToken]) {
      r = await runAs("web3", token, `${lab.dir}/dest2`, []);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(await web3Row(), before);
    assert.deepEqual((await view(lab)).clients.map((c) => c.host), ["web1", "web2", "web3"]);
    const m = (await http(`${base(lab)}/metrics`)).body;
    assert.match(m, /^fanout_fleet_reports_total\{result="bad_signature"\} 1$/m);
    assert.match(m, /^fanout_fleet_reports_total\{result="primary_secret"\} 1$/m);
    // The operator reads in the primary's log what the client lacks.
    assert.match(
      primary.stderr,
      /level=warn msg="report refused" .*why=primary_secret .*fanout render report-token --name web3/,
    );
  });
});

/** Control characters a terminal acts on (tab and newline aside). */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
const ESCAPES = "\x1b[2J\x1b]0;owned\x07\r\x9b31m\x00";

/** Resident memory of process `pid`, in MB. */
async function rssMb(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(await Deno.readTextFile(`/proc/${pid}/status`));
  return Number(m![1]) / 1024;
}

/** Size of the fleet database and its write-ahead log, in bytes. */
async function dbBytes(fleet: Fleet): Promise<number> {
  let n = 0;
  for (const f of ["fleet.db", "fleet.db-wal"]) {
    n += await Deno.stat(`${fleet.primary.stateDir}/${f}`).then((s) => s.size, () => 0);
  }
  return n;
}

/** Runs `fn` for 0..n-1, at most `width` at a time; returns each result's count. */
async function pool(n: number, width: number, fn: (i: number) => Promise<string>) {
  const counts: Record<string, number> = {};
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) {
      const k = await fn(next++);
      counts[k] = (counts[k] ?? 0) + 1;
    }
  }));
  return counts;
}

/** POSTs report `r` signed with `host`'s token; returns "status first-words". */
async function postAs(lab: Lab, host: string, r: ClientReport): Promise<string> {
  const body = JSON.stringify(r);
  const res = await post(lab, body, await signReport(await hostToken(TOKEN, host), body, now()));
  const retry = res.retryAfter ? ` retry-after=${res.retryAfter}` : "";
  return `${res.status} ${res.body.split(":")[0]}${retry}`;
}

Deno.test("fleet view: invented hosts are capped, a burst is rate-limited, no control character reaches a terminal", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: [],
      extra: "fleet:\n  max_clients: 50\n  report_rate_total: 120",
    });
    const primary = await lab.server("primary", "rsync1");
    const fleet = await loadFleet(lab.fleetFile);
    await report(fleet, run("web1", null));
    await report(fleet, run("web2", null));
    const rss0 = await rssMb(primary.pid);

    // 4,000 invented hosts, each with a valid token (as if the secret leaked):
    // 48 more fit under max_clients, the rest are refused.
    const flood = await pool(4000, 16, (i) => postAs(lab, `bogus${i}`, run(`bogus${i}`, null)));
    assert.deepEqual(flood, { "200 stored\n": 48, "403 too many clients": 3952 });
    const v = await view(lab);
    assert.equal(v.counts.clients.total, 50);
    const rss1 = await rssMb(primary.pid);
    const db = await dbBytes(fleet);
    console.log(
      `4,000 invented hosts: primary RSS ${rss0.toFixed(0)} → ${
        rss1.toFixed(0)
      } MB, fleet.db ${db} bytes`,
    );
    // 50 hosts' rows, and a write-ahead log SQLite checkpoints at ~4 MB.
    assert.ok(db < 6_000_000, `fleet.db and its log hold ${db} bytes for 50 hosts`);
    assert.ok(rss1 - rss0 < 40, `primary RSS grew ${rss0} → ${rss1} MB`);

    // A burst from the 50 known hosts, three each: beyond report_rate_total
    // (120 a minute, 50 used) the rest get 429 with Retry-After.
    const known = v.clients.map((c) => c.host);
    const burst = await pool(150, 16, (i) => {
      const host = known[i % known.length];
      return postAs(lab, host, run(host, null));
    });
    const limited = Object.entries(burst).filter(([k]) =>
      k.startsWith("429 too many reports from all clients")
    );
    assert.ok(limited.length > 0, JSON.stringify(burst));
    assert.ok((burst["200 stored\n"] ?? 0) >= 70, JSON.stringify(burst));
    const wait = Math.max(...limited.map(([k]) => Number(/retry-after=(\d+)/.exec(k)![1])));
    assert.ok(wait >= 1 && wait <= 60, `retry-after ${wait}`);
    // Once the burst is over, a real client is taken again after Retry-After.
    await sleep(wait * 1000);
    await report(fleet, run("web1", null));

    // Control characters in every free-text field of a report.
    const marker: VersionMarker = {
      seq: 1,
      commit: `abc${ESCAPES}`,
      ref: `main${ESCAPES}`,
      published_at: new Date().toISOString(),
    };
    await report(
      fleet,
      run("web2", marker, {
        exit_code: 3,
        error: `boom${ESCAPES}\nline 2`,
        source: `rsync://x/${ESCAPES}`,
      }),
    );
    const json = (await http(`${base(lab)}/fleet.json?host=web2`)).body;
    assert.doesNotMatch(json, /\\u00(0[0-8]|1[0-9a-f]|7f|8[0-9a-f]|9[0-9a-f])/i);
    assert.doesNotMatch(json, CONTROL);
    const web2 = JSON.parse(json).clients[0];
    assert.equal(web2.error, "boom[2J]0;owned31m\nline 2");
    assert.equal(web2.version.ref, "main[2J]0;owned31m");
    const page = (await http(`${base(lab)}/fleet`)).body;
    assert.doesNotMatch(page, CONTROL);
    assert.match(page, /boom\[2J\]0;owned31m/);
    let r = await fanoutFleet(lab);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stdout + r.stderr, CONTROL);
    assert.match(r.stdout, /^web2 +failing +1 .* boom\[2J\]0;owned31m$/m);
    r = await fanoutFleet(lab, "--json");
    assert.doesNotMatch(r.stdout, CONTROL);

    // A primary (or something in its place) that answers with escapes: the
    // error line is clean, the exit code 3.
    await primary.stop();
    assert.doesNotMatch(primary.stderr, CONTROL);
    const h = lab.hosts.rsync1;
    const ac = new AbortController();
    const fake = Deno.serve(
      { hostname: h.ip, port: h.health, signal: ac.signal, onListen: () => {} },
      () => new Response(`nope${ESCAPES}`, { status: 500 }),
    );
    try {
      r = await fanoutFleet(lab);
    } finally {
      ac.abort();
      await fake.finished;
    }
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /HTTP 500 nope\[2J\]0;owned31m/);
    assert.doesNotMatch(r.stderr, CONTROL);
  });
});
