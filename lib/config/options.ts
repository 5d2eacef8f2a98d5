/**
 * What every command is run with, whatever parsed it: the roles, and the
 * options common to every command. The command line fills them in
 * (lib/cli); everything below the command line reads them from here, so
 * nothing below depends on how flags are parsed.
 *
 * @module
 */

import type { KeyPath } from "./paths.ts";

/** The roles a host can play. */
export const ROLES = ["primary", "replica", "proxy", "client", "publish"] as const;
/** One of {@linkcode ROLES}. */
export type Role = typeof ROLES[number];

/** A value set from the command line in place of the fleet file's. */
export interface Override {
  /** Key path; a leading `"@host"` means this host's own entry. */
  path: KeyPath;
  value: unknown;
  /** The flag as the user typed it, for error messages. */
  flag: string;
}

/** Common options of every command. */
export interface CommonOptions {
  config?: string;
  name?: string;
  logFormat: "logfmt" | "json";
  logLevel: "debug" | "info" | "warn" | "error";
  /** Fleet-file keys set from flags. */
  overrides: Override[];
  /** `--allow-mass-delete` (servers): no mass-delete guard until every replica had a whole push. */
  allowMassDelete: boolean;
  /** `--no-splay` (client): start at once. */
  noSplay: boolean;
  /** `--check` (client): list drift, change nothing. */
  check: boolean;
  /** `--watch` (client): keep running. */
  watch: boolean;
  /** `--rollback` (client): back to the previous tree. */
  rollback: boolean;
  /** `--adopt` (client): take over a non-empty dest once. */
  adopt: boolean;
  /** `--json` (client --check, fleet): print JSON. */
  json: boolean;
  /** `--verbose` (client, publish): progress and a summary line. */
  verbose: boolean;
  /** `--force` (publish): publish even an older commit. */
  force: boolean;
  /** `--duration` (demo) in ms; null: run until Ctrl-C. */
  duration: number | null;
  /** `--keep-dir` (demo): keep the temporary directory. */
  keepDir: boolean;
}

/**
 * The options of a command line that gives only `given`: no override, no
 * switch, logfmt at info.
 *
 * @example
 * ```ts
 * const opts = commonOptions({ config: "fanout.yaml", logLevel: "warn" });
 * opts.check; // false
 * ```
 */
export function commonOptions(given: Partial<CommonOptions> = {}): CommonOptions {
  return {
    logFormat: "logfmt",
    logLevel: "info",
    overrides: [],
    allowMassDelete: false,
    noSplay: false,
    check: false,
    watch: false,
    rollback: false,
    adopt: false,
    json: false,
    verbose: false,
    force: false,
    duration: null,
    keepDir: false,
    ...given,
  };
}
