/**
 * The cheap look at the source's version: the version the client's server
 * (or the proxy in front) announces on its health port, `GET /version`
 * (lib/health's board), asked once, answered at once. It costs the server
 * one small HTTP answer where a module listing of its rsync daemon costs a
 * forked daemon child.
 *
 * The answer comes from whoever holds the port, so it is read bounded and
 * parsed as strictly as a marker file, and it only ever decides "nothing
 * new": when it names exactly the version dest holds. Any other answer, or
 * none, and the run reads the version through rsync as it would without
 * it. A lying endpoint can thus at most make a client skip a run, which a
 * lying module listing can too.
 *
 * @module
 */

import { formatHostPort, type HostPort, printableLine } from "../core/mod.ts";
import { fetchFailure, getOnce } from "../http/mod.ts";
import {
  describeVersion,
  parseVersionAnswer,
  sameVersion,
  VERSION_ANSWER_MAX_BYTES,
  type VersionMarker,
} from "../version/mod.ts";
import type { ClientJob } from "./job.ts";

/**
 * The longest the look may take (ms), the connect timeout when shorter: a
 * server answers at once, and one that does not costs a run this much
 * before it reads the module listing.
 */
const LOOK_TIMEOUT_MS = 2_000;

/** What the health endpoint said: the version it announces, or why there is none to take. */
export type Announced = { version: VersionMarker | null } | { failed: string };

/**
 * What an answer of `status` with body `text` announces, held to fanout's
 * own shape (200, `{"version": <marker or null>}`).
 *
 * @example
 * ```ts
 * announcedBy(200, '{"version":null}'); // { version: null }
 * announcedBy(500, "oops"); // { failed: "HTTP 500" }
 * announcedBy(200, "<html>"); // { failed: "not a version: <html>" }
 * ```
 */
export function announcedBy(status: number, text: string): Announced {
  if (status !== 200) return { failed: `HTTP ${status}` };
  const version = parseVersionAnswer(text);
  if (version === undefined) return { failed: `not a version: ${printableLine(text, 80)}` };
  return { version };
}

/**
 * Asks `at` once for the version it announces; never throws.
 *
 * @example
 * ```ts
 * const a = await announcedVersion({ host: "10.0.0.20", port: 8874 }, 2000);
 * if ("version" in a) console.log(a.version?.seq);
 * ```
 */
export async function announcedVersion(at: HostPort, timeoutMs: number): Promise<Announced> {
  try {
    const url = `http://${formatHostPort(at)}/version`;
    const res = await getOnce(url, timeoutMs, VERSION_ANSWER_MAX_BYTES);
    return announcedBy(res.status, res.text);
  } catch (e) {
    return { failed: fetchFailure(e) };
  }
}

/**
 * True when the job's health endpoint (`client.notify`) announces exactly
 * `held`; false when it names another version, when there is none, or when
 * it fails (then the caller reads the version through rsync).
 *
 * @example
 * ```ts
 * const remote = await announcesHeld(job, before) ? before : await fetchMarker(job);
 * ```
 */
export async function announcesHeld(job: ClientJob, held: VersionMarker): Promise<boolean> {
  if (!job.notify) return false;
  const from = formatHostPort(job.notify);
  const a = await announcedVersion(job.notify, Math.min(job.connectTimeout, LOOK_TIMEOUT_MS));
  if ("failed" in a) {
    job.log.debug("no version from the health endpoint; reading it through rsync", {
      from,
      why: a.failed,
    });
    return false;
  }
  const same = sameVersion(a.version, held);
  job.log.debug(
    same
      ? "version read by http: dest's"
      : "version read by http: another; reading it through rsync",
    { from, version: describeVersion(a.version) },
  );
  return same;
}
