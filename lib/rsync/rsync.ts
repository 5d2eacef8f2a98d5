/**
 * The one place that builds and runs rsync command lines, for every role.
 *
 * Every connection gets `--sockopts=TCP_NODELAY` (with the daemon's own
 * `socket options = TCP_NODELAY`, so no small protocol write stalls on
 * Nagle's algorithm against delayed ACKs; docs/design.md), an I/O timeout,
 * and never follows or creates device files. Passwords only ever travel
 * through `--password-file`.
 *
 * @module
 */

import { EnvironmentError, TransferError } from "../core/mod.ts";

/** One rsync transfer, in fanout's terms. */
export interface RsyncJob {
  /** Local path or rsync:// URL; a trailing slash copies the contents. */
  source: string;
  /** Local path or rsync:// URL. */
  dest: string;
  /** Delete what the source does not have. */
  delete?: boolean;
  /**
   * With `delete`: remove only after every updated file is in place
   * (`--delete-delay`), so a renamed file never vanishes before its new name appears.
   */
  deleteDelay?: boolean;
  /** Put changed files in place at the end, together (`--delay-updates`). */
  delayUpdates?: boolean;
  /** Local address to connect from (`--address`), so `hosts allow` sees it. */
  address?: string;
  /** `--password-file`, for authenticated modules. */
  passwordFile?: string;
  /** I/O timeout in ms (`--timeout`, whole seconds, at least 1). */
  timeout: number;
  /** Daemon connect timeout in ms (`--contimeout`). */
  connectTimeout?: number;
  /** `--exclude` patterns. */
  excludes?: string[];
  /** Send only the paths listed in this file, relative to `source`. */
  filesFrom?: string;
  /** Refuse to delete more than this many entries (`--max-delete`). */
  maxDelete?: number;
  /** Change nothing, report what would change. */
  dryRun?: boolean;
  /** Print one itemized line per change (`--itemize-changes`). */
  itemize?: boolean;
  /** Keep what is overwritten or deleted here (`--backup --backup-dir`). */
  backupDir?: string;
  /** Hard-link unchanged files from this directory (`--link-dest`). */
  linkDest?: string;
  /** Show overall progress on stderr (`--info=progress2`). */
  progress?: boolean;
  /** Compare by checksum instead of size and time. */
  checksum?: boolean;
  /**
   * Compare mtimes to the nanosecond (`--modify-window=-1`; rsync 3.1.3+).
   * On unless set to false: rsync's default compares whole seconds, so a
   * file rewritten with the same size within one second of its last
   * transfer would be skipped, and stay wrong.
   */
  exactTimes?: boolean;
  /**
   * Keep holes as holes (`--sparse`): a 2 GB sparse file stays a few blocks
   * on the receiver instead of 2 GB of zeros. Works with `--delay-updates`,
   * `--temp-dir` and `--delete-delay` in rsync 3.2.7 and 3.5.0 (either end).
   */
  sparse?: boolean;
  /** Write incoming files here first (`--temp-dir`, relative to the destination root). */
  tempDir?: string;
  /** Anything else, appended before source and dest. */
  extra?: string[];
}

/** Totals from `--stats`. */
export interface RsyncStats {
  files: number;
  created: number;
  deleted: number;
  transferred: number;
  totalSize: number;
  transferredSize: number;
  bytesSent: number;
  bytesReceived: number;
}

/** What one rsync run did. */
export interface RsyncResult {
  /** rsync's exit code. */
  code: number;
  /** Parsed `--stats`, when rsync printed them. */
  stats: RsyncStats | null;
  /**
   * Itemized change lines (`>f+++++++++ a/b`), when `itemize` was set and
   * the run kept them ({@linkcode RunOptions.keepItems}).
   */
  items: string[];
  /** Itemized deletions (`*deleting`), counted even when the lines are not kept. */
  deleted: number;
  /** Itemized new entries (`>f+++++++++`, `cd+++++++++`…), counted likewise. */
  created: number;
  /** stderr, trimmed to its last few KiB. */
  stderr: string;
  /** Wall time in ms. */
  ms: number;
}

