/**
 * The fleet view on the primary: takes client reports (`POST /report`),
 * keeps them in {@linkcode FleetStore}, and answers "which host has which
 * version" as a page (`GET /fleet`), as JSON (`GET /fleet.json`) and as
 * Prometheus gauges on `/metrics`.
 *
 * A report must be signed with its host's own token (lib/report/sign.ts:
 * derived from the primary's report secret and the host's name, so a client
 * can report as itself only), fresh (within 5 minutes of the primary's
 * clock), never seen before, at most 8 KiB, from one of at most
 * `fleet.max_clients` hosts, and within the host's rate (`fleet.report_rate`
 * a minute) and all hosts' (`fleet.report_rate_total`): otherwise 400, 401,
 * 403, 413 or 429, and nothing is stored.
 *
 * Servers: the primary knows what its push engine acknowledged for its direct
 * replicas; replicas behind a relay are read from that relay's `/status`.
 *
 * @module
 */

import type { Registry } from "../health/mod.ts";
import { fetchFailure, MAX_STATUS_BODY, readLimited } from "../http/mod.ts";
import type { Context, Hono } from "hono";
import {
  DEFAULTS,
  dialable,
  formatDuration,
  formatHostPort,
  type Logger,
  stripControlDeep,
} from "../core/mod.ts";
import { downstreamsOf, type Fleet, readReportToken, type ServerHost } from "../config/mod.ts";
import { FleetStore } from "./store.ts";
import { renderFleetPage } from "./page.ts";
import {
  type ClientRow,
  clientRow,
  convergence,
  filterClients,
  type FleetSnapshot,
  parseFilter,
  type PushedReplica,
  replicaState,
  type ServerRow,
  summarize,
} from "./state.ts";
import {
  hostToken,
  parseClientReport,
  parseSignature,
  type Signature,
  SIGNATURE_HEADER,
  verifySignature,
} from "../report/mod.ts";
import { parseMarker, readMarker, type VersionMarker } from "../version/mod.ts";
import { GlobalRate, RateLimiter, ReplayCache } from "./report_guards.ts";

/** Options of {@linkcode openFleetView}. */
export interface FleetViewOptions {
  fleet: Fleet;
  /** The primary. */
  self: ServerHost;
  registry: Registry;
  log: Logger;
}

/** How many published versions the convergence chart and JSON cover. */
const CHART_VERSIONS = 20;
/** Relays' `/status` is read at most this often (ms). */
const RELAY_POLL = 2_000;
const PRUNE_EVERY = 3_600_000;

/**
 * Opens the fleet view of the primary `o.self`: checks the report token,
 * opens the database `<state dir>/fleet.db`, prunes it, registers the gauges.
 *
 * @throws {ConfigError} when the report token file exists but is readable by
 * others, unreadable or empty (a missing one turns reports off, with a warning).
 * @throws {EnvironmentError} when the database cannot be opened.
 *
 * @example
 * ```ts
 * const view = await openFleetView({ fleet, self: fleet.primary, registry, log });
 * view.setReplicaSource(() => engine.status());
 * startHealth(self.health, source, view.routes);
 * await view.close();
 * ```
 */
export async function openFleetView(o: FleetViewOptions): Promise<FleetView> {
  const token = await readReportToken(o.fleet);
  if (token === null) {
    o.log.warn("fleet reports off", {
      reason: `${o.fleet.auth.reportTokenFile} does not exist`,
      hint: "create it (a random secret, mode 600), then give each client its own token: " +
        "fanout render report-token --name HOST",
    });
  }
  await Deno.mkdir(o.self.stateDir, { recursive: true });
  const store = await FleetStore.open(`${o.self.stateDir}/fleet.db`);
  const view = new FleetView(o, store, token);
  view.start();
  return view;
}

/** Why a report was refused, as the metric label says it. */
type Refusal =
  | "disabled"
  | "unsigned"
  | "stale"
  | "bad_signature"
  | "replayed"
  | "too_large"
  | "invalid"
  | "primary_secret"
  | "too_many_clients"
  | "rate_limited";

