// The backend pool against a lying server: a backend claiming a version far
// past the primary's, or one a verify hook rejects, leaves the rotation and
// bounds nobody; driven check by check with scripted versions.
import assert from "node:assert/strict";
import { type Backend, BackendPool } from "./backends.ts";
import { Logger } from "../core/mod.ts";
import type { VersionMarker } from "../version/mod.ts";

const marker = (seq: number): VersionMarker => ({
  seq,
  commit: "c0ffee",
  ref: "main",
  published_at: "2026-01-01T00:00:00Z",
});

/** A pool over `names` whose versions the test sets; `primary` is the reference. */
function pool(
  names: string[],
  opts: { primary: string; sideReference?: boolean; verify?: boolean },
) {
  const seq: Record<string, number | undefined> = {};
  const commit: Record<string, string> = {};
  const lines: string[] = [];
  const spec = (name: string, i: number) => ({
    name,
    addr: { host: "127.0.0.1", port: 1000 + i },
    health: { host: "127.0.0.1", port: 2000 + i },
  });
  const p = new BackendPool(names.map(spec), {
    fall: 2,
    rise: 2,
    versionGrace: 0,
    checkTimeout: 100,
    module: "plugins",
    proxyProtocol: false,
    log: new Logger({ sink: (l) => lines.push(l) }),
    check: () => Promise.resolve({ ok: true, ms: 1, error: null }),
    readVersion: (b: Backend) => {
      const s = seq[b.name];
      if (s === undefined) return Promise.reject(new Error("no status"));
      return Promise.resolve({ ...marker(s), commit: commit[b.name] ?? "c0ffee" });
    },
    reference: spec(opts.primary, 99),
    maxLead: 1,
    verifyVersion: opts.verify
      ? (_b, v) => Promise.resolve(v.commit === "c0ffee" ? null : "bad signature")
      : undefined,
  });
  return { p, seq, commit, lines };
}
const rotation = (p: BackendPool) => p.rotation.map((b) => b.name);

Deno.test("pool: a backend claiming far past the primary's version is distrusted; the honest ones stay", async () => {
  const { p, seq, lines } = pool(["rsync1", "rsync2", "rsync3"], { primary: "rsync1" });
  Object.assign(seq, { rsync1: 7, rsync2: 7, rsync3: 7 });
  await p.checkAll();
  assert.deepEqual(rotation(p), ["rsync1", "rsync2", "rsync3"]);

  seq.rsync2 = 999_999_999_999;
  await p.checkAll();
  assert.deepEqual(rotation(p), ["rsync1", "rsync3"], "nobody lags behind a forgery");
  assert.equal(p.newestSeq, 7);
  const forger = p.backends[1];
  assert.equal(
    forger.distrusted,
    "claims seq 999999999999, more than 1 past seq 7 (primary rsync1)",
  );
  assert.deepEqual(p.reference, { seq: 7, from: "primary rsync1", primary: true });
  assert.equal(p.degraded, null, "a distrusted seq is not 'seen' either");
  assert.ok(lines.some((l) => /msg="backend's version distrusted; out of rotation"/.test(l)));

  // A publish read mid-way (a replica at N+1 before the primary's read says
  // so) is within the lead: trusted, and no one lags behind it.
  seq.rsync2 = 8;
  await p.checkAll();
  assert.deepEqual(rotation(p), ["rsync1", "rsync2", "rsync3"]);
  assert.equal(p.newestSeq, 7);
  seq.rsync1 = 8;
  await p.checkAll();
  assert.deepEqual(rotation(p), ["rsync1", "rsync2"], "now rsync3 lags");

  // The primary's status blips: its last seq still bounds the others.
  seq.rsync1 = undefined;
  seq.rsync3 = 50;
  await p.checkAll();
  assert.match(
    p.backends[2].distrusted ?? "",
    /seq 50, more than 1 past seq 8 \(primary rsync1\)/,
  );
});

Deno.test("pool: the primary need not be a backend; without its version a median bounds; a verify hook distrusts", async () => {
  // The primary read on the side (not in proxy.backends).
  const side = pool(["rsync2", "rsync3"], { primary: "rsync1" });
  Object.assign(side.seq, { rsync1: 3, rsync2: 3, rsync3: 1_000 });
  await side.p.checkAll();
  assert.deepEqual(rotation(side.p), ["rsync2"]);
  assert.match(side.p.backends[1].distrusted ?? "", /past seq 3 \(primary rsync1\)/);

  // The primary's version unknown: the lower median of the backends bounds.
  const blind = pool(["a", "b", "c"], { primary: "p" });
  Object.assign(blind.seq, { a: 4, b: 4, c: 1_000 });
  await blind.p.checkAll();
  assert.deepEqual(rotation(blind.p), ["a", "b"]);
  assert.match(blind.p.backends[2].distrusted ?? "", /past seq 4 \(median of the backends\)/);

  // The hook (signatures, later) rejects a version: out of rotation, and no
  // reference either.
  const hooked = pool(["rsync1", "rsync2", "rsync3"], { primary: "rsync1", verify: true });
  Object.assign(hooked.seq, { rsync1: 2, rsync2: 2, rsync3: 2 });
  hooked.commit.rsync2 = "evil";
  await hooked.p.checkAll();
  assert.deepEqual(rotation(hooked.p), ["rsync1", "rsync3"]);
  assert.equal(hooked.p.backends[1].distrusted, "bad signature");
  hooked.commit.rsync1 = "evil";
  hooked.seq.rsync1 = 9;
  await hooked.p.checkAll();
  assert.deepEqual(hooked.p.reference?.seq, 2, "an unverified primary version is no reference");
});
