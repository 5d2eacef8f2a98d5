// The fleet view's rules, on plain data: how each client and server is
// judged, what a version's time to converge counts, the summary sentences,
// and the client filter read from a URL.
import assert from "node:assert/strict";
import {
  type ClientInput,
  type ClientRow,
  clientRow,
  clientState,
  convergence,
  filterClients,
  parseFilter,
  replicaState,
  type ServerRow,
  summarize,
} from "./state.ts";
import type { VersionMarker } from "../version/mod.ts";

const marker = (seq: number): VersionMarker => ({
  seq,
  commit: `c${seq}`,
  ref: "main",
  published_at: "2026-11-25T12:00:00.000Z",
});
const NOW = Date.parse("2026-11-25T12:10:00Z");
const SILENT = 300_000;

Deno.test("fleet state: which clients a version's time to converge counts", () => {
  const t0 = Date.parse("2026-11-25T12:00:00Z");
  const v: VersionMarker = {
    seq: 7,
    commit: "abc",
    ref: "main",
    published_at: new Date(t0).toISOString(),
  };
  const now = t0 + 600_000;
  const silentAfter = 300_000;
  const host = (first: number, last: number, reached: number | null) => ({
    first_seen: t0 + first,
    last_report_at: t0 + last,
    reached_at: reached === null ? null : t0 + reached,
  });
  const c = convergence(
    v,
    [
      host(-86_400_000, 590_000, 30_000), // got it after 30 s
      host(-86_400_000, 590_000, 90_000), // after 90 s
      host(-86_400_000, 590_000, null), // alive, not yet: holds it back
      host(-86_400_000, 100_000, null), // silent since, never got it: left out
      host(-86_400_000, -3_600_000, null), // silent before the publish: left out
      host(3_600_000, 590_000, 3_600_000), // joined later (impossible here, but): left out
      host(60_000, 590_000, 60_000), // joined within silent_after of the publish: counted
    ],
    now,
    silentAfter,
    t0,
  );
  assert.deepEqual(
    [c.clients, c.reached, c.converged, c.p50_s, c.max_s],
    [4, 3, false, 60, null],
  );
  const done = convergence(
    v,
    [
      host(-1000, 590_000, 30_000),
      host(-1000, 590_000, -5_000), // had it before the publish's clock said so: 0 s
    ],
    now,
    silentAfter,
    t0,
  );
  assert.deepEqual([done.clients, done.reached, done.converged, done.p50_s, done.max_s], [
    2,
    2,
    true,
    0,
    30,
  ]);
});

Deno.test("fleet state: a client is silent, failing, behind or current, in that order", () => {
  const c = (exit_code: number, version: VersionMarker | null, ago: number) => ({
    exit_code,
    version,
    received_at: NOW - ago,
  });
  assert.equal(clientState(c(3, marker(1), SILENT + 1), marker(2), NOW, SILENT), "silent");
  assert.equal(clientState(c(3, marker(2), SILENT), marker(2), NOW, SILENT), "failing");
  assert.equal(clientState(c(0, marker(1), 0), marker(2), NOW, SILENT), "behind");
  assert.equal(clientState(c(0, null, 0), marker(2), NOW, SILENT), "behind");
  assert.equal(clientState(c(0, marker(2), 0), marker(2), NOW, SILENT), "current");
  assert.equal(
    clientState(c(0, marker(3), 0), marker(2), NOW, SILENT),
    "current",
    "ahead is not behind",
  );
  assert.equal(clientState(c(0, null, 0), null, NOW, SILENT), "current", "nothing published yet");
});

