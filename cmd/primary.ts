/**
 * `fanout --role primary`: receives publishes, watches its tree and pushes
 * every change to its replicas.
 *
 * @module
 */

import type { CommonOptions } from "../lib/config/mod.ts";
import { runServer } from "./server.ts";

/** Runs the primary role until SIGTERM/SIGINT; returns the exit code. */
export function run(opts: CommonOptions): Promise<number> {
  return runServer(opts, "primary");
}
