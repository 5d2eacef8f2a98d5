/**
 * One replica as the push engine keeps it: its pending change set, its
 * state, what it acknowledged, and what `/status` shows of it. Kept apart
 * from the engine so the record and its shown form read in one place.
 *
 * @module
 */

import { ChangeSet, type VersionMarker } from "../version/mod.ts";
import type { RsyncResult } from "../rsync/mod.ts";
import type { PushPlan } from "./plan.ts";

/**
 * A replica to push to.
 *
 * @example
 * ```ts
 * const t: PushTarget = { name: "web1", url: "rsync://fanout@10.0.0.2:8730/push/" };
 * ```
 */
export interface PushTarget {
  name: string;
  /** `rsync://user@host:port/write-module/` */
  url: string;
}

/**
 * A replica's state, as the engine runs it.
 *
 * @example
 * ```ts
 * const s: ReplicaState = "backoff";
 * ```
 */
export type ReplicaState = "idle" | "pushing" | "backoff" | "refused";

/**
 * What `/status` reports per replica.
 *
 * @example
 * ```ts
 * engine.status().filter((s: ReplicaStatus) => s.state === "failing");
 * ```
 */
export interface ReplicaStatus {
  name: string;
  /** ok, pushing, failing or refused. */
  state: "ok" | "pushing" | "failing" | "refused";
  /** The version marker the replica acknowledged (last pushed), or null. */
  version: VersionMarker | null;
  /** Seconds its oldest unpushed change has waited (0 when in sync). */
  lag_s: number;
  pending_paths: number;
  pending_full: string | null;
  failures: number;
  last_success: string | null;
  last_error: string | null;
  next_retry: string | null;
  last_push:
    | { kind: PushPlan["kind"]; ms: number; files: number; deleted: number; bytes: number }
    | null;
}

/**
 * A replica's record in the engine: mutable, owned by the engine alone.
 *
 * @example
 * ```ts
 * const r = new Replica({ name: "web1", url }, push.maxPaths);
 * r.pending.markFull("start");
 * ```
 */
export class Replica {
  state: ReplicaState = "idle";
  pending: ChangeSet;
  failures = 0;
  lastSuccess: number | null = null;
  lastError: string | null = null;
  nextRetry: number | null = null;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  ack: VersionMarker | null = null;
  ackText: string | null = null;
  lastPush: ReplicaStatus["last_push"] = null;
  /** Entries that recent scoped runs created: a move's new half, offsetting its held old half. */
  recentCreated: { at: number; n: number }[] = [];
  synced = false;
  inFlight: Promise<void> | null = null;
  inFlightSince: number | null = null;
  constructor(readonly target: PushTarget, maxPaths: number) {
    this.pending = new ChangeSet(maxPaths);
  }
}

/**
 * A replica's state as `/status` names it. A retry of a failed push is
 * still "failing" until one succeeds: a replica that is down retries every
 * few seconds, and showing "pushing" for each attempt would make it look
 * healthy for a moment each time (in the fleet view and the metrics too).
 *
 * @example
 * ```ts
 * shownState(r); // "ok", "pushing", "failing" or "refused"
 * ```
 */
export function shownState(r: Replica): ReplicaStatus["state"] {
  if (r.state === "refused") return "refused";
  // Failing until a push succeeds: in backoff, retrying, or a retry whose
  // kick waits (a transfer landing in the source holds pushes back).
  if (r.failures > 0) return "failing";
  return r.state === "idle" ? "ok" : "pushing";
}

/** What `/status` shows of a replica's last push. */
type LastPush = NonNullable<ReplicaStatus["last_push"]>;

/**
 * The record of a push that took `ms` and ended with `result`.
 *
 * @example
 * ```ts
 * r.lastPush = lastPushOf("scoped", 12.34, result); // { kind: "scoped", ms: 12.3, files, deleted, bytes }
 * ```
 */
export function lastPushOf(kind: PushPlan["kind"], ms: number, result: RsyncResult): LastPush {
  const stats = result.stats;
  return {
    kind,
    ms: Math.round(ms * 10) / 10,
    files: stats?.transferred ?? 0,
    // --stats counts no deletions made by a daemon: count rsync's own lines.
    deleted: stats ? result.deleted : 0,
    bytes: stats?.bytesSent ?? 0,
  };
}