/**
 * The argument list (without the rsync binary) for `job`.
 *
 * @example
 * ```ts
 * rsyncArgs({ source: "/srv/t/", dest: "rsync://apps@127.0.0.3:10873/t-push/", timeout: 30_000 });
 * ```
 */
export function rsyncArgs(job: RsyncJob): string[] {
  const a = ["-a", "--no-D", "--sockopts=TCP_NODELAY", "--stats"];
  a.push(`--timeout=${Math.max(1, Math.ceil(job.timeout / 1000))}`);
  const remote = isDaemonUrl(job.source) || isDaemonUrl(job.dest);
  if (remote && job.connectTimeout) {
    a.push(`--contimeout=${Math.max(1, Math.ceil(job.connectTimeout / 1000))}`);
  }
  if (remote && job.address) a.push(`--address=${job.address}`);
  if (job.passwordFile) a.push(`--password-file=${job.passwordFile}`);
  if (job.delete) a.push(job.deleteDelay ? "--delete-delay" : "--delete");
  if (job.delayUpdates) a.push("--delay-updates");
  if (job.maxDelete !== undefined) a.push(`--max-delete=${job.maxDelete}`);
  if (job.dryRun) a.push("--dry-run");
  // Without a link's target (-i's own format is "%i %n%L"): a name holding
  // " -> " would read as a shorter name and a target.
  if (job.itemize) a.push("--itemize-changes", "--out-format=%i %n");
  if (job.checksum) a.push("--checksum");
  if (job.sparse) a.push("--sparse");
  if (job.exactTimes !== false) a.push("--modify-window=-1");
  if (job.backupDir) a.push("--backup", `--backup-dir=${job.backupDir}`);
  if (job.linkDest) a.push(`--link-dest=${job.linkDest}`);
  if (job.tempDir) a.push(`--temp-dir=${job.tempDir}`);
  if (job.progress) a.push("--info=progress2");
  if (job.filesFrom) a.push("--from0", `--files-from=${job.filesFrom}`);
  for (const x of job.excludes ?? []) a.push(`--exclude=${x}`);
  a.push(...(job.extra ?? []));
  a.push(job.source, job.dest);
  return a;
}

/**
 * Writes `paths` to `file` as rsync reads a `filesFrom` list (NUL-terminated,
 * for the `--from0` that {@linkcode rsyncArgs} passes with it), so any name
 * but one holding a NUL travels as is.
 *
 * @example
 * ```ts
 * await writeFileList("/var/lib/fanout/web1/files-from", ["a.txt", "dir/b c.txt"]);
 * ```
 */
export async function writeFileList(file: string, paths: Iterable<string>): Promise<void> {
  await Deno.writeTextFile(file, [...paths].map((p) => p + "\0").join(""));
}

function isDaemonUrl(s: string): boolean {
  return s.startsWith("rsync://") || /^[^/]*::/.test(s);
}

/** Options of {@linkcode runRsync}. */
export interface RunOptions {
  /** The rsync binary (fleet `rsync.path`). */
  rsync?: string;
  /** Aborting kills the transfer (its whole process group). */
  signal?: AbortSignal;
  /** Called for each stderr line as it arrives (progress, errors). */
  onStderr?: (line: string) => void;
  /** Pass stderr through to ours untouched (interactive `--verbose`). */
  inheritStderr?: boolean;
  /** Called for each stdout line as it arrives (`--info=progress2` updates). */
  onStdout?: (line: string) => void;
  /** Called with rsync's pid (it leads its own process group) once it started. */
  onSpawn?: (pid: number) => void;
  /**
   * Keep the itemized lines in the result (default true). A whole-tree push
   * to an empty replica itemizes every file: a line per file held in memory
   * per run, when only their counts are wanted.
   */
  keepItems?: boolean;
}

