/**
 * `fanout fleet -c FILE [--json]`: the primary's fleet view in a terminal.
 * Reads `GET /fleet.json` from the primary's health endpoint and prints it
 * as tables (or the JSON itself). The exit code makes it a monitoring check:
 * 0 when every server and client is current, 1 when anything is behind,
 * failing, silent or unknown, 2 for a bad fleet file, 3 when the primary
 * cannot be reached.
 *
 * @module
 */

import {
  dialable,
  ExitCode,
  formatDuration,
  formatHostPort,
  stripControl,
  stripControlDeep,
  TransferError,
} from "../lib/core/mod.ts";
import { type CommonOptions, type Fleet, fleetFor } from "../lib/config/mod.ts";
import type { FleetSnapshot } from "../lib/fleet/mod.ts";
import type { VersionMarker } from "../lib/version/mod.ts";
import { fetchFailure } from "../lib/http/mod.ts";

/** How long `fanout fleet` waits for the primary. */
const TIMEOUT = 5_000;

/**
 * Runs `fanout fleet`; returns the exit code.
 *
 * @throws {UsageError} / {ConfigError} without a valid fleet file (exit 2).
 * @throws {TransferError} when the primary's health endpoint does not answer
 * with the fleet view (exit 3).
 */
export async function fleetCommand(opts: CommonOptions): Promise<number> {
  const fleet = await fleetFor(opts);
  const snap = await fetchFleet(fleet);
  if (opts.json) console.log(JSON.stringify(snap, null, 2));
  else console.log(formatFleet(snap));
  return snap.ok ? ExitCode.Ok : ExitCode.Drift;
}

/** The URL of the primary's fleet view (its `address` when health listens on a wildcard). */
export function fleetUrl(fleet: Fleet, path = "/fleet.json"): string {
  return `http://${formatHostPort(dialable(fleet.primary.health, fleet.primary.address))}${path}`;
}

/**
 * GETs the fleet view from the primary.
 *
 * @throws {TransferError} naming the URL when it cannot be had.
 */
export async function fetchFleet(fleet: Fleet): Promise<FleetSnapshot> {
  const url = fleetUrl(fleet);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT);
  const fail = (why: string) =>
    new TransferError(
      `cannot read the fleet view of the primary ${fleet.primary.name} at ${url}: ${why}`,
    );
  try {
    const res = await fetch(url, { signal: ctl.signal });
    const body = await res.text();
    if (!res.ok) {
      throw fail(
        res.status === 404
          ? "404 (is that the primary, running fanout with the fleet view?)"
          : `HTTP ${res.status} ${body.trim().slice(0, 200)}`,
      );
    }
    const snap = JSON.parse(body) as FleetSnapshot;
    if (typeof snap?.ok !== "boolean" || !Array.isArray(snap.clients)) {
      throw fail("the answer is not a fleet view");
    }
    // The primary passes on what clients and servers said: no control characters.
    return stripControlDeep(snap);
  } catch (e) {
    if (e instanceof TransferError) throw e;
    if ((e as Error).name === "AbortError") throw fail(`no answer within ${TIMEOUT / 1000}s`);
    if (e instanceof SyntaxError) throw fail("the answer is not JSON");
    throw fail(fetchFailure(e));
  } finally {
    clearTimeout(timer);
  }
}

const ver = (v: VersionMarker | null) => (v ? String(v.seq) : "-");

/**
 * The fleet view as plain-text tables, without control characters (the
 * values come from clients and servers).
 *
 * @example
 * ```ts
 * console.log(formatFleet(await fetchFleet(fleet)));
 * ```
 */
export function formatFleet(snap: FleetSnapshot): string {
  const s = stripControlDeep(snap);
  const now = Date.parse(s.generated_at);
  const out: string[] = [];
  const cur = s.current;
  out.push(
    cur
      ? `primary ${s.primary}: seq ${cur.seq} (${
        cur.commit.slice(0, 8)
      } ${cur.ref}) published ${cur.published_at} (${
        formatDuration(Math.max(0, now - Date.parse(cur.published_at)))
      } ago)`
      : `primary ${s.primary}: nothing published yet`,
  );
  out.push(s.ok ? "every host is current" : `not current: ${s.problems.join(", ")}`);
  if (!s.reports_enabled) out.push("client reports are off: the primary has no report token");
  out.push("");
  out.push(...table(
    ["SERVER", "KIND", "UPSTREAM", "VERSION", "STATE", "LAG", "ERROR"],
    s.servers.map((r) => [
      r.name,
      r.kind,
      r.upstream ?? "",
      ver(r.version),
      r.state,
      r.lag_s === null ? "" : formatDuration(r.lag_s * 1000),
      r.error ?? "",
    ]),
  ));
  out.push("");
  if (s.counts.clients.total === 0) out.push("no client has reported yet");
  else {
    out.push(...table(
      ["CLIENT", "STATE", "VERSION", "LAST REPORT", "TOOK", "EXIT", "DRIFT", "ERROR"],
      s.clients.map((c) => [
        c.host,
        c.state,
        ver(c.version),
        `${formatDuration(c.age_s * 1000)} ago`,
        formatDuration(c.duration_ms),
        String(c.exit_code),
        String(c.drift),
        cutLine(c.error ?? "", 80),
      ]),
    ));
  }
  const c = s.counts.clients;
  out.push("");
  out.push(
    `clients: ${c.current} current, ${c.behind} behind, ${c.failing} failing, ${c.silent} silent (${c.total} in all); ` +
      `servers: ${s.counts.servers.current} of ${s.counts.servers.total} current`,
  );
  if (s.converge.length) {
    out.push(
      "converge: " + s.converge.slice(0, 3).map((v) =>
        `seq ${v.seq} ${v.reached}/${v.clients}` +
        (v.max_s !== null
          ? ` in ${formatDuration(v.max_s * 1000)}`
          : v.p50_s !== null
          ? ` (half in ${formatDuration(v.p50_s * 1000)})`
          : "")
      ).join("; "),
    );
  }
  // Each entry is one line: a tab or newline inside a value would break it.
  return out.map((l) => stripControl(l, { oneLine: true })).join("\n");
}

function table(head: string[], rows: string[][]): string[] {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((v, i) => v.padEnd(width[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)];
}

/**
 * The first line of `text`, cut to at most `max` characters at a space, so
 * no number is cut short ("rsync exit 10" never shows as "rsync exit 1");
 * an rsync exit code the cut would drop is kept at the end.
 *
 * @example
 * ```ts
 * cutLine("pull failed: rsync exit 10 (error in socket I/O)", 30); // "pull failed: rsync exit 10 …"
 * ```
 */
export function cutLine(text: string, max: number): string {
  const line = text.split("\n")[0];
  if (line.length <= max) return line;
  const code = /rsync exit \d+/.exec(line);
  if (code && code.index + code[0].length > max - 2) {
    return `${atSpace(line, max - code[0].length - 3)} … ${code[0]}`;
  }
  return `${atSpace(line, max - 2)} …`;
}

/** `line` cut to at most `n` characters, at a space when one is in the second half. */
function atSpace(line: string, n: number): string {
  const space = line.lastIndexOf(" ", n);
  return line.slice(0, space > n / 2 ? space : n);
}
