/**
 * The `/fleet` page: one self-contained HTML document (inline CSS and SVG,
 * no script, nothing fetched from elsewhere) that reloads itself every few
 * seconds. Counts carry `data-count` attributes, so a script or a test can
 * read them from the DOM.
 *
 * @module
 */

import { formatDuration } from "../core/mod.ts";
import {
  CLIENT_STATES,
  type ClientFilter,
  type ClientRow,
  type Convergence,
  type FleetSnapshot,
  type ServerRow,
} from "./state.ts";
import type { VersionMarker } from "../version/mod.ts";

/** Seconds between the page's own reloads. */
export const PAGE_REFRESH_S = 5;

const esc = (s: unknown): string =>
  String(s).replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;");

const ver = (v: VersionMarker | null): string =>
  v
    ? `${esc(v.seq)} <span class="dim">${esc(v.commit.slice(0, 8))}</span>`
    : '<span class="dim">none</span>';

function ago(iso: string, now: number): string {
  const ms = now - Date.parse(iso);
  return Number.isNaN(ms) ? "?" : ms < 1000 ? "just now" : `${formatDuration(ms)} ago`;
}

/**
 * The page for `snap`, its client table filtered by `filter`.
 *
 * @example
 * ```ts
 * return c.html(renderFleetPage(await view.snapshot(), { states: [], host: "" }));
 * ```
 */
export function renderFleetPage(snap: FleetSnapshot, filter: ClientFilter): string {
  const now = Date.parse(snap.generated_at);
  const cur = snap.current;
  const counts = snap.counts;
  const title = `fanout fleet: ${snap.ok ? "all current" : snap.problems.join(", ")}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${PAGE_REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style></head>
<body>
<header>
<h1>fanout fleet <span class="dim">primary ${esc(snap.primary)}</span></h1>
<p id="current">${
    cur
      ? `published <b>seq ${cur.seq}</b> <code>${esc(cur.commit.slice(0, 12))}</code> ${
        esc(cur.ref)
      }, ` +
        `<time datetime="${esc(cur.published_at)}">${esc(cur.published_at)}</time> (${
          ago(cur.published_at, now)
        })`
      : "nothing published yet"
  }</p>
<p id="verdict" class="${snap.ok ? "ok" : "bad"}" data-ok="${snap.ok}">${
    snap.ok ? "every host is current" : esc(snap.problems.join(", "))
  }${
    snap.reports_enabled
      ? ""
      : ' <span class="warn">(client reports are off: no report token on the primary)</span>'
  }</p>
</header>
<section id="counts">
${
    CLIENT_STATES.map((s) =>
      `<a class="count ${s}" href="?state=${s}" id="count-${s}" data-count="${
        counts.clients[s]
      }"><b>${counts.clients[s]}</b> ${s}</a>`
    ).join("\n")
  }
<a class="count" href="?" id="count-total" data-count="${counts.clients.total}"><b>${counts.clients.total}</b> clients</a>
<span class="count replicas" id="count-lagging" data-count="${
    counts.servers.total - counts.servers.current
  }"><b>${
    counts.servers.total - counts.servers.current
  }</b> of ${counts.servers.total} servers not current</span>
</section>
<h2>Time to converge</h2>
${chart(snap.converge)}
<h2>Servers</h2>
${serverTable(snap.servers, now)}
<h2>Clients</h2>
${filterForm(filter)}
${clientTable(snap.clients, counts.clients.total, now)}
<footer class="dim">updated ${esc(snap.generated_at)}; reloads every ${PAGE_REFRESH_S}s;
silent after ${formatDuration(snap.silent_after_s * 1000)} without a report;
<a href="fleet.json">fleet.json</a> · <a href="metrics">metrics</a> · <a href="status">status</a></footer>
</body></html>
`;
}

function serverTable(rows: ServerRow[], _now: number): string {
  return `<table id="servers"><thead><tr><th>server</th><th>kind</th><th>upstream</th><th>version</th><th>state</th><th>lag</th><th>error</th></tr></thead><tbody>
${
    rows.map((s) =>
      `<tr class="${s.state}" data-name="${esc(s.name)}" data-state="${s.state}"><td>${
        esc(s.name)
      }</td><td>${s.kind}</td><td>${esc(s.upstream ?? "")}</td><td>${
        ver(s.version)
      }</td><td><span class="state ${s.state}">${s.state}</span></td><td>${
        s.lag_s === null ? "" : s.lag_s === 0 ? "0" : formatDuration(s.lag_s * 1000)
      }</td><td class="err">${esc(s.error ?? "")}</td></tr>`
    ).join("\n")
  }
</tbody></table>`;
}

function filterForm(f: ClientFilter): string {
  return `<form id="filter" method="get" action="">
${
    CLIENT_STATES.map((s) =>
      `<label><input type="checkbox" name="state" value="${s}"${
        f.states.includes(s) ? " checked" : ""
      }> ${s}</label>`
    ).join("\n")
  }
<label>host <input type="search" name="host" value="${
    esc(f.host)
  }" placeholder="name contains"></label>
<button type="submit">filter</button> <a href="?">clear</a>
</form>`;
}

function clientTable(rows: ClientRow[], total: number, now: number): string {
  if (total === 0) {
    return '<p id="no-clients" class="dim">no client has reported yet (clients report after each run, each signed with its own token: <code>fanout render report-token --name HOST</code> on the primary)</p>';
  }
  return `<p class="dim" id="shown" data-count="${rows.length}">showing ${rows.length} of ${total}</p>
