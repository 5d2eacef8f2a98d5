/**
 * The primary's record of client reports: an SQLite file (`node:sqlite`)
 * under its state dir, so the fleet view survives a restart.
 *
 * Tables: `clients` (each host's latest report), `reports` (each host's
 * history: a run is kept when it differs from the host's previous one, in
 * version, exit code or error, or found drift; kept for `fleet.retention`,
 * at most {@linkcode HISTORY_PER_HOST} runs a host), `versions` (published
 * versions the primary has seen) and `reached` (when each host first
 * reported each version), from which time-to-converge is
 * computed. Keeping every run would not do: 500 hosts under a one-minute cron
 * make 5 million rows a week, over a gigabyte, to say "no change" again.
 * Only the primary loads this module.
 *
 * @module
 */

// Type-only: a bundle hoists a static node: import to its top, and loading
// Deno's Node layer would slow the start of every command; open() imports it
// when used.
import type { DatabaseSync, SQLInputValue } from "node:sqlite";
import { EnvironmentError } from "../core/mod.ts";
import type { ClientReport } from "../report/mod.ts";
import type { VersionMarker } from "../version/mod.ts";

/** A client's latest report, as stored. */
export interface StoredClient extends ClientReport {
  /** When the primary received it (ms since the epoch, the primary's clock). */
  received_at: number;
  /** When this host last reported a run that succeeded (ms), or null. */
  last_ok_at: number | null;
  /** The address the report came from. */
  remote: string | null;
}

/** A published version the primary has seen. */
export interface StoredVersion extends VersionMarker {
  /** When the primary first saw it (ms, its clock). */
  seen_at: number;
}

/** One host's progress towards a version. */
export interface Reach {
  host: string;
  /** When it first reported that version or a newer one (ms), or null. */
  reached_at: number | null;
  /** When its latest report came (ms). */
  last_report_at: number;
  /** When its first report (kept within retention) came (ms). */
  first_seen: number;
}

const SCHEMA = `
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS reports (
  id INTEGER PRIMARY KEY,
  host TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  exit_code INTEGER NOT NULL,
  drift INTEGER NOT NULL,
  error TEXT,
  source TEXT,
  version TEXT,
  seq INTEGER,
  remote TEXT
);
CREATE INDEX IF NOT EXISTS reports_received ON reports (received_at);
CREATE INDEX IF NOT EXISTS reports_host ON reports (host, received_at);
CREATE TABLE IF NOT EXISTS clients (
  host TEXT PRIMARY KEY,
  received_at INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  exit_code INTEGER NOT NULL,
  drift INTEGER NOT NULL,
  error TEXT,
  source TEXT,
  version TEXT,
  last_ok_at INTEGER,
  first_seen INTEGER NOT NULL,
  remote TEXT
);
CREATE TABLE IF NOT EXISTS versions (
  seq INTEGER PRIMARY KEY,
  commit_id TEXT NOT NULL,
  ref TEXT NOT NULL,
  published_at TEXT NOT NULL,
  seen_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reached (
  host TEXT NOT NULL,
  seq INTEGER NOT NULL,
  first_at INTEGER NOT NULL,
  PRIMARY KEY (host, seq)
);
`;

type Row = Record<string, SQLInputValue>;

/**
 * `s` without NUL bytes. SQLite cuts a bound string at its first NUL, so
 * "boom\0hidden" would be stored as "boom" and a host "a\0b" would be "a";
 * every string the store binds (stored or looked up) goes through this, so
 * what is stored, compared and found is the same text.
 */
function noNul<T extends string | null>(s: T): T {
  return (s === null ? s : s.replaceAll("\0", "")) as T;
}

/**
 * `v` with {@linkcode noNul} on its strings: a report's version is stored as
 * JSON (which would keep a NUL) and a published one column by column (which
 * would cut at it); both keep the same text.
 */
function markerNoNul(v: VersionMarker): VersionMarker {
  return {
    seq: v.seq,
    commit: noNul(v.commit),
    ref: noNul(v.ref),
    published_at: noNul(v.published_at),
  };
}

