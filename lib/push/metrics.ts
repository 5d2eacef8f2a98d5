/**
 * The push engine's metrics: pushes, failures, refusals, bytes, files and
 * durations counted as they happen, and each replica's lag, version and
 * health read from its status when scraped. Kept apart from the engine so
 * the names and help texts read in one place.
 *
 * @module
 */

import type { Registry } from "../health/mod.ts";
import type { ReplicaStatus } from "./replica.ts";

const HISTOGRAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Registers the push metrics in `r`: the counters and the histogram are
 * returned for the engine to feed; the gauges read `status()` when scraped.
 *
 * @example
 * ```ts
 * const m = pushMetrics(registry, () => engine.status());
 * m.pushes.inc({ replica: "web1", kind: "full", result: "ok" });
 * ```
 */
export function pushMetrics(r: Registry, status: () => ReplicaStatus[]) {
  const metrics = {
    pushes: r.counter(
      "fanout_pushes_total",
      "Pushes to replicas, by kind (scoped, full) and result.",
    ),
    failures: r.counter("fanout_push_failures_total", "Failed pushes, by replica."),
    refused: r.counter(
      "fanout_push_refused_total",
      "Pushes refused by the max_delete guard, by replica.",
    ),
    bytes: r.counter("fanout_push_bytes_total", "Bytes sent to replicas, by replica."),
    files: r.counter("fanout_push_files_total", "Files transferred to replicas, by replica."),
    duration: r.histogram(
      "fanout_push_duration_seconds",
      "Push duration (tree and marker), by kind.",
      HISTOGRAM_BUCKETS,
    ),
  };
  r.gauge(
    "fanout_replica_lag_seconds",
    "Age of the oldest change not yet on the replica.",
    () => status().map((s) => [{ replica: s.name }, s.lag_s]),
  );
  r.gauge(
    "fanout_replica_version_seq",
    "seq of the version marker the replica acknowledged.",
    () => status().map((s) => [{ replica: s.name }, s.version?.seq ?? -1]),
  );
  r.gauge(
    "fanout_replica_failing",
    "1 while pushes to the replica fail or are refused.",
    () =>
      status().map((
        s,
      ) => [{ replica: s.name }, s.state === "failing" || s.state === "refused" ? 1 : 0]),
  );
  return metrics;
}