<table id="clients"><thead><tr><th>client</th><th>state</th><th>version</th><th>last run</th><th>took</th><th>exit</th><th>drift</th><th>error</th></tr></thead><tbody>
${
    rows.map((c) =>
      `<tr class="${c.state}" data-host="${esc(c.host)}" data-state="${c.state}"><td>${
        esc(c.host)
      }</td><td><span class="state ${c.state}">${c.state}</span></td><td>${
        ver(c.version)
      }</td><td title="${esc(c.last_run)}">${ago(c.last_report, now)}</td><td>${
        formatDuration(c.duration_ms)
      }</td><td>${c.exit_code}</td><td>${c.drift}</td><td class="err">${esc(c.error ?? "")}${
        c.state === "failing" && c.last_ok
          ? ` <span class="dim">(last ok ${ago(c.last_ok, now)})</span>`
          : ""
      }</td></tr>`
    ).join("\n")
  }
</tbody></table>`;
}

/** A bar per version: time until the last client had it; a tick at the median. */
function chart(versions: Convergence[]): string {
  if (versions.length === 0) {
    return '<p class="dim" id="chart-empty">no published version seen yet</p>';
  }
  const list = [...versions].reverse(); // oldest on the left
  const W = 760, H = 220, left = 56, bottom = 36, top = 14;
  const plotH = H - top - bottom;
  const slot = (W - left - 10) / Math.max(list.length, 8);
  const top_s = Math.max(1, ...list.map((v) => v.max_s ?? v.p50_s ?? 0));
  const y = (s: number) => top + plotH - (s / top_s) * plotH;
  const ticks = [0, top_s / 2, top_s];
  const parts: string[] = [];
  for (const t of ticks) {
    parts.push(
      `<line x1="${left}" x2="${W - 10}" y1="${y(t).toFixed(1)}" y2="${
        y(t).toFixed(1)
      }" class="grid"/>`,
      `<text x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${
        formatDuration(t * 1000)
      }</text>`,
    );
  }
  list.forEach((v, i) => {
    const x = left + i * slot + slot * 0.15;
    const w = slot * 0.7;
    const label = `seq ${v.seq} (${v.commit.slice(0, 8)}): ${v.reached}/${v.clients} clients` +
      (v.max_s !== null ? `, all in ${formatDuration(v.max_s * 1000)}` : ", not converged") +
      (v.p50_s !== null ? `, half in ${formatDuration(v.p50_s * 1000)}` : "");
    parts.push(
      `<g class="bar${
        v.converged ? "" : " open"
      }" data-seq="${v.seq}" data-converged="${v.converged}"><title>${esc(label)}</title>`,
    );
    if (v.max_s !== null) {
      const h = Math.max(1, y(0) - y(v.max_s));
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${(y(0) - h).toFixed(1)}" width="${w.toFixed(1)}" height="${
          h.toFixed(1)
        }"/>`,
      );
    } else {
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${top}" width="${
          w.toFixed(1)
        }" height="${plotH}" class="pending"/>`,
      );
    }
    if (v.p50_s !== null) {
      const py = y(v.p50_s).toFixed(1);
      parts.push(
        `<line x1="${x.toFixed(1)}" x2="${(x + w).toFixed(1)}" y1="${py}" y2="${py}" class="p50"/>`,
      );
    }
    parts.push(
      `<text x="${(x + w / 2).toFixed(1)}" y="${
        H - bottom + 14
      }" text-anchor="middle">${v.seq}</text>`,
      `<text x="${(x + w / 2).toFixed(1)}" y="${
        H - bottom + 28
      }" text-anchor="middle" class="dim">${v.reached}/${v.clients}</text>`,
      "</g>",
    );
  });
  return `<svg id="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="time to converge per published version">
${parts.join("\n")}
</svg>
<p class="dim legend">bar: time from publish until the last client reported the version (grey: not there yet); line: half of them; below: seq, clients that have it / clients concerned</p>`;
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.dim{color:#777}.warn{color:#a60}.ok{color:#176a2a;font-weight:600}.bad{color:#b00020;font-weight:600}
code{background:#eee;padding:0 .3em;border-radius:3px}
#counts{display:flex;gap:.6em;flex-wrap:wrap;margin:.8em 0}
.count{padding:.4em .8em;border-radius:6px;background:#eee;color:#222;text-decoration:none}
.count b{font-size:1.3em}
.count.current{background:#dcf3e0}.count.behind{background:#fff1c9}.count.failing{background:#fbd9dc}.count.silent{background:#e3e3e8}
table{border-collapse:collapse;background:#fff;min-width:60%}
th,td{text-align:left;padding:.25em .7em;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{font-weight:600;background:#f0f0f0}
.state{padding:0 .4em;border-radius:3px}
.state.current{background:#dcf3e0}.state.behind{background:#fff1c9}.state.failing{background:#fbd9dc}
.state.silent,.state.unknown{background:#e3e3e8}
td.err{color:#b00020;max-width:40em;overflow-wrap:anywhere}
form{margin:.4em 0 .8em}form label{margin-right:.8em}
svg text{font-size:11px;fill:#444}svg .grid{stroke:#ddd}
svg .bar rect{fill:#4a7bd0}svg .bar rect.pending{fill:#ccc}svg .p50{stroke:#fff;stroke-width:2}svg .open .p50{stroke:#4a7bd0}
.legend{font-size:12px}footer{margin-top:2em;font-size:12px}
`;
