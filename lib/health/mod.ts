/**
 * The health endpoint of every long-running role (`/healthz`, `/status`,
 * `/metrics`) and the metrics registry behind `/metrics`.
 *
 * @module
 */

export { healthApp, type HealthServer, type HealthSource, serveHealth } from "./health.ts";
export { Registry } from "./metrics.ts";