/**
 * Runs rsync with `args` and collects its exit code, stats and itemized lines.
 * Never throws for a non-zero exit: callers decide, usually with
 * {@linkcode describeRsyncFailure}.
 *
 * @throws {EnvironmentError} when the rsync binary cannot be started.
 *
 * @example
 * ```ts
 * const r = await runRsync(rsyncArgs(job));
 * if (r.code !== 0) throw new TransferError(describeRsyncFailure(r), r.code);
 * ```
 */
export async function runRsync(args: string[], opts: RunOptions = {}): Promise<RsyncResult> {
  const started = performance.now();
  const rsync = opts.rsync ?? "rsync";
  // (With stderr passed through, setsid(1)'s word that rsync is missing
  // could not be read.)
  const lead = opts.inheritStderr ? null : sessionLeader();
  let child: Deno.ChildProcess;
  try {
    // Its own session and process group, so an abort kills rsync and its
    // forked receiver together: by setsid(1), which takes rsync's place,
    // where it is installed; else by Deno's `detached`, which forks this
    // process to set it up (copying its page tables: 10-40 ms once a run
    // holds a manifest of 10k paths).
    child = new Deno.Command(lead ?? rsync, {
      args: lead ? [rsync, ...args] : args,
      stdin: "null",
      stdout: "piped",
      stderr: opts.inheritStderr ? "inherit" : "piped",
      detached: !lead,
      env: { LC_ALL: "C" },
    }).spawn();
  } catch (e) {
    throw missingRsync(rsync, e);
  }
  opts.onSpawn?.(child.pid);
  const kill = () => {
    try {
      Deno.kill(-child.pid, "SIGTERM");
    } catch {
      // Not leading its group yet (setsid(1) about to make it so), or gone.
      try {
        Deno.kill(child.pid, "SIGTERM");
      } catch { /* already gone */ }
    }
  };
  opts.signal?.addEventListener("abort", kill, { once: true });
  const other: string[] = [];
  const items: string[] = [];
  let deleted = 0, created = 0;
  const keepItems = opts.keepItems ?? true;
  const onOut = (line: string) => {
    opts.onStdout?.(line);
    if (!ITEM.test(line)) {
      other.push(line);
      return;
    }
    if (line.startsWith("*deleting")) deleted++;
    else if (CREATED.test(line)) created++;
    if (keepItems) items.push(line);
  };
  try {
    const [, err, status] = await Promise.all([
      readLines(child.stdout, onOut),
      opts.inheritStderr ? Promise.resolve([]) : readLines(child.stderr, opts.onStderr, true),
      child.status,
    ]);
    const stderr = err.join("\n");
    const unstarted = lead ? /^setsid: failed to execute .*?: (.*)$/m.exec(stderr) : null;
    if (unstarted && (status.code === 126 || status.code === 127)) {
      throw missingRsync(
        rsync,
        status.code === 127 ? new Deno.errors.NotFound(unstarted[1]) : new Error(unstarted[1]),
      );
    }
    return {
      code: status.code,
      stats: parseStats(other),
      items,
      deleted,
      created,
      stderr: stderr.length > 4096 ? stderr.slice(-4096) : stderr,
      ms: performance.now() - started,
    };
  } finally {
    opts.signal?.removeEventListener("abort", kill);
  }
}

/** Hands each line to `each`; returns them too when `keep`. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  each?: (line: string) => void,
  keep = false,
): Promise<string[]> {
  const lines: string[] = [];
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    // progress2 redraws with \r: treat it as a line end so callers see updates.
    const parts = (rest + chunk).split(/\r|\n/);
    rest = parts.pop()!;
    for (const p of parts) {
      if (!p) continue;
      if (keep) keepTail(lines, p);
      each?.(p);
    }
    // A line without end (a server sending no newline) is cut, not grown.
    if (rest.length > MAX_LINE) rest = rest.slice(-MAX_LINE);
  }
  if (rest) {
    if (keep) keepTail(lines, rest);
    each?.(rest);
  }
  return lines;
}

/** The longest line kept, and the most kept lines of a stream: its tail. */
const MAX_LINE = 64 * 1024;
const MAX_KEPT = 200;

