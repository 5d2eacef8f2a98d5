// The query of `GET /version` (see version_board.ts), read strictly: it comes
// from anyone who can reach the health port, so a query that is not exactly
// what fanout's own clients send gets a 4xx with one line saying why.

/** The longest query `/version` reads; fanout's own is under 40 bytes. */
export const MAX_QUERY = 128;

/** The longest wait a `/version` request may ask for (ms): under common 60 s idle timeouts. */
export const MAX_WAIT_MS = 55_000;

/** What a `/version` request asks. */
export interface VersionQuery {
  /** The seq the asker last heard of (-1: no version); null: answer at once. */
  after: number | null;
  /** How long to hold the request while the version is still `after` (ms). */
  waitMs: number;
}

/** A refused query: the status to answer and a one-line reason. */
export interface QueryProblem {
  status: 400 | 414;
  why: string;
}

const SEQ = /^(?:-1|0|[1-9][0-9]{0,15})$/;
const SECONDS = /^[0-9]{1,3}(?:\.[0-9]{1,3})?$/;

/**
 * Reads the query string of `/version` (without the `?`): `after=<seq>` and
 * `wait=<seconds>`, each at most once, nothing else. A wait past
 * `maxWaitMs` is cut to it (an asker may not know the cap); no wait is 0.
 *
 * @example
 * ```ts
 * parseVersionQuery("after=41&wait=30"); // { after: 41, waitMs: 30000 }
 * parseVersionQuery("after=x"); // { status: 400, why: "after must be a seq: -1 or an integer from 0" }
 * ```
 */
export function parseVersionQuery(
  query: string,
  maxWaitMs = MAX_WAIT_MS,
): VersionQuery | QueryProblem {
  if (query.length > MAX_QUERY) {
    return { status: 414, why: `query longer than ${MAX_QUERY} bytes` };
  }
  const seen = new Map<string, string>();
  for (const part of query ? query.split("&") : []) {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    if (name !== "after" && name !== "wait") {
      return { status: 400, why: "unknown parameter: only after and wait are read" };
    }
    if (seen.has(name)) return { status: 400, why: `${name} given twice` };
    seen.set(name, eq < 0 ? "" : part.slice(eq + 1));
  }
  const after = seen.get("after");
  const wait = seen.get("wait");
  if (after !== undefined && (!SEQ.test(after) || !Number.isSafeInteger(Number(after)))) {
    return { status: 400, why: "after must be a seq: -1 or an integer from 0" };
  }
  if (wait !== undefined && !SECONDS.test(wait)) {
    return { status: 400, why: "wait must be seconds: a number from 0 to 999.999" };
  }
  return {
    after: after === undefined ? null : Number(after),
    waitMs: Math.min(Math.round(Number(wait ?? "0") * 1000), maxWaitMs),
  };
}
