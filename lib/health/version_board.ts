/**
 * `GET /version`: the version a host announces, and a long-poll on it, so a
 * watching client hears of a new version the moment its server has it
 * instead of at its next poll.
 *
 * `GET /version?after=<seq>&wait=<seconds>` answers at once with
 * `{"version": <marker or null>}` when the announced version's seq is not
 * `after` (or without `after`); otherwise it holds the request until the
 * host announces another version or `wait` (at most 55 s) passes, then
 * answers the same way. The answer is a hint: a client still fetches and
 * checks the version over rsync.
 *
 * Every held request costs a socket and a timer, so they are bounded: at
 * most `maxWaiters` in all (more: 503) and `maxPerSource` from one address
 * (more: 429), both with `Retry-After`; a query that is not exactly
 * `after`/`wait` is refused with 400 (414 when long) and a one-line reason.
 * A held answer's status and headers go out at once and its body when it
 * ends, so a client that hangs up is noticed (its stream is cancelled) and
 * its place freed.
 *
 * @module
 */

import { sameVersion, type VersionMarker } from "../version/mod.ts";
import type { Registry } from "./metrics.ts";
import { MAX_WAIT_MS, parseVersionQuery } from "./version_query.ts";

/** The bounds of a {@linkcode VersionBoard}. */
export interface BoardLimits {
  /** Requests held at once, from everyone. */
  maxWaiters: number;
  /** Requests held at once from one address. */
  maxPerSource: number;
  /** The longest hold (ms). */
  maxWaitMs: number;
}

/** The bounds a server and the proxy use. */
export const BOARD_LIMITS: BoardLimits = {
  maxWaiters: 1024,
  maxPerSource: 256,
  maxWaitMs: MAX_WAIT_MS,
};

/** Seconds a refused asker is told to wait (`Retry-After`). */
const RETRY_AFTER_S = 10;

/** One held request. */
interface Waiter {
  source: string;
  timer: ReturnType<typeof setTimeout>;
  answer(): void;
}

/** Why requests were refused, counted for `/metrics`. */
type Refusal = "bad_request" | "max_waiters" | "max_per_source" | "closing";

/**
 * The announced version and the requests waiting for the next one.
 *
 * @example
 * ```ts
 * const board = new VersionBoard(readMarker(tree));
 * // the health app: app.get("/version", (c) => board.handle(c.req.raw, remote));
 * board.announce(readMarker(tree)); // wakes every held request when it changed
 * board.close(); // answers them all before the server shuts down
 * ```
 */
export class VersionBoard {
  #current: VersionMarker | null;
  #limits: BoardLimits;
  #waiters = new Set<Waiter>();
  #perSource = new Map<string, number>();
  #closed = false;
  #announced = 0;
  #refused: Record<Refusal, number> = {
    bad_request: 0,
    max_waiters: 0,
    max_per_source: 0,
    closing: 0,
  };

  constructor(current: VersionMarker | null, limits: Partial<BoardLimits> = {}) {
    this.#current = current;
    this.#limits = { ...BOARD_LIMITS, ...limits };
  }

  /** The version announced now. */
  get current(): VersionMarker | null {
    return this.#current;
  }

  /** Requests held now. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** Makes `v` the announced version; when it differs, answers every held request. */
  announce(v: VersionMarker | null): void {
    if (sameVersion(v, this.#current)) return;
    this.#current = v;
    this.#announced++;
    for (const w of [...this.#waiters]) w.answer();
  }

  /** Answers every held request now, and every later one at once with 503. */
  close(): void {
    this.#closed = true;
    for (const w of [...this.#waiters]) w.answer();
  }

  /**
   * Answers one `GET /version` from `source` (the peer's address): at once,
   * or held as the module comment says.
   */
  handle(req: Request, source: string): Response {
    const url = new URL(req.url);
    const q = parseVersionQuery(url.search.slice(1), this.#limits.maxWaitMs);
    if ("why" in q) return this.#refuse("bad_request", q.status, q.why);
    if (this.#closed) return this.#refuse("closing", 503, "stopping");
    // A HEAD gets no body, so nothing would end its hold: it is answered at once.
    const now = q.after === null || q.after !== seqOf(this.#current) || q.waitMs === 0 ||
      req.method === "HEAD";
    if (now) return answer(this.#body());
    if (this.#waiters.size >= this.#limits.maxWaiters) {
      return this.#refuse("max_waiters", 503, `${this.#limits.maxWaiters} requests already wait`);
    }
    if ((this.#perSource.get(source) ?? 0) >= this.#limits.maxPerSource) {
      return this.#refuse(
        "max_per_source",
        429,
        `${this.#limits.maxPerSource} requests from ${source} already wait`,
      );
    }
    return answer(this.#hold(source, q.waitMs));
  }

  /** Adds the board's gauges and counters to `registry`. */
  register(registry: Registry): void {
    registry.gauge(
      "fanout_version_waiters",
      "GET /version requests held for the next version.",
      () => [[{}, this.#waiters.size]],
    );
    registry.counter(
      "fanout_version_announced_total",
      "New versions announced to /version requests since start.",
      () => [[{}, this.#announced]],
    );
    registry.counter(
      "fanout_version_refused_total",
      "GET /version requests refused, by reason.",
      () => Object.entries(this.#refused).map(([reason, n]) => [{ reason }, n]),
    );
  }

  #body(): string {
    return JSON.stringify({ version: this.#current }) + "\n";
  }

  /** A body that is written when the version changes, the wait ends or the board closes. */
  #hold(source: string, waitMs: number): ReadableStream<Uint8Array> {
    let w: Waiter;
    return new ReadableStream<Uint8Array>({
      start: (ctl) => {
        w = {
          source,
          timer: setTimeout(() => w.answer(), waitMs),
          answer: () => {
            if (!this.#drop(w)) return;
            ctl.enqueue(new TextEncoder().encode(this.#body()));
            ctl.close();
          },
        };
        this.#waiters.add(w);
        this.#perSource.set(source, (this.#perSource.get(source) ?? 0) + 1);
      },
      // The asker hung up: its place is free at once.
      cancel: () => {
        this.#drop(w);
      },
    });
  }

  /** Forgets `w`; false when it was already gone. */
  #drop(w: Waiter): boolean {
    if (!this.#waiters.delete(w)) return false;
    clearTimeout(w.timer);
    const n = (this.#perSource.get(w.source) ?? 1) - 1;
    if (n > 0) this.#perSource.set(w.source, n);
    else this.#perSource.delete(w.source);
    return true;
  }

  #refuse(reason: Refusal, status: 400 | 414 | 429 | 503, why: string): Response {
    this.#refused[reason]++;
    const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
    if (status >= 429) headers["retry-after"] = String(RETRY_AFTER_S);
    return new Response(`${why}\n`, { status, headers: { ...headers, ...NO_STORE } });
  }
}

const NO_STORE = { "cache-control": "no-store" };

function answer(body: string | ReadableStream<Uint8Array>): Response {
  return new Response(body, {
    status: 200,
    headers: { "content-type": "application/json", ...NO_STORE },
  });
}

/** The seq `/version` compares `after` with: -1 for a tree without a version. */
function seqOf(v: VersionMarker | null): number {
  return v?.seq ?? -1;
}