function keepTail(lines: string[], line: string): void {
  lines.push(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
  if (lines.length > MAX_KEPT) lines.shift();
}

const ITEM = /^(\*deleting|[<>ch.*][fdLDS][.+cstpoguaxn?]{7,9}) /;
/** An itemized line of an entry the destination did not have. */
const CREATED = /^[<>ch][fdLDS]\+{7,}/;

const STAT_KEYS: [RegExp, keyof RsyncStats][] = [
  [/^Number of files: ([\d,]+)/, "files"],
  [/^Number of created files: ([\d,]+)/, "created"],
  [/^Number of deleted files: ([\d,]+)/, "deleted"],
  [/^Number of regular files transferred: ([\d,]+)/, "transferred"],
  [/^Total file size: ([\d,]+)/, "totalSize"],
  [/^Total transferred file size: ([\d,]+)/, "transferredSize"],
  [/^Total bytes sent: ([\d,]+)/, "bytesSent"],
  [/^Total bytes received: ([\d,]+)/, "bytesReceived"],
];

/**
 * Parses the `--stats` block out of rsync's stdout lines; null when absent.
 *
 * @example
 * ```ts
 * parseStats(["Number of files: 1,204 (reg: 1,000, dir: 204)"])?.files; // 1204
 * ```
 */
export function parseStats(lines: string[]): RsyncStats | null {
  const s: RsyncStats = {
    files: 0,
    created: 0,
    deleted: 0,
    transferred: 0,
    totalSize: 0,
    transferredSize: 0,
    bytesSent: 0,
    bytesReceived: 0,
  };
  let found = false;
  for (const line of lines) {
    for (const [re, key] of STAT_KEYS) {
      const m = re.exec(line);
      if (m) {
        s[key] = Number(m[1].replaceAll(",", ""));
        found = true;
      }
    }
  }
  return found ? s : null;
}

const EXIT_MEANING: Record<number, string> = {
  1: "syntax or usage error",
  2: "protocol incompatibility",
  3: "errors selecting input/output files or directories",
  4: "requested action not supported",
  5: "error starting the client-server protocol",
  6: "daemon unable to append to its log file",
  10: "error in socket I/O",
  11: "error in file I/O",
  12: "error in the rsync protocol data stream",
  13: "errors with program diagnostics",
  14: "error in IPC code",
  20: "interrupted",
  21: "waitpid() failed",
  22: "out of memory",
  23: "partial transfer due to error",
  24: "partial transfer: some source files vanished",
  25: "the --max-delete limit stopped deletions",
  30: "timeout in data send/receive",
  35: "timeout waiting for the daemon connection",
};

/**
 * What rsync's exit code means, in words.
 *
 * @example
 * ```ts
 * rsyncExitMeaning(30); // "timeout in data send/receive"
 * ```
 */
export function rsyncExitMeaning(code: number): string {
  return EXIT_MEANING[code] ?? (code > 128 ? `killed by signal ${code - 128}` : "unknown error");
}

/**
 * One line describing a failed run: rsync's code, its meaning, and rsync's own
 * most telling stderr line (an `@ERROR` from the daemon, a connect error).
 *
 * @example
 * ```ts
 * describeRsyncFailure({ code: 5, stderr: "@ERROR: auth failed on module t-push" });
 * // "rsync exit 5 (error starting the client-server protocol): @ERROR: auth failed on module t-push"
 * ```
 */
export function describeRsyncFailure(r: Pick<RsyncResult, "code" | "stderr">): string {
  const lines = r.stderr.split("\n").map((l) => l.trim()).filter((l) =>
    l && !l.startsWith("rsync error:")
  );
  const telling = lines.find((l) => l.startsWith("@ERROR")) ??
    lines.find((l) =>
      /failed to connect|refused|timed out|auth|denied|No such|not found/i.test(l)
    ) ??
    lines[0];
  const base = `rsync exit ${r.code} (${rsyncExitMeaning(r.code)})`;
  if (!telling) return base;
  // The daemon's words travel to a terminal and a status file: control
  // characters out, and at most a line's worth.
  // deno-lint-ignore no-control-regex
  const said = telling.replace(/\s*\(code \d+\) at .*$/, "").replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
  return `${base}: ${said.length > 500 ? `${said.slice(0, 500)}…` : said}`;
}

/**
 * Runs `job` and throws when rsync fails.
 *
 * @throws {TransferError} carrying rsync's exit code.
 * @throws {EnvironmentError} when rsync is missing.
 */
export async function rsyncOrThrow(job: RsyncJob, opts: RunOptions = {}): Promise<RsyncResult> {
  const r = await runRsync(rsyncArgs(job), opts);
  if (r.code !== 0) throw new TransferError(describeRsyncFailure(r), r.code);
  return r;
}

/** requireRsync's answers, by the rsync asked about. */
const checked = new Map<string, Promise<string>>();

/**
 * Checks that rsync is installed and at least 3.1.3 (nanosecond mtime
 * comparison); returns its version.
 * A good answer is cached for the process, for each `rsync` on its own.
 *
 * @throws {EnvironmentError} with one sentence saying how to install it.
 *
 * @example
 * ```ts
 * const version = await requireRsync("rsync"); // "3.2.7"
 * ```
 */
export function requireRsync(rsync = "rsync"): Promise<string> {
  const cached = checked.get(rsync);
  if (cached) return cached;
  const answer = (async () => {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command(rsync, { args: ["--version"], stdin: "null" }).output();
    } catch (e) {
      throw missingRsync(rsync, e);
    }
    const text = new TextDecoder().decode(out.stdout);
    const m = /version\s+v?(\d+)\.(\d+)\.(\d+)/.exec(text);
    if (!m) throw new EnvironmentError(`${rsync} --version printed no version: is it rsync?`);
    const [maj, min] = [Number(m[1]), Number(m[2])];
    if (maj < 3 || (maj === 3 && min < 1)) {
      throw new EnvironmentError(
        `rsync ${m[1]}.${m[2]}.${
          m[3]
        } is too old: fanout needs rsync 3.1 or newer (apt-get install rsync)`,
      );
    }
    return `${m[1]}.${m[2]}.${m[3]}`;
  })();
  checked.set(rsync, answer);
  // A failure is asked again next time (rsync may be installed meanwhile).
  answer.catch(() => checked.get(rsync) === answer && checked.delete(rsync));
  return answer;
}

/** setsid(1)'s path, or null where it is not installed; looked for once. */
let leader: string | null | undefined;

/**
 * The setsid(1) that {@linkcode runRsync} starts rsync through, or null.
 * Started by posix_spawn, it calls setsid(2) and executes rsync in its own
 * place, so the pid rsync runs as is the one spawned.
 */
function sessionLeader(): string | null {
  if (leader === undefined) {
    leader = ["/usr/bin/setsid", "/bin/setsid"].find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    }) ?? null;
  }
  return leader;
}

function missingRsync(rsync: string, e: unknown): EnvironmentError {
  if (e instanceof Deno.errors.NotFound) {
    return new EnvironmentError(
      `rsync is not installed (no "${rsync}" on PATH): install it with "apt-get install rsync" (Debian/Ubuntu) or "dnf install rsync"`,
    );
  }
  return new EnvironmentError(`cannot run ${rsync}: ${(e as Error).message}`);
}
