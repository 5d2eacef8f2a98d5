/**
 * The fleet view's model: what `GET /fleet.json` returns, what `/fleet`
 * draws and `fanout fleet` prints, and the rules that judge each host.
 * Pure functions and types: no I/O, no database.
 *
 * A client is, in this order of precedence:
 * - `silent`: its last report is older than `fleet.silent_after`;
 * - `failing`: its last run exited non-zero;
 * - `behind`: its tree holds an older version than the primary's;
 * - `current`: its tree holds the primary's version.
 *
 * A server is `current`, `behind` (its acknowledged version is older),
 * `failing` (pushes to it fail or are refused) or `unknown` (its upstream's
 * status could not be read).
 *
 * @module
 */

import type { VersionMarker } from "../version/mod.ts";
import type { ClientReport } from "../report/mod.ts";

/** How a client stands. */
export type ClientState = "current" | "behind" | "failing" | "silent";
/** Every client state, in display order. */
export const CLIENT_STATES: readonly ClientState[] = ["current", "behind", "failing", "silent"];
/** How a server stands. */
export type ServerState = "current" | "behind" | "failing" | "unknown";

/** One client in the view. */
export interface ClientRow {
  host: string;
  state: ClientState;
  version: VersionMarker | null;
  /** When its last run started (ISO, the client's clock). */
  last_run: string;
  /** When the primary received its last report (ISO). */
  last_report: string;
  /** Seconds since that report. */
  age_s: number;
  duration_ms: number;
  exit_code: number;
  drift: number;
  error: string | null;
  source: string | null;
  /** When it last reported a successful run (ISO), or null. */
  last_ok: string | null;
}

/** One rsync server in the view. */
export interface ServerRow {
  name: string;
  kind: "primary" | "replica";
  /** Who pushes to it (null for the primary). */
  upstream: string | null;
  /** Its tree's version (the primary) or the one its upstream acknowledged. */
  version: VersionMarker | null;
  state: ServerState;
  /** Seconds its oldest unpushed change has waited, or null when unknown. */
  lag_s: number | null;
  error: string | null;
}

/** How long one published version took to reach the clients. */
export interface Convergence {
  seq: number;
  commit: string;
  ref: string;
  published_at: string;
  /** Clients concerned: those there at the publish (minus silent ones that never got it). */
  clients: number;
  /** Of those, how many have it (or a newer one). */
  reached: number;
  /** True when every client concerned has it. */
  converged: boolean;
  /** Seconds from publish until half of them had it, null until then. */
  p50_s: number | null;
  /** Seconds until the last one had it, null until then. */
  max_s: number | null;
}

/** Counts of hosts by state. */
export interface FleetCounts {
  clients: Record<ClientState | "total", number>;
  servers: Record<ServerState | "total", number>;
}

/** The whole fleet view (`GET /fleet.json`). */
export interface FleetSnapshot {
  generated_at: string;
  /** The primary's name. */
  primary: string;
  /** The version on the primary: what every host should have. */
  current: VersionMarker | null;
  /** Clients are silent after this many seconds without a report. */
  silent_after_s: number;
  /** False when the primary has no report token (it refuses reports). */
  reports_enabled: boolean;
  counts: FleetCounts;
  /** True when every server and client is current. */
  ok: boolean;
  /** What is not current, in short sentences ("2 clients behind"). */
  problems: string[];
  servers: ServerRow[];
  /** The clients, filtered when the request asked for it (counts are not). */
  clients: ClientRow[];
  /** The newest published versions, newest first. */
  converge: Convergence[];
}

/** What a client row is made from: its stored latest report, and when the primary got it. */
export interface ClientInput extends ClientReport {
  /** When the primary received the report (ms). */
  received_at: number;
  /** When the last report with exit code 0 arrived (ms), or null. */
  last_ok_at: number | null;
}

/**
 * Judges one client at `now` (ms).
 *
 * @example
 * ```ts
 * clientState({ exit_code: 0, version: v41, received_at: Date.now() }, v42, Date.now(), 300_000); // "behind"
 * ```
 */
export function clientState(
  c: Pick<ClientInput, "exit_code" | "version" | "received_at">,
  current: VersionMarker | null,
  now: number,
  silentAfter: number,
): ClientState {
  if (now - c.received_at > silentAfter) return "silent";
  if (c.exit_code !== 0) return "failing";
  if (current && (c.version === null || c.version.seq < current.seq)) return "behind";
  return "current";
}

/** The row of one client. */
export function clientRow(
  c: ClientInput,
  current: VersionMarker | null,
  now: number,
  silentAfter: number,
): ClientRow {
  return {
    host: c.host,
    state: clientState(c, current, now, silentAfter),
    version: c.version,
    last_run: c.started_at,
    last_report: new Date(c.received_at).toISOString(),
    age_s: Math.max(0, Math.round((now - c.received_at) / 1000)),
    duration_ms: c.duration_ms,
    exit_code: c.exit_code,
    drift: c.drift,
    error: c.error,
    source: c.source,
    last_ok: c.last_ok_at === null ? null : new Date(c.last_ok_at).toISOString(),
  };
}

