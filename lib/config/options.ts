/**
 * What every command is run with, whatever parsed it: the roles, and the
 * options common to every command. The command line fills them in
 * (lib/cli); everything below the command line reads them from here, so
 * nothing below depends on how flags are parsed.
 *
 * @module
 */

import type { Override } from "./config.ts";

/** The roles a host can play. */
export const ROLES = ["primary", "replica", "proxy", "client", "publish"] as const;
/** One of {@linkcode ROLES}. */
export type Role = typeof ROLES[number];

/** Common options of every command. */
export interface CommonOptions {
  config?: string;
  name?: string;
  logFormat: "logfmt" | "json";
  logLevel: "debug" | "info" | "warn" | "error";
  /** Fleet-file keys set from flags. */
  overrides: Override[];
  /** Every flag given, by name (e.g. `"no-splay": true`). */
  flags: Record<string, string | boolean | string[] | undefined>;
}
