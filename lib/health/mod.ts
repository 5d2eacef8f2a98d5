/**
 * The health endpoint of every long-running role (`/healthz`, `/status`,
 * `/metrics`), the metrics registry behind `/metrics`, and the `/version`
 * long-poll: the board a server or the proxy announces its version on, and
 * the follower a watching client or the proxy hears of new versions with.
 *
 * @module
 */

export { healthApp, type HealthServer, type HealthSource, serveHealth } from "./health.ts";
export { Registry } from "./metrics.ts";
export { BOARD_LIMITS, type BoardLimits, VersionBoard } from "./version_board.ts";
export { MAX_QUERY, MAX_WAIT_MS, parseVersionQuery } from "./version_query.ts";
export { type FollowOptions, followVersions } from "./version_follow.ts";