/** What the push engine (or a relay's `/status`) says of one replica. */
export interface PushedReplica {
  name: string;
  state: string;
  version: VersionMarker | null;
  lag_s: number;
  last_error: string | null;
}

/**
 * Judges a replica from its upstream's push status.
 *
 * @example
 * ```ts
 * replicaState({ name: "rsync2", state: "ok", version: v42, lag_s: 0, last_error: null }, v42); // "current"
 * ```
 */
export function replicaState(r: PushedReplica, current: VersionMarker | null): ServerState {
  if (r.state === "failing" || r.state === "refused") return "failing";
  if (current && (r.version === null || r.version.seq < current.seq)) return "behind";
  return "current";
}

/**
 * Time-to-converge of `v`, published at `t0` (ms), from each host's progress.
 * The clients concerned are those that were there when it was published:
 * heard of before `t0` (give or take `silentAfter`) and not silent at the
 * time. Of those, one that is silent now and never got the version is left
 * out: it is reported as silent, and would otherwise keep the version
 * unconverged for ever.
 *
 * @example
 * ```ts
 * convergence(v42, [{ reached_at: t0 + 30_000, last_report_at: now, first_seen: t0 - 86_400_000 }], now, 300_000).max_s; // 30
 * ```
 */
export function convergence(
  v: VersionMarker,
  reach: { reached_at: number | null; last_report_at: number; first_seen: number }[],
  now: number,
  silentAfter: number,
  t0: number = Date.parse(v.published_at),
): Convergence {
  const concerned = reach.filter((r) =>
    r.first_seen <= t0 + silentAfter && r.last_report_at >= t0 - silentAfter &&
    (r.reached_at !== null || now - r.last_report_at <= silentAfter)
  );
  const times = concerned.filter((r) => r.reached_at !== null)
    .map((r) => Math.max(0, (r.reached_at! - t0) / 1000))
    .sort((a, b) => a - b);
  const n = concerned.length;
  const round = (s: number) => Math.round(s * 10) / 10;
  const half = Math.ceil(n / 2);
  return {
    seq: v.seq,
    commit: v.commit,
    ref: v.ref,
    published_at: v.published_at,
    clients: n,
    reached: times.length,
    converged: n > 0 && times.length === n,
    p50_s: n > 0 && times.length >= half ? round(times[half - 1]) : null,
    max_s: n > 0 && times.length === n ? round(times[n - 1]) : null,
  };
}

/** Counts, `ok` and the problem sentences of a set of rows. */
export function summarize(
  servers: ServerRow[],
  clients: ClientRow[],
): Pick<FleetSnapshot, "counts" | "ok" | "problems"> {
  const c = { total: clients.length, current: 0, behind: 0, failing: 0, silent: 0 };
  for (const row of clients) c[row.state]++;
  const s = { total: servers.length, current: 0, behind: 0, failing: 0, unknown: 0 };
  for (const row of servers) s[row.state]++;
  const problems: string[] = [];
  const say = (n: number, what: string, state: string) => {
    if (n > 0) problems.push(`${n} ${what}${n === 1 ? "" : "s"} ${state}`);
  };
  say(s.behind, "server", "behind");
  say(s.failing, "server", "failing");
  say(s.unknown, "server", "unknown");
  say(c.behind, "client", "behind");
  say(c.failing, "client", "failing");
  say(c.silent, "client", "silent");
  return { counts: { clients: c, servers: s }, ok: problems.length === 0, problems };
}

/** A filter of the client list (`?state=behind&host=web`). */
export interface ClientFilter {
  /** Only clients in these states; empty: all. */
  states: ClientState[];
  /** Only hosts whose name contains this (case-insensitive); empty: all. */
  host: string;
}

/**
 * Reads a filter from URL query values; unknown states are ignored.
 *
 * @example
 * ```ts
 * parseFilter(["behind,failing"], "web"); // { states: ["behind", "failing"], host: "web" }
 * ```
 */
export function parseFilter(states: string[], host: string | undefined): ClientFilter {
  const wanted = states.flatMap((s) => s.split(",")).map((s) => s.trim().toLowerCase());
  return {
    states: CLIENT_STATES.filter((s) => wanted.includes(s)),
    host: (host ?? "").trim().slice(0, 100),
  };
}

/** The clients `f` lets through. */
export function filterClients(rows: ClientRow[], f: ClientFilter): ClientRow[] {
  const needle = f.host.toLowerCase();
  return rows.filter((r) =>
    (f.states.length === 0 || f.states.includes(r.state)) &&
    (needle === "" || r.host.toLowerCase().includes(needle))
  );
}
