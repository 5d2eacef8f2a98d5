/**
 * Client run reports: after each run a client POSTs what it did to the
 * primary's health endpoint (`/report`), signed with its own report token
 * (lib/report/sign.ts: derived from the primary's secret and its name), so
 * the primary's fleet view knows which host has which version.
 *
 * A report is best effort: {@linkcode sendReport} waits at most a second and
 * never throws, because a primary that is down or slow must never fail or
 * hold up a cron run. The cron client loads this module, so it imports no
 * HTTP framework and no database.
 *
 * @module
 */

import {
  DEFAULTS,
  dialable,
  formatHostPort,
  log as rootLog,
  type Logger,
  stripControl,
} from "../core/mod.ts";
import { type Fleet, secretFileProblem } from "../config/mod.ts";
import { SIGNATURE_HEADER, signReport } from "./sign.ts";
import { fetchFailure, postOnce } from "../http/mod.ts";
import { parseMarker, type VersionMarker } from "../version/mod.ts";

/** What one client run reports to the primary. */
export interface ClientReport {
  /** The client's name (`--name`, default the host name). */
  host: string;
  /** The version in the destination after the run, or null when it has none. */
  version: VersionMarker | null;
  /** When the run started (ISO time, the client's clock). */
  started_at: string;
  /** Wall time of the run in ms. */
  duration_ms: number;
  /** The run's exit code (0 ok, 3 transfer failed, 4 refused…). */
  exit_code: number;
  /** Entries that differed from the source before the run fixed them. */
  drift: number;
  /** The run's error line when it failed, else null. */
  error: string | null;
  /** The rsync URL it mirrors from, or null. */
  source: string | null;
}

/** Options of {@linkcode sendReport}. */
export interface ReportOptions {
  /** Where debug lines go (default: the process logger). */
  log?: Logger;
  /** The longest the whole report may take, in ms (default 1 s). */
  timeoutMs?: number;
  /** Overrides the URL derived from the fleet file. */
  url?: string;
}

/** How a report went. */
export interface ReportOutcome {
  /** True when the primary stored it. */
  sent: boolean;
  /** The primary's HTTP status, or null when none came back. */
  status: number | null;
  /** Why it was not stored, or null. */
  reason: string | null;
}

/** Longest `error` text a report carries; the rest is cut (reports are size-limited). */
const MAX_ERROR = 2000;
const MAX_SOURCE = 500;
/**
 * The names a client can report as.
 *
 * @example
 * ```ts
 * REPORT_HOST.test("web1.example.com"); // true
 * ```
 */
export const REPORT_HOST = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

/**
 * The primary's report URL: its health address (its `address` when the
 * health listener is a wildcard), path `/report`. Null for a fleet built from
 * flags alone, which names no primary.
 *
 * @example
 * ```ts
 * reportUrl(fleet); // "http://10.0.0.10:8873/report"
 * ```
 */
export function reportUrl(fleet: Fleet): string | null {
  if (fleet.file === null) return null;
  return `http://${formatHostPort(dialable(fleet.primary.health, fleet.primary.address))}/report`;
}

/**
 * Sends one run report to the primary, signed with `auth.report_token_file`
 * (on a client: its own token, `fanout render report-token --name HOST`).
 * Never throws and never takes longer than `opts.timeoutMs`: a report that
 * fails is logged at debug level and reported in the outcome.
 *
 * @example
 * ```ts
 * const outcome = await sendReport(fleet, {
 *   host: "web1", version: marker, started_at: new Date(t0).toISOString(),
 *   duration_ms: 42, exit_code: 0, drift: 0, error: null, source: fleet.client.source,
 * });
 * if (!outcome.sent) console.error(outcome.reason);
 * ```
 */
