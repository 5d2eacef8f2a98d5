/**
 * Logging: one line per event on stderr, logfmt by default
 * (`ts=… level=info msg="daemon started" pid=42`) or JSON with
 * `--log-format json`. Fields whose name looks like a secret are redacted,
 * so a password can never reach a log by accident, and control characters are
 * stripped from every message and value (they often come from a server, a
 * client report or rsync), so a log read in a terminal cannot be driven by them.
 *
 * @module
 */

import { stripControlDeep } from "./control_chars.ts";

/** Severity, lowest first. */
export type Level = "debug" | "info" | "warn" | "error";
/** Output format. */
export type LogFormat = "logfmt" | "json";
/** Key/value context of a log line. */
export type Fields = Record<string, unknown>;

const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const SECRET_KEY = /pass(word)?|secret|token|credential/i;
const encoder = new TextEncoder();

/** Where log lines go; tests and the demo swap it. */
export type Sink = (line: string) => void;

const stderrSink: Sink = (line) => {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed (e.g. cron's pipe gone): losing a log line must not crash a role.
  }
};

/**
 * A structured logger. Children add fixed fields (`role`, `name`).
 *
 * @example
 * ```ts
 * const log = new Logger({ format: "logfmt" }).child({ role: "replica", name: "rsync2" });
 * log.info("daemon started", { pid: 42, listen: "127.0.0.3:10873" });
 * // ts=2026-11-25T21:00:00.000Z level=info msg="daemon started" role=replica name=rsync2 pid=42 listen=127.0.0.3:10873
 * ```
 */
export class Logger {
  #format: LogFormat;
  #level: Level;
  #fields: Fields;
  #sink: Sink;

  constructor(
    opts: { format?: LogFormat; level?: Level; fields?: Fields; sink?: Sink } = {},
  ) {
    this.#format = opts.format ?? "logfmt";
    this.#level = opts.level ?? "info";
    this.#fields = opts.fields ?? {};
    this.#sink = opts.sink ?? stderrSink;
  }

  /** A logger that adds `fields` to every line. */
  child(fields: Fields): Logger {
    return new Logger({
      format: this.#format,
      level: this.#level,
      fields: { ...this.#fields, ...fields },
      sink: this.#sink,
    });
  }

  /** True when lines of `level` are written. */
  enabled(level: Level): boolean {
    return RANK[level] >= RANK[this.#level];
  }

  debug(msg: string, fields?: Fields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.#write("error", msg, fields);
  }

  #write(level: Level, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const all: Fields = { ...this.#fields, ...fields };
    for (const k of Object.keys(all)) {
      if (SECRET_KEY.test(k) && !k.endsWith("_file")) all[k] = "[redacted]";
      else if (all[k] instanceof Error) all[k] = stripControlDeep((all[k] as Error).message);
      else all[k] = stripControlDeep(all[k]);
    }
    msg = stripControlDeep(msg);
    const ts = new Date().toISOString();
    this.#sink(
      this.#format === "json"
        ? JSON.stringify({ ts, level, msg, ...all })
        : formatLogfmt({ ts, level, msg, ...all }),
    );
  }
}

/**
 * Formats fields as logfmt: bare values when safe, quoted otherwise.
 *
 * @example
 * ```ts
 * formatLogfmt({ level: "info", msg: "two words" }); // 'level=info msg="two words"'
 * ```
 */
export function formatLogfmt(fields: Fields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = typeof v === "string"
      ? v
      : v === null
      ? "null"
      : typeof v === "object"
      ? JSON.stringify(v)
      : String(v);
    // Control characters (a file name from a server may hold ESC) are
    // escaped, never sent to a terminal as they are.
    // deno-lint-ignore no-control-regex
    parts.push(`${k}=${/^[^\s"=\\\x00-\x1f\x7f-\x9f]+$/.test(s) ? s : quote(s)}`);
  }
  return parts.join(" ");
}

/** `s` as a JSON string, with the C1 controls JSON leaves as they are escaped too. */
function quote(s: string): string {
  return JSON.stringify(s).replace(
    /[\x7f-\x9f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

let root = new Logger();

/** The process-wide logger, set up by `main.ts` from `--log-format`/`--log-level`. */
export function log(): Logger {
  return root;
}

/** Replaces the process-wide logger (main.ts at start-up; tests). */
export function setLogger(logger: Logger): void {
  root = logger;
}
