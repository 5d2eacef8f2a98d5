/**
 * The other side of `GET /version` (version_board.ts): a loop that keeps one
 * long-poll open on a host's health endpoint and calls back with each new
 * version it hears of. What it hears is a hint, never the version itself:
 * the caller fetches and checks the version as it would on a poll. A host
 * that does not offer `/version` (an older fanout, something else on the
 * port) or fails is asked again later, backing off, while the caller's own
 * polling goes on.
 *
 * @module
 */

import { formatHostPort, type HostPort, type Logger, printableLine, sleep } from "../core/mod.ts";
import { fetchFailure, readLimited } from "../http/mod.ts";
import {
  parseVersionAnswer,
  VERSION_ANSWER_MAX_BYTES,
  type VersionMarker,
} from "../version/mod.ts";

/** Options of {@linkcode followVersions}. */
export interface FollowOptions {
  /** The health endpoint to ask. */
  at: HostPort;
  /** The seq held now (-1: none): the first answer naming another is news. */
  after: number;
  /** Called with each version heard of whose seq differs from the last one. */
  onVersion(v: VersionMarker | null): void;
  /** Ends the loop (and the request in flight). */
  signal: AbortSignal;
  log: Logger;
  /** How long each request asks to be held (ms). */
  waitMs?: number;
  /** First and longest wait after a failure (ms). */
  retryMin?: number;
  retryMax?: number;
}

/** What one request came to. */
type Heard =
  | { kind: "version"; v: VersionMarker | null }
  /** The host does not offer /version. */
  | { kind: "absent"; why: string }
  /** The host refused for now (too many waiters, stopping). */
  | { kind: "busy"; why: string; retryMs: number }
  | { kind: "failed"; why: string };

/** Held requests ask for this long: below the server's cap and common idle timeouts. */
const WAIT_MS = 30_000;
/**
 * Requests start at most this often: a host that announces a new version
 * on every request (a hostile one, or one flapping) wakes the caller at
 * most a few times a second.
 */
const MIN_GAP_MS = 250;
/** A host without /version is asked again this rarely (it may be upgraded meanwhile). */
const ABSENT_RETRY_MS = 300_000;

/**
 * Follows the version `o.at` announces until `o.signal` aborts; never throws.
 *
 * @example
 * ```ts
 * followVersions({ at: { host: "10.0.0.20", port: 8873 }, after: 41, signal, log,
 *   onVersion: (v) => nudge.poke() });
 * ```
 */
export async function followVersions(o: FollowOptions): Promise<void> {
  const waitMs = o.waitMs ?? WAIT_MS;
  const f = new Follower(o, o.retryMin ?? 1_000, o.retryMax ?? 60_000);
  let t0 = -Infinity;
  while (!o.signal.aborted) {
    if (!(await sleep(t0 + MIN_GAP_MS - Date.now(), o.signal))) return;
    t0 = Date.now();
    const heard = await askOnce(o.at, f.after, waitMs, o.signal);
    if (o.signal.aborted) return;
    // An unchanged answer long before the wait's end: the host does not hold requests.
    const early = Date.now() - t0 < waitMs / 2;
    const pause = f.take(heard, early);
    if (pause > 0 && !(await sleep(pause, o.signal))) return;
  }
}

/** What the loop of {@linkcode followVersions} remembers between requests. */
class Follower {
  /** The seq last heard of. */
  after: number;
  #backoff: number;
  /** Why the last request failed; null after an answer; "" before the first. */
  #trouble: string | null = "";
  #where: string;

  constructor(private o: FollowOptions, private retryMin: number, private retryMax: number) {
    this.after = o.after;
    this.#backoff = retryMin;
    this.#where = formatHostPort(o.at);
  }

  /** Takes in one request's outcome; returns how long to wait before the next (ms). */
  take(heard: Heard, early: boolean): number {
    if (heard.kind !== "version") {
      this.#troubled(heard.why);
      if (heard.kind === "absent") return ABSENT_RETRY_MS;
      if (heard.kind === "busy") return heard.retryMs;
      return this.#grow();
    }
    const seq = heard.v?.seq ?? -1;
    if (seq !== this.after) {
      this.after = seq;
      this.o.onVersion(heard.v);
      this.#fine();
      return 0;
    }
    if (early) {
      this.#troubled("answers without waiting");
      return this.#grow();
    }
    this.#fine();
    return 0;
  }

  /** The backoff to wait now; the next one doubles, up to the longest. */
  #grow(): number {
    const now = this.#backoff;
    this.#backoff = Math.min(now * 2, this.retryMax);
    return now;
  }

  #fine(): void {
    if (this.#trouble !== null) {
      this.o.log[this.#trouble ? "info" : "debug"]("hearing of versions", { from: this.#where });
    }
    this.#trouble = null;
    this.#backoff = this.retryMin;
  }

  /** Logs a new kind of trouble once. */
  #troubled(why: string): void {
    if (this.#trouble !== why) {
      this.o.log.info("no version notices; polling meanwhile", { from: this.#where, why });
    }
    this.#trouble = why;
  }
}

/** One `GET /version?after=&wait=`, its answer read within bounds. */
async function askOnce(
  at: HostPort,
  after: number,
  waitMs: number,
  signal: AbortSignal,
): Promise<Heard> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  signal.addEventListener("abort", stop, { once: true });
  // The server answers by the wait's end; past it and a margin, it is gone.
  const timer = setTimeout(stop, waitMs + 10_000);
  const url = `http://${formatHostPort(at)}/version?after=${after}&wait=${waitMs / 1000}`;
  try {
    const res = await fetch(url, { signal: ac.signal, redirect: "manual" });
    const body = await readLimited(res, VERSION_ANSWER_MAX_BYTES);
    return heardOf(res, body);
  } catch (e) {
    return { kind: "failed", why: ac.signal.aborted ? "timed out" : fetchFailure(e) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
  }
}

/** What an answer says, held to fanout's own shape. */
function heardOf(res: Response, body: string | null): Heard {
  const status = `HTTP ${res.status}`;
  if (res.status === 404 || res.status === 405) return { kind: "absent", why: status };
  if (res.status === 429 || res.status === 503) {
    return { kind: "busy", why: status, retryMs: retryAfter(res.headers.get("retry-after")) };
  }
  if (res.status !== 200) return { kind: "failed", why: status };
  if (body === null) {
    return { kind: "failed", why: `an answer over ${VERSION_ANSWER_MAX_BYTES} bytes` };
  }
  const v = parseVersionAnswer(body);
  if (v === undefined) {
    return { kind: "failed", why: `not a version: ${printableLine(body, 80)}` };
  }
  return { kind: "version", v };
}

/** `Retry-After` in seconds as ms, held to 1 s – 5 min (10 s when absent or not seconds). */
function retryAfter(text: string | null): number {
  const s = text && /^[0-9]{1,6}$/.test(text) ? Number(text) : 10;
  return Math.min(Math.max(s, 1), 300) * 1000;
}