export async function sendReport(
  fleet: Fleet,
  report: ClientReport,
  opts: ReportOptions = {},
): Promise<ReportOutcome> {
  const lg = opts.log ?? rootLog();
  const fail = (reason: string, status: number | null = null): ReportOutcome => {
    lg.debug("report not sent", { reason, status: status ?? undefined });
    return { sent: false, status, reason };
  };
  try {
    const url = opts.url ?? reportUrl(fleet);
    if (!url) return fail("no fleet file: no primary to report to");
    const token = readToken(fleet.auth.reportTokenFile);
    if (typeof token !== "string") return fail(token.problem);
    const body = JSON.stringify(trimReport(report));
    if (body.length > DEFAULTS.fleet.maxReportBytes) return fail("report too large");
    const signature = await signReport(token, body, Math.floor(Date.now() / 1000));
    const t0 = performance.now();
    const res = await postOnce(
      url,
      { "content-type": "application/json", [SIGNATURE_HEADER]: signature },
      body,
      opts.timeoutMs ?? DEFAULTS.fleet.reportTimeout,
    );
    const text = res.text.trim();
    if (res.status < 200 || res.status > 299) {
      return fail(`${url}: ${res.status} ${text.slice(0, 200)}`, res.status);
    }
    lg.debug("report sent", { url, ms: Math.round(performance.now() - t0) });
    return { sent: true, status: res.status, reason: null };
  } catch (e) {
    return fail(fetchFailure(e));
  }
}

function readToken(path: string): string | { problem: string } {
  const p = secretFileProblem(path, "auth.report_token_file", "report");
  if (p) return { problem: p.message };
  const token = Deno.readTextFileSync(path).trim();
  return token === "" ? { problem: `${path} is empty` } : token;
}

/** Cuts the free-text fields so a report always fits the primary's size limit. */
function trimReport(r: ClientReport): ClientReport {
  return {
    host: r.host,
    version: r.version,
    started_at: r.started_at,
    duration_ms: r.duration_ms,
    exit_code: r.exit_code,
    drift: r.drift,
    error: r.error === null ? null : r.error.slice(0, MAX_ERROR),
    source: r.source === null ? null : r.source.slice(0, MAX_SOURCE),
  };
}

/**
 * Validates a report body as the primary receives it; returns the report, or
 * a sentence saying what is wrong with it.
 *
 * @example
 * ```ts
 * const r = parseClientReport(JSON.parse(body));
 * if (typeof r === "string") return c.text(r, 400);
 * ```
 */
export function parseClientReport(v: unknown): ClientReport | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "expected a JSON object";
  const o = v as Record<string, unknown>;
  if (typeof o.host !== "string" || !REPORT_HOST.test(o.host)) {
    return "host: expected a host name of letters, digits, '.', '_' or '-'";
  }
  let version: VersionMarker | null = null;
  if (o.version !== null) {
    version = parseMarker(JSON.stringify(o.version ?? ""));
    if (!version) return "version: expected a version marker or null";
  }
  if (typeof o.started_at !== "string" || Number.isNaN(Date.parse(o.started_at))) {
    return "started_at: expected an ISO time";
  }
  const int = (k: string) => Number.isInteger(o[k]) && (o[k] as number) >= 0;
  if (!int("duration_ms")) return "duration_ms: expected a whole number";
  if (!int("exit_code") || (o.exit_code as number) > 255) return "exit_code: expected 0..255";
  if (!int("drift")) return "drift: expected a whole number";
  if (o.error !== null && typeof o.error !== "string") return "error: expected a string or null";
  if (o.source !== null && typeof o.source !== "string") return "source: expected a string or null";
  return {
    host: o.host,
    version,
    started_at: new Date(o.started_at).toISOString(),
    duration_ms: o.duration_ms as number,
    exit_code: o.exit_code as number,
    drift: o.drift as number,
    // Both reach terminals (`fanout fleet`) and logs: no control characters.
    error: o.error === null ? null : stripControl((o.error as string).slice(0, MAX_ERROR)),
    source: o.source === null
      ? null
      : stripControl((o.source as string).slice(0, MAX_SOURCE), { oneLine: true }),
  };
}