/** Runs kept in one host's history, newest first; older ones are deleted. */
export const HISTORY_PER_HOST = 500;

/**
 * The report database.
 *
 * @example
 * ```ts
 * const store = await FleetStore.open("/var/lib/fanout/rsync1/fleet.db");
 * store.addReport(report, Date.now(), "10.0.1.7");
 * console.log(store.clients().length);
 * store.close();
 * ```
 */
export class FleetStore {
  #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating when missing) the database at `path`.
   *
   * @throws {EnvironmentError} naming the file when it cannot be opened or is
   * not a database.
   */
  static async open(path: string): Promise<FleetStore> {
    const sqlite = await import("node:sqlite");
    let db: DatabaseSync | undefined;
    try {
      db = new sqlite.DatabaseSync(path);
      db.exec(SCHEMA);
      return new FleetStore(db);
    } catch (e) {
      try {
        db?.close();
      } catch { /* not open */ }
      throw new EnvironmentError(
        `cannot open the fleet database ${path}: ${(e as Error).message} ` +
          "(it must be a writable SQLite file; move it aside to start afresh)",
      );
    }
  }

  /**
   * Stores one report received at `now` (ms) from `remote`: as the host's
   * latest, in its history when it differs from the one before, and as the
   * first sight of its version.
   */
  addReport(r: ClientReport, now: number, remote: string | null): void {
    const version = r.version ? JSON.stringify(markerNoNul(r.version)) : null;
    const [host, error] = [noNul(r.host), noNul(r.error)];
    const row: Row = {
      host,
      received_at: now,
      started_at: noNul(r.started_at),
      duration_ms: r.duration_ms,
      exit_code: r.exit_code,
      drift: r.drift,
      error,
      source: noNul(r.source),
      version,
      remote: noNul(remote),
    };
    this.#tx(() => {
      const prev = this.#db.prepare(
        "SELECT version, exit_code, error FROM clients WHERE host = ?",
      ).get(host) as
        | { version: string | null; exit_code: number; error: string | null }
        | undefined;
      if (
        !prev || prev.version !== version || prev.exit_code !== r.exit_code ||
        prev.error !== error || r.drift > 0
      ) {
        this.#db.prepare(
          `INSERT INTO reports (host, received_at, started_at, duration_ms, exit_code, drift, error, source, version, seq, remote)
           VALUES (:host, :received_at, :started_at, :duration_ms, :exit_code, :drift, :error, :source, :version, :seq, :remote)`,
        ).run({ ...row, seq: r.version?.seq ?? null });
        // A client whose error changes every run must not grow the file without end.
        this.#db.prepare(
          `DELETE FROM reports WHERE host = :host AND id <= (
             SELECT id FROM reports WHERE host = :host ORDER BY id DESC LIMIT 1 OFFSET :keep)`,
        ).run({ host, keep: HISTORY_PER_HOST });
      }
      this.#db.prepare(
        `INSERT INTO clients (host, received_at, started_at, duration_ms, exit_code, drift, error, source, version, last_ok_at, first_seen, remote)
         VALUES (:host, :received_at, :started_at, :duration_ms, :exit_code, :drift, :error, :source, :version, :ok_at, :received_at, :remote)
         ON CONFLICT (host) DO UPDATE SET
           received_at = excluded.received_at, started_at = excluded.started_at,
           duration_ms = excluded.duration_ms, exit_code = excluded.exit_code,
           drift = excluded.drift, error = excluded.error, source = excluded.source,
           version = excluded.version, remote = excluded.remote,
           last_ok_at = COALESCE(excluded.last_ok_at, clients.last_ok_at)`,
      ).run({ ...row, ok_at: r.exit_code === 0 ? now : null });
      if (r.version) {
        this.#db.prepare(
          "INSERT OR IGNORE INTO reached (host, seq, first_at) VALUES (?, ?, ?)",
        ).run(host, r.version.seq, now);
      }
    });
  }

  /** Records a published version first seen at `now` (ms); a known seq is left alone. */
  recordVersion(v: VersionMarker, now: number): void {
    const { seq, commit, ref, published_at } = markerNoNul(v);
    this.#db.prepare(
      "INSERT OR IGNORE INTO versions (seq, commit_id, ref, published_at, seen_at) VALUES (?, ?, ?, ?, ?)",
    ).run(seq, commit, ref, published_at, now);
  }

  /** Every client's latest report, by host name. */
  clients(): StoredClient[] {
    return this.#db.prepare("SELECT * FROM clients ORDER BY host").all().map((row) => {
      const r = row as Record<string, string | number | null>;
      return {
        host: r.host as string,
        version: r.version ? JSON.parse(r.version as string) as VersionMarker : null,
        started_at: r.started_at as string,
        duration_ms: r.duration_ms as number,
        exit_code: r.exit_code as number,
        drift: r.drift as number,
        error: r.error as string | null,
        source: r.source as string | null,
        received_at: r.received_at as number,
        last_ok_at: r.last_ok_at as number | null,
        remote: r.remote as string | null,
      };
    });
  }

  /** True when `host` has a latest report stored. */
  hasClient(host: string): boolean {
    return this.#db.prepare("SELECT 1 FROM clients WHERE host = ?").get(noNul(host)) !== undefined;
  }

  /** How many hosts have a latest report stored. */
  clientCount(): number {
    return (this.#db.prepare("SELECT COUNT(*) AS n FROM clients").get() as { n: number }).n;
  }

  /** The newest `limit` versions seen, newest first. */
  versions(limit: number): StoredVersion[] {
    return this.#db.prepare(
      "SELECT seq, commit_id, ref, published_at, seen_at FROM versions ORDER BY seq DESC LIMIT ?",
    ).all(limit).map((row) => {
      const r = row as Record<string, string | number>;
      return {
        seq: r.seq as number,
        commit: r.commit_id as string,
        ref: r.ref as string,
        published_at: r.published_at as string,
        seen_at: r.seen_at as number,
      };
    });
  }

  /**
   * Every host's progress towards version `seq`: when it first reported
   * `seq` or a newer one (null: not yet), when it was first and last heard of.
   */
  reach(seq: number): Reach[] {
    return this.#db.prepare(
      `SELECT c.host AS host, c.received_at AS last_report_at, c.first_seen AS first_seen,
         (SELECT MIN(first_at) FROM reached r WHERE r.host = c.host AND r.seq >= :seq) AS reached_at
       FROM clients c ORDER BY c.host`,
    ).all({ seq }).map((row) => {
      const r = row as Record<string, string | number | null>;
      return {
        host: r.host as string,
        reached_at: r.reached_at as number | null,
        last_report_at: r.last_report_at as number,
        first_seen: r.first_seen as number,
      };
    });
  }

  /** Runs kept in the history (see the module doc). */
  historyCount(): number {
    return (this.#db.prepare("SELECT COUNT(*) AS n FROM reports").get() as { n: number }).n;
  }

  /**
   * Deletes what is older than `retention` (ms) before `now`: reports, hosts
   * silent that long, versions superseded that long ago (the newest stays),
   * and progress records of versions no longer kept. Returns reports deleted.
   */
  prune(now: number, retention: number): number {
    const cutoff = now - retention;
    let n = 0;
    this.#tx(() => {
      n = Number(
        this.#db.prepare("DELETE FROM reports WHERE received_at < ?").run(cutoff).changes,
      );
      this.#db.prepare("DELETE FROM clients WHERE received_at < ?").run(cutoff);
      this.#db.prepare(
        "DELETE FROM versions WHERE seen_at < ? AND seq < (SELECT MAX(seq) FROM versions)",
      ).run(cutoff);
      this.#db.prepare(
        `DELETE FROM reached WHERE host NOT IN (SELECT host FROM clients)
           OR seq < (SELECT COALESCE(MIN(seq), 0) FROM versions)`,
      ).run();
    });
    return n;
  }

  /** Closes the database. */
  close(): void {
    try {
      this.#db.close();
    } catch { /* already closed */ }
  }

  #tx(fn: () => void): void {
    this.#db.exec("BEGIN");
    try {
      fn();
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }
}
