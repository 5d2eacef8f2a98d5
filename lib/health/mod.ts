/**
 * HTTP on the side of every role: the health endpoint (`/healthz`,
 * `/status`, `/metrics`), the metrics registry, bounded reads of HTTP bodies
 * and a bounded POST.
 *
 * @module
 */

export { MAX_STATUS_BODY, readLimited } from "./bounded_body.ts";
export { fetchFailure } from "./fetch_error.ts";
export { healthApp, type HealthServer, type HealthSource, serveHealth } from "./health.ts";
export { postOnce } from "./http_post.ts";
export { Registry } from "./metrics.ts";