/** The primary's fleet view; see {@linkcode openFleetView}. */
export class FleetView {
  #o: FleetViewOptions;
  #store: FleetStore;
  #token: string | null;
  #current: VersionMarker | null = null;
  #replicas: () => PushedReplica[] = () => [];
  #relays: ServerHost[];
  /** Per relay: what its /status said of its replicas, or why it could not be read. */
  #relayStatus = new Map<string, PushedReplica[] | string>();
  #relayAt = 0;
  #relayPoll: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #pruneTimer: ReturnType<typeof setInterval> | undefined;
  #rate: RateLimiter;
  #rateAll: GlobalRate;
  #replay = new ReplayCache(DEFAULTS.fleet.maxClockSkew);
  #warned = new Map<string, number>();
  #reports;
  #closed = false;

  constructor(o: FleetViewOptions, store: FleetStore, token: string | null) {
    this.#o = o;
    this.#store = store;
    this.#token = token;
    this.#rate = new RateLimiter(o.fleet.fleet.reportRate, 60_000);
    this.#rateAll = new GlobalRate(o.fleet.fleet.reportRateTotal);
    this.#relays = o.fleet.replicas.filter((r) => downstreamsOf(o.fleet, r.name).length > 0);
    const r = o.registry;
    this.#reports = r.counter(
      "fanout_fleet_reports_total",
      "Client reports received, by result (stored, or why refused).",
    );
    const clients = (state: string) => () =>
      [[{}, this.#clientRows().filter((c) => c.state === state).length]] as [
        Record<string, string>,
        number,
      ][];
    r.gauge(
      "fanout_fleet_clients",
      "Clients known to the fleet view (reported within retention).",
      () => [[{}, this.#store.clients().length]],
    );
    r.gauge(
      "fanout_fleet_clients_current",
      "Clients whose tree holds the primary's version.",
      clients("current"),
    );
    r.gauge(
      "fanout_fleet_clients_behind",
      "Clients whose tree holds an older version than the primary's.",
      clients("behind"),
    );
    r.gauge("fanout_fleet_clients_failing", "Clients whose last run failed.", clients("failing"));
    r.gauge(
      "fanout_fleet_clients_silent",
      "Clients with no report for longer than fleet.silent_after.",
      clients("silent"),
    );
    r.gauge(
      "fanout_fleet_replicas_lagging",
      "Replicas not current: behind the primary's version, failing, or unknown.",
      () => [[
        {},
        this.#serverRows().filter((s) => s.kind === "replica" && s.state !== "current").length,
      ]],
    );
  }

  /** Where the primary's push engine status comes from (its direct replicas). */
  setReplicaSource(fn: () => PushedReplica[]): void {
    this.#replicas = fn;
  }

  /** Reads the primary's version, prunes, and starts the periodic refresh. */
  start(): void {
    this.#refreshVersion();
    this.#prune();
    this.#timer = setInterval(() => {
      this.#refreshVersion();
      if (Date.now() - this.#relayAt >= RELAY_POLL) this.#pollRelays().catch(() => {});
    }, 1000);
    this.#pruneTimer = setInterval(
      () => this.#prune(),
      Math.min(PRUNE_EVERY, Math.max(60_000, this.#o.fleet.fleet.retention / 10)),
    );
  }

  /** Adds `POST /report`, `GET /fleet` and `GET /fleet.json` to the health app. */
  routes = (app: Hono): void => {
    app.post("/report", (c) => this.#report(c));
    app.get("/fleet.json", async (c) => {
      return c.json(await this.snapshot(c.req.queries("state") ?? [], c.req.query("host")));
    });
    app.get("/fleet", async (c) => {
      const states = c.req.queries("state") ?? [];
      const host = c.req.query("host");
      const snap = await this.snapshot(states, host);
      c.header("cache-control", "no-store");
      return c.html(renderFleetPage(snap, parseFilter(states, host)));
    });
    for (
      const [path, allow] of [["/report", "POST"], ["/fleet", "GET, HEAD"], [
        "/fleet.json",
        "GET, HEAD",
      ]]
    ) {
      app.all(path, (c) => c.text(`method not allowed: use ${allow}\n`, 405, { allow }));
    }
  };

  /**
   * The fleet view now; the client list filtered by `states` (names, or
   * comma-separated lists) and a `host` substring.
   */
  async snapshot(states: string[] = [], host?: string): Promise<FleetSnapshot> {
    this.#refreshVersion();
    if (Date.now() - this.#relayAt >= RELAY_POLL) await this.#pollRelays();
    const now = Date.now();
    const servers = this.#serverRows();
    const clients = this.#clientRows(now);
    const converge = this.#store.versions(CHART_VERSIONS)
      .filter((v) => this.#current === null || v.seq <= this.#current.seq)
      .map((v) => {
        // A marker whose time does not parse is timed from when the primary saw it.
        const t0 = Date.parse(v.published_at) || v.seen_at;
        return convergence(
          v,
          this.#store.reach(v.seq),
          now,
          this.#o.fleet.fleet.silentAfter,
          t0,
        );
      });
    // Reports, relays' /status and rows stored by older versions: whatever a
    // client or a server said reaches terminals through `fanout fleet`.
    return stripControlDeep({
      generated_at: new Date(now).toISOString(),
      primary: this.#o.self.name,
      current: this.#current,
      silent_after_s: this.#o.fleet.fleet.silentAfter / 1000,
      reports_enabled: this.#token !== null,
      ...summarize(servers, clients),
      servers,
      clients: filterClients(clients, parseFilter(states, host)),
      converge,
    });
  }

  /** Stops the timers and closes the database. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#pruneTimer);
    await this.#relayPoll?.catch(() => {});
    this.#store.close();
  }

  // -------------------------------------------------------------------------
  // POST /report

  async #report(c: Context): Promise<Response> {
    const refuse = (
      why: Refusal,
      status: 400 | 401 | 403 | 413 | 429 | 503,
      text: string,
      headers?: Record<string, string>,
    ) => {
      this.#reports.inc({ result: why });
      this.#warnOnce(why, text, c);
      return c.text(`${text}\n`, status, headers);
    };
    if (this.#token === null) {
      return refuse(
        "disabled",
        503,
        `reports are off: ${this.#o.fleet.auth.reportTokenFile} does not exist on the primary`,
      );
    }
    const max = DEFAULTS.fleet.maxReportBytes;
    const body = await readLimited(c.req.raw, max);
    if (body === null) return refuse("too_large", 413, `report larger than ${max} bytes`);
    const sig = parseSignature(c.req.header(SIGNATURE_HEADER));
    if (!sig) {
      return refuse(
        "unsigned",
        401,
        `unsigned report: expected header ${SIGNATURE_HEADER}: t=<unix seconds>,sig=<hex HMAC-SHA256>`,
      );
    }
    const now = Date.now();
    const skew = Math.abs(now - sig.t * 1000);
    if (skew > DEFAULTS.fleet.maxClockSkew) {
      return refuse(
        "stale",
        401,
        `stale report: signed ${formatDuration(skew)} away from the primary's clock (at most ${
          formatDuration(DEFAULTS.fleet.maxClockSkew)
        })`,
      );
    }
    // The host's name picks the key the signature is checked with, so the
    // body is read (at most 8 KiB) before it is trusted.
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return refuse("invalid", 400, "report is not JSON");
    }
    const report = parseClientReport(parsed);
    if (typeof report === "string") return refuse("invalid", 400, `invalid report: ${report}`);
    const refusal = await this.#checkSignature(report.host, body, sig);
    if (refusal) return refuse(refusal.why, 401, refusal.text);
    if (!this.#replay.remember(sig.sig, sig.t * 1000, now)) {
      return refuse("replayed", 401, "replayed report: this signature was already used");
    }
    const cfg = this.#o.fleet.fleet;
    if (!this.#store.hasClient(report.host) && this.#store.clientCount() >= cfg.maxClients) {
      return refuse(
        "too_many_clients",
        403,
        `too many clients: the fleet view keeps at most ${cfg.maxClients} hosts (fleet.max_clients); ` +
          `${report.host} is not one of them`,
      );
    }
    const wait = this.#rate.take(report.host, now);
    if (wait > 0) {
      return refuse(
        "rate_limited",
        429,
        `too many reports from ${report.host}: at most ${cfg.reportRate} a minute`,
        { "retry-after": String(Math.ceil(wait / 1000)) },
      );
    }
    const waitAll = this.#rateAll.take(now);
    if (waitAll > 0) {
      return refuse(
        "rate_limited",
        429,
        `too many reports from all clients: at most ${cfg.reportRateTotal} a minute (fleet.report_rate_total)`,
        { "retry-after": String(Math.ceil(waitAll / 1000)) },
      );
    }
    if (report.version && this.#current && report.version.seq <= this.#current.seq) {
      this.#store.recordVersion(report.version, now);
    }
    this.#store.addReport(report, now, remoteOf(c));
    this.#reports.inc({ result: "stored" });
    this.#o.log.debug("report", {
      host: report.host,
      version: report.version?.seq,
      exit: report.exit_code,
    });
    return c.text("stored\n", 200);
  }

  /**
   * Null when `sig` is `host`'s: made with the token derived from the
   * primary's secret and that name. A report signed with the secret itself
   * (a client given the shared secret instead of its own token) is refused
   * with what to install instead.
   */
  async #checkSignature(
    host: string,
    body: string,
    sig: Signature,
  ): Promise<{ why: Refusal; text: string } | null> {
    const secret = this.#token!;
    if (await verifySignature(await hostToken(secret, host), body, sig)) return null;
    const fix = `on the primary, fanout render report-token --name ${host} -c FILE prints ` +
      `${host}'s token; install it as ${host}'s auth.report_token_file`;
    if (await verifySignature(secret, body, sig)) {
      return {
        why: "primary_secret",
        text: `signed with the primary's report secret, not ${host}'s own token: ${fix}`,
      };
    }
    return {
      why: "bad_signature",
      text: `bad signature: not signed with ${host}'s token (${fix})`,
    };
  }

  /** One warning per kind of refusal a minute: a flood must not flood the log. */
  #warnOnce(why: string, text: string, c: Context): void {
    const now = Date.now();
    if (now - (this.#warned.get(why) ?? 0) < 60_000) return;
    this.#warned.set(why, now);
    this.#o.log.warn("report refused", { why, from: remoteOf(c) ?? undefined, detail: text });
  }

  // -------------------------------------------------------------------------
  // rows

  #clientRows(now = Date.now()): ClientRow[] {
    return this.#store.clients().map((c) =>
      clientRow(c, this.#current, now, this.#o.fleet.fleet.silentAfter)
    );
  }

  #serverRows(): ServerRow[] {
    const fleet = this.#o.fleet;
    const byName = new Map<string, ServerRow>();
    for (const r of this.#replicas()) byName.set(r.name, this.#replicaRow(r, this.#o.self.name));
    for (const relay of this.#relays) {
      const st = this.#relayStatus.get(relay.name);
      if (st === undefined) continue;
      for (const d of downstreamsOf(fleet, relay.name)) {
        const p = typeof st === "string" ? undefined : st.find((x) => x.name === d.name);
        byName.set(
          d.name,
          p ? this.#replicaRow(p, relay.name) : unknownRow(
            d,
            typeof st === "string" ? st : `${relay.name}'s /status does not list it`,
          ),
        );
      }
    }
    const rows: ServerRow[] = [{
      name: this.#o.self.name,
      kind: "primary",
      upstream: null,
      version: this.#current,
      state: "current",
      lag_s: null,
      error: null,
    }];
    for (const r of fleet.replicas) {
      rows.push(
        byName.get(r.name) ?? {
          name: r.name,
          kind: "replica",
          upstream: r.upstream,
          version: null,
          state: "unknown",
          lag_s: null,
          error: `no status yet from ${r.upstream}`,
        },
      );
    }
    return rows;
  }

  #replicaRow(r: PushedReplica, upstream: string): ServerRow {
    return {
      name: r.name,
      kind: "replica",
      upstream,
      version: r.version,
      state: replicaState(r, this.#current),
      lag_s: r.lag_s,
      error: r.last_error,
    };
  }

  #refreshVersion(): void {
    const v = readMarker(this.#o.self.path);
    if (this.#closed) return;
    this.#current = v;
    if (v) this.#store.recordVersion(v, Date.now());
  }

  /** Reads each relay's `/status`: what it pushed to its own replicas. */
  #pollRelays(): Promise<void> {
    if (this.#relays.length === 0) return Promise.resolve();
    this.#relayPoll ??= (async () => {
      try {
        await Promise.all(this.#relays.map(async (relay) => {
          try {
            const st = await fetchStatus(relay);
            this.#relayStatus.set(relay.name, pushedReplicas(st.replicas));
          } catch (e) {
            this.#relayStatus.set(
              relay.name,
              `cannot read ${relay.name}'s /status: ${(e as Error).message}`,
            );
          }
        }));
        this.#relayAt = Date.now();
      } finally {
        this.#relayPoll = null;
      }
    })();
    return this.#relayPoll;
  }

  #prune(): void {
    if (this.#closed) return;
    const n = this.#store.prune(Date.now(), this.#o.fleet.fleet.retention);
    if (n > 0) this.#o.log.info("fleet reports pruned", { reports: n });
  }
}

