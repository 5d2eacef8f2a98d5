/**
 * `fanout --role replica`: serves the tree, accepts pushes from its upstream
 * only, and relays to its own downstream replicas when it has any.
 *
 * @module
 */

import type { CommonOptions } from "../lib/config/mod.ts";
import { runServer } from "./server.ts";

/** Runs the replica role until SIGTERM/SIGINT; returns the exit code. */
export function run(opts: CommonOptions): Promise<number> {
  return runServer(opts, "replica");
}
