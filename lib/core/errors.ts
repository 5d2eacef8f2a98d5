/**
 * Error types that map one-to-one to fanout's documented exit codes.
 *
 * Every failure a user can meet is thrown as one of these, so `main.ts` can
 * print one clear line and exit with the right code without guessing.
 *
 * @module
 */

/** The documented exit codes (docs/operations.md, "Exit codes"). */
export const ExitCode = {
  /** Success. */
  Ok: 0,
  /** `--check` found drift, or `fanout fleet` found hosts behind. */
  Drift: 1,
  /** Bad flags, bad fleet file, or a missing dependency such as rsync. */
  Usage: 2,
  /** A transfer failed; rsync's own exit code is in the message. */
  Transfer: 3,
  /** Refused for safety: nothing was changed. */
  Safety: 4,
  /** Another run holds the lock. */
  Locked: 5,
} as const;

/** One of the values of {@linkcode ExitCode}. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/**
 * Base class of every error fanout reports to its user; carries the exit code.
 *
 * @example
 * ```ts
 * throw new FanoutError("something precise went wrong", ExitCode.Usage);
 * ```
 */
export class FanoutError extends Error {
  /** The process exit code this error maps to. */
  readonly exitCode: ExitCodeValue;
  constructor(message: string, exitCode: ExitCodeValue, options?: ErrorOptions) {
    super(message, options);
    this.name = "FanoutError";
    this.exitCode = exitCode;
  }
}

/**
 * A bad command line: unknown flag, missing value, unknown role (exit 2).
 *
 * @example
 * ```ts
 * throw new UsageError('unknown flag "--lsiten" (did you mean "--listen"?)');
 * ```
 */
export class UsageError extends FanoutError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.Usage, options);
    this.name = "UsageError";
  }
}

/** One problem found in a fleet file: where it is and what was expected. */
export interface ConfigProblem {
  /** Key path, e.g. `replicas[1].listen`; empty for the whole file. */
  path: string;
  /** What is wrong, e.g. `expected host:port, got "10.0.0.3"`. */
  message: string;
  /** 1-based line in the fleet file, when known. */
  line?: number;
  /** The command-line flag that supplied the value, when it came from one. */
  flag?: string;
}

/**
 * An invalid fleet file (exit 2). Lists every problem found, each with its key
 * path, so an operator fixes them in one pass.
 *
 * @example
 * ```ts
 * throw new ConfigError("fanout.yaml", [{ path: "tree", message: "required" }]);
 * ```
 */
export class ConfigError extends FanoutError {
  /** The fleet file the problems are in (or `"flags"` for flag-only runs). */
  readonly file: string;
  /** The problems, in file order. */
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    super(problems.map((p) => formatProblem(file, p)).join("\n"), ExitCode.Usage);
    this.name = "ConfigError";
    this.file = file;
    this.problems = problems;
  }
}

/** Formats one problem as `file:line: path: message`, or `--flag: message`. */
export function formatProblem(file: string, p: ConfigProblem): string {
  if (p.flag) return `${p.flag}: ${p.message}`;
  const where = p.line ? `${file}:${p.line}` : file;
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`;
}

/**
 * Something fanout needs is missing or too old, such as rsync (exit 2).
 *
 * @example
 * ```ts
 * throw new EnvironmentError("rsync is not installed: apt-get install rsync");
 * ```
 */
export class EnvironmentError extends FanoutError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.Usage, options);
    this.name = "EnvironmentError";
  }
}

/**
 * A transfer failed (exit 3). `rsyncCode` is rsync's own exit code when rsync
 * ran, so scripts can tell a timeout (30) from a refused login (5).
 *
 * @example
 * ```ts
 * throw new TransferError("rsync failed: connection refused", 10);
 * ```
 */
export class TransferError extends FanoutError {
  /** rsync's exit code, or null when rsync did not run. */
  readonly rsyncCode: number | null;
  constructor(message: string, rsyncCode: number | null = null, options?: ErrorOptions) {
    super(message, ExitCode.Transfer, options);
    this.name = "TransferError";
    this.rsyncCode = rsyncCode;
  }
}

/**
 * Refused for safety, nothing was changed (exit 4): a dangerous destination,
 * an empty source, too many deletions.
 *
 * @example
 * ```ts
 * throw new SafetyError('refusing dest "/": it is the root directory');
 * ```
 */
export class SafetyError extends FanoutError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.Safety, options);
    this.name = "SafetyError";
  }
}

/**
 * Another run holds the lock (exit 5).
 *
 * @example
 * ```ts
 * throw new LockedError("another client run holds /var/lib/fanout/h1/client.lock");
 * ```
 */
export class LockedError extends FanoutError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.Locked, options);
    this.name = "LockedError";
  }
}