/**
 * The replicas a relay's `/status` says it pushed to, each checked field by
 * field: a relay is a server like any other, and what it sends reaches the
 * fleet page, `/fleet.json` and terminals. Entries that do not fit are left out.
 *
 * @example
 * ```ts
 * pushedReplicas([{ name: "rsync3", state: "ok", version: null, lag_s: 0, last_error: null }]);
 * ```
 */
export function pushedReplicas(v: unknown): PushedReplica[] {
  if (!Array.isArray(v)) return [];
  const out: PushedReplica[] = [];
  for (const r of v.slice(0, 1000)) {
    if (typeof r !== "object" || r === null) continue;
    const o = r as Record<string, unknown>;
    const version = o.version === null ? null : parseMarker(JSON.stringify(o.version ?? ""));
    if (typeof o.name !== "string" || typeof o.state !== "string") continue;
    if (o.version !== null && !version) continue;
    out.push({
      name: o.name,
      state: o.state,
      version,
      lag_s: typeof o.lag_s === "number" && Number.isFinite(o.lag_s) ? o.lag_s : 0,
      last_error: typeof o.last_error === "string" ? o.last_error.slice(0, 1000) : null,
    });
  }
  return out;
}

function unknownRow(d: ServerHost, error: string): ServerRow {
  return {
    name: d.name,
    kind: "replica",
    upstream: d.upstream,
    version: null,
    state: "unknown",
    lag_s: null,
    error,
  };
}

/**
 * GETs a server's `/status` within a second; a body past
 * {@linkcode MAX_STATUS_BODY} is a failed read.
 *
 * @throws {Error} with the reason: timed out, refused, HTTP status, too large.
 *
 * @example
 * ```ts
 * const st = await fetchStatus(fleet.servers.get("rsync2")!); // { role: "replica", replicas: [...] }
 * ```
 */
export async function fetchStatus(s: ServerHost): Promise<Record<string, unknown>> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 1000);
  try {
    const res = await fetch(`http://${formatHostPort(dialable(s.health, s.address))}/status`, {
      signal: ctl.signal,
    });
    const body = await readLimited(res, MAX_STATUS_BODY);
    if (body === null) throw new Error(`/status is larger than ${MAX_STATUS_BODY} bytes`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return JSON.parse(body);
  } catch (e) {
    throw new Error(fetchFailure(e));
  } finally {
    clearTimeout(timer);
  }
}

/** The peer address of a request, when Deno.serve gave one. */
function remoteOf(c: Context): string | null {
  const info = (c.env as { remoteAddr?: Deno.NetAddr } | undefined)?.remoteAddr;
  return info?.hostname ?? null;
}