Deno.test("fleet state: a client's row: ISO times, age in whole seconds, never negative", () => {
  const input: ClientInput = {
    host: "web1",
    version: marker(2),
    started_at: "2026-11-25T12:09:00.000Z",
    duration_ms: 120,
    exit_code: 0,
    drift: 3,
    error: null,
    source: "rsync://10.0.0.5/plugins/",
    received_at: NOW - 61_400,
    last_ok_at: null,
  };
  const row = clientRow(input, marker(2), NOW, SILENT);
  assert.deepEqual(row, {
    host: "web1",
    state: "current",
    version: marker(2),
    last_run: "2026-11-25T12:09:00.000Z",
    last_report: "2026-11-25T12:08:58.600Z",
    age_s: 61,
    duration_ms: 120,
    exit_code: 0,
    drift: 3,
    error: null,
    source: "rsync://10.0.0.5/plugins/",
    last_ok: null,
  });
  // A report stamped after "now" (another clock): age 0, not negative.
  const later = clientRow(
    { ...input, received_at: NOW + 5000, last_ok_at: NOW },
    marker(2),
    NOW,
    SILENT,
  );
  assert.equal(later.age_s, 0);
  assert.equal(later.last_ok, "2026-11-25T12:10:00.000Z");
});

Deno.test("fleet state: a replica fails when its pushes do, else is judged by its version", () => {
  const r = (state: string, version: VersionMarker | null) => ({
    name: "rsync2",
    state,
    version,
    lag_s: 0,
    last_error: null,
  });
  assert.equal(replicaState(r("failing", marker(2)), marker(2)), "failing");
  assert.equal(replicaState(r("refused", marker(2)), marker(2)), "failing");
  assert.equal(replicaState(r("ok", marker(1)), marker(2)), "behind");
  assert.equal(replicaState(r("pushing", null), marker(2)), "behind");
  assert.equal(replicaState(r("ok", marker(2)), marker(2)), "current");
  assert.equal(replicaState(r("ok", null), null), "current");
});

Deno.test("fleet state: the summary counts every state and says what is not current", () => {
  const client = (state: ClientRow["state"]) => ({ state }) as ClientRow;
  const server = (state: ServerRow["state"]) => ({ state }) as ServerRow;
  const s = summarize(
    [server("current"), server("behind"), server("unknown"), server("unknown")],
    [client("current"), client("behind"), client("failing"), client("silent"), client("silent")],
  );
  assert.deepEqual(s.counts.clients, { total: 5, current: 1, behind: 1, failing: 1, silent: 2 });
  assert.deepEqual(s.counts.servers, { total: 4, current: 1, behind: 1, failing: 0, unknown: 2 });
  assert.equal(s.ok, false);
  assert.deepEqual(s.problems, [
    "1 server behind",
    "2 servers unknown",
    "1 client behind",
    "1 client failing",
    "2 clients silent",
  ]);
  assert.deepEqual(summarize([server("current")], [client("current")]).problems, []);
  assert.equal(summarize([], []).ok, true);
});

Deno.test("fleet state: the client filter from a URL: known states only, a bounded host needle", () => {
  assert.deepEqual(parseFilter(["behind,failing"], "web"), {
    states: ["behind", "failing"],
    host: "web",
  });
  assert.deepEqual(parseFilter([" SILENT ", "current", "nonsense,<script>"], "  "), {
    states: ["current", "silent"],
    host: "",
  });
  assert.equal(parseFilter([], "x".repeat(100_000)).host.length, 100);
  assert.deepEqual(parseFilter([], undefined), { states: [], host: "" });

  const rows = ["web1", "WEB2", "db1"].map((host, i) =>
    ({ host, state: i === 2 ? "behind" : "current" }) as ClientRow
  );
  const hosts = (f: ReturnType<typeof parseFilter>) => filterClients(rows, f).map((r) => r.host);
  assert.deepEqual(hosts(parseFilter([], "web")), ["web1", "WEB2"], "case-insensitive");
  assert.deepEqual(hosts(parseFilter(["behind"], "")), ["db1"]);
  assert.deepEqual(hosts(parseFilter(["behind"], "web")), []);
  assert.deepEqual(hosts(parseFilter([], "")), ["web1", "WEB2", "db1"]);
  assert.deepEqual(hosts(parseFilter([], ".*")), [], "the needle is text, not a pattern");
});
