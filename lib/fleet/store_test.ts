// The primary's report database, on a real SQLite file in a temp dir: what
// it keeps, what retention drops, and that a host's history stays bounded
// however its runs differ.
import assert from "node:assert/strict";
import { FleetStore, HISTORY_PER_HOST } from "./store.ts";
import type { ClientReport } from "../report/mod.ts";
import type { VersionMarker } from "../version/mod.ts";

let started = Date.parse("2026-11-25T00:00:00Z");

/** A client's run report: a fresh start time each, the rest from `over`. */
function run(host: string, version: VersionMarker | null, over: Partial<ClientReport> = {}) {
  return {
    host,
    version,
    started_at: new Date(started++).toISOString(),
    duration_ms: 120,
    exit_code: 0,
    drift: 0,
    error: null,
    source: "rsync://127.0.0.1:873/plugins/",
    ...over,
  };
}

Deno.test("fleet store: retention prunes old reports, hosts and versions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-store-" });
  try {
    const day = 86_400_000;
    const t = Date.parse("2026-11-25T12:00:00Z");
    const mk = (seq: number): VersionMarker => ({
      seq,
      commit: `c${seq}`,
      ref: "main",
      published_at: new Date(t - (10 - seq) * day).toISOString(),
    });
    let store = await FleetStore.open(`${dir}/fleet.db`);
    for (const seq of [1, 2, 3]) store.recordVersion(mk(seq), t - (10 - seq) * day);
    store.addReport(run("old", mk(1)), t - 9 * day, null);
    store.addReport(run("web1", mk(1)), t - 9 * day, null);
    store.addReport(run("web1", mk(3)), t - 1 * day, "127.0.0.9");
    store.addReport(run("web2", mk(2), { exit_code: 3, error: "boom" }), t - 2 * day, null);
    // The same run again adds nothing to the history; a change does.
    store.addReport(
      run("web2", mk(2), { exit_code: 3, error: "boom" }),
      t - 2 * day + 60_000,
      null,
    );
    assert.equal(store.historyCount(), 4);
    store.addReport(
      run("web2", mk(2), { exit_code: 3, error: "bang" }),
      t - 2 * day + 120_000,
      null,
    );
    assert.equal(store.historyCount(), 5);
    store.close();
    // Reopened: still there; then a week's retention drops what is older.
    store = await FleetStore.open(`${dir}/fleet.db`);
    assert.equal(store.prune(t, 7 * day), 2);
    assert.equal(store.historyCount(), 3);
    assert.deepEqual(store.clients().map((c) => [c.host, c.version?.seq, c.exit_code]), [
      ["web1", 3, 0],
      ["web2", 2, 3],
    ]);
    assert.deepEqual(store.versions(10).map((v) => v.seq), [3]);
    assert.deepEqual(store.reach(3).map((r) => [r.host, r.reached_at]), [
      ["web1", t - 1 * day],
      ["web2", null],
    ]);
    // A host whose every run differs keeps its newest HISTORY_PER_HOST runs.
    for (let i = 0; i < HISTORY_PER_HOST + 20; i++) {
      store.addReport(run("flappy", mk(3), { exit_code: 3, error: `err ${i}` }), t + i, null);
    }
    assert.equal(store.historyCount(), 3 + HISTORY_PER_HOST);
    store.close();
    // Not a database: one clear line.
    await Deno.writeTextFile(`${dir}/bad.db`, "this is not sqlite ".repeat(100));
    await assert.rejects(
      () => FleetStore.open(`${dir}/bad.db`),
      /cannot open the fleet database .*bad\.db/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fleet store: what a host sends is stored as data, quotes and all; its last success is kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-store-" });
  const store = await FleetStore.open(`${dir}/fleet.db`);
  try {
    const host = "web1'); DROP TABLE clients; --";
    const v: VersionMarker = { seq: 1, commit: "c'1", ref: 'ma"in', published_at: "x" };
    store.addReport(run(host, v), 1000, null);
    store.addReport(run(host, v, { exit_code: 3, error: "boom'\"" }), 2000, "10.0.0.7");
    assert.equal(store.hasClient(host), true);
    assert.equal(store.clientCount(), 1);
    const [c] = store.clients();
    assert.deepEqual(
      [c.host, c.version, c.exit_code, c.error, c.received_at, c.last_ok_at, c.remote],
      [host, v, 3, "boom'\"", 2000, 1000, "10.0.0.7"],
    );
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fleet store: a NUL is stripped from every string, never a cut at it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-store-" });
  try {
    const store = await FleetStore.open(`${dir}/fleet.db`);
    const v = { seq: 1, commit: "ab\0cd", ref: "ma\0in", published_at: "2026\0-11-25" };
    const clean = { seq: 1, commit: "abcd", ref: "main", published_at: "2026-11-25" };
    store.recordVersion(v, 5);
    assert.deepEqual(store.versions(5), [{ ...clean, seen_at: 5 }]);
    const report = run("web\0x", v, {
      exit_code: 1,
      error: "boom\0 hidden",
      source: "rsync://a\0b/",
    });
    store.addReport(report, 10, "10.0.0.\x007");
    const [c] = store.clients();
    assert.equal(c.host, "webx");
    assert.equal(c.error, "boom hidden");
    assert.equal(c.source, "rsync://ab/");
    assert.equal(c.remote, "10.0.0.7");
    assert.deepEqual(c.version, clean);
    assert.equal(store.hasClient("web\0x"), true);
    assert.equal(store.hasClient("webx"), true);
    assert.equal(store.hasClient("web"), false);
    // The same run again is the same stored text: no new history entry.
    store.addReport({ ...report }, 11, null);
    assert.equal(store.historyCount(), 1);
    assert.deepEqual(store.reach(1).map((r) => [r.host, r.reached_at]), [["webx", 10]]);
    store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
