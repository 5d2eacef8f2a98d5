/**
 * The rsync daemon of a server host: its rsyncd.conf, rendered from the fleet
 * file, and a supervisor that starts `rsync --daemon --no-detach`, waits for
 * its `@RSYNCD:` greeting, restarts it with backoff when it dies, and stops
 * its whole process group.
 *
 * @module
 */

import template from "./rsyncd.conf" with { type: "text" };
import { type Fleet, renderedBy, rsyncdValue, type ServerHost, writersOf } from "../config/mod.ts";
import {
  EnvironmentError,
  exists,
  formatDuration,
  formatHostPort,
  type HostPort,
  type Logger,
  renderTemplate,
  SERVER_TEMP_DIR,
  stripControl,
  tempFor,
} from "../core/mod.ts";
import { probeRsyncd, PROXY_V1_UNKNOWN } from "../rsync/mod.ts";
import { commandLine, holdsListener, killGroup, trackGroup } from "../sys/mod.ts";
import { markerComment, type VersionMarker } from "../version/mod.ts";

/** Who the daemon runs as, when started by root. */
export interface DaemonIdentity {
  /** True when fanout runs as root: then uid/gid and chroot apply. */
  asRoot: boolean;
  uid: string;
  gid: string;
}

/**
 * Decides the daemon's identity: `uid`/`gid` from the fleet file, else the
 * owner of the host's tree (so the daemon can write to it after dropping root).
 *
 * @throws {EnvironmentError} when the tree does not exist.
 */
export async function daemonIdentity(fleet: Fleet, host: ServerHost): Promise<DaemonIdentity> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(host.path);
  } catch {
    throw new EnvironmentError(
      `${host.name}: the tree ${host.path} does not exist: create it (mkdir -p ${host.path}) or fix path in the fleet file`,
    );
  }
  if (!st.isDirectory) throw new EnvironmentError(`${host.name}: ${host.path} is not a directory`);
  return {
    asRoot: Deno.uid() === 0,
    uid: fleet.uid ?? String(st.uid ?? 0),
    gid: fleet.gid ?? String(st.gid ?? 0),
  };
}

/**
 * Renders the rsyncd.conf of a server host: a read module open to all, and a
 * write module that only the host's writers (the publisher for the primary,
 * the upstream for a replica) may use, with the password.
 *
 * @example
 * ```ts
 * const text = renderRsyncdConf(fleet, fleet.replicas[0], { asRoot: false, uid: "0", gid: "0" });
 * ```
 */
export function renderRsyncdConf(
  fleet: Fleet,
  host: ServerHost,
  id: DaemonIdentity,
  opts: {
    proxyProtocol?: boolean;
    /**
     * With `proxyProtocol`: the peers whose PROXY header the daemon trusts
     * (`proxy protocol hosts`, rsync 3.5+). Empty or absent: not rendered,
     * as rsync before 3.5 does not know the parameter.
     */
    proxyProtocolHosts?: string[];
    listen?: HostPort;
    /** Read module only (the daemon behind the PROXY-protocol proxy). */
    readOnly?: boolean;
    /** Where pid, lock and log files go (default: the host's state dir). */
    stateDir?: string;
    /** The tree's version, announced in the read module's comment. */
    version?: VersionMarker | null;
  } = {},
): string {
  const writers = opts.readOnly ? [] : writersOf(fleet, host);
  const writerNames = host.kind === "primary" ? fleet.publisher?.name ?? "" : host.upstream ?? "";
  const listen = opts.listen ?? host.listen;
  return renderTemplate(template, {
    header: renderedBy(fleet),
    name: host.name,
    kind: host.kind,
    state_dir: opts.stateDir ?? host.stateDir,
    listen_host: listen.host,
    listen_port: listen.port,
    timeout: Math.ceil(fleet.rsync.timeout / 1000),
    proxy_protocol: opts.proxyProtocol ?? false,
    proxy_protocol_hosts: (opts.proxyProtocolHosts ?? []).join(" "),
    push_listen: formatHostPort(host.listen),
    root: id.asRoot,
    uid: id.uid,
    gid: id.gid,
    tree: fleet.tree,
    path: host.path,
    read_module: fleet.modules.read,
    write_module: fleet.modules.write,
    max_connections: host.maxConnections,
    writers: writers.length > 0,
    writer_names: writerNames,
    writer_addresses: writers.join(" "),
    user: fleet.auth.user,
    secrets_file: fleet.auth.secretsFile,
    write_max_connections: 50,
    version_comment: opts.version ? markerComment(opts.version) : "",
    temp_dir: SERVER_TEMP_DIR,
  }, rsyncdValue);
}

/**
 * True when rsync `rsyncVersion` (as `requireRsync` in lib/rsync/rsync.ts returns it)
 * knows `proxy protocol hosts`: 3.5.0 and later, whose daemon with
 * `proxy protocol = yes` refuses every connection from a peer not listed
 * there. Older ones log "IGNORING unknown parameter" for it on every
 * connection, so it is rendered only for those that know it.
 *
 * @example
 * ```ts
 * knowsProxyProtocolHosts("3.2.7"); // false
 * knowsProxyProtocolHosts("3.5.0"); // true
 * ```
 */
export function knowsProxyProtocolHosts(rsyncVersion: string): boolean {
  const [major, minor] = rsyncVersion.split(".").map(Number);
  return major > 3 || (major === 3 && minor >= 5);
}

/** Where the daemon is in its life. */
export type DaemonState = "starting" | "up" | "down" | "stopped";

/** Options of {@linkcode RsyncDaemon}. */
export interface DaemonOptions {
  /** The rsync binary. */
  rsync: string;
  /** Absolute path of the rendered rsyncd.conf. */
  confPath: string;
  /** Where the daemon listens (to wait for its greeting). */
  listen: HostPort;
  /** Holds rsyncd.pid and rsyncd.log. */
  stateDir: string;
  log: Logger;
  /**
   * Renders the conf for a tree version; with it, {@linkcode RsyncDaemon.setVersion}
   * rewrites the conf when the version changes (rsyncd re-reads it on every connection).
   */
  render?: (version: VersionMarker | null) => string;
  /** How long a start may take before it counts as failed (ms). */
  readyTimeout?: number;
  /** First and longest wait between restarts (ms). */
  backoffMin?: number;
  backoffMax?: number;
  /** The daemon has `proxy protocol = yes`: readiness probes send a PROXY header. */
  proxyProtocol?: boolean;
}

/**
 * Supervises one `rsync --daemon --no-detach`.
 *
 * @example
 * ```ts
 * const d = new RsyncDaemon({ rsync: "rsync", confPath, listen, stateDir, log });
 * await d.start();   // resolves once the daemon greets
 * // … d.state === "up"
 * await d.stop();    // SIGTERM to its process group, SIGKILL after 5 s
 * ```
 */
export class RsyncDaemon {
  #o: Required<Omit<DaemonOptions, "render">> & Pick<DaemonOptions, "render">;
  #state: DaemonState = "stopped";
  #child: Deno.ChildProcess | null = null;
  #stopping = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #restarts = 0;
  #lastError: string | null = null;
  #since = Date.now();
  #conf: string | null = null;
  #rewrite: Promise<void> = Promise.resolve();

  constructor(opts: DaemonOptions) {
    this.#o = {
      readyTimeout: 10_000,
      backoffMin: 1_000,
      backoffMax: 30_000,
      proxyProtocol: false,
      ...opts,
    };
  }

  /** starting, up, down (between a crash and its restart) or stopped. */
  get state(): DaemonState {
    return this.#state;
  }
  /** The daemon's pid while it runs. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }
  /** How many times it was restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }
  /** Why it last died or failed to start. */
  get lastError(): string | null {
    return this.#lastError;
  }
  /** When the state last changed (ms since epoch). */
  get since(): number {
    return this.#since;
  }

  /**
   * Starts the daemon and resolves once it greets.
   *
   * @throws {EnvironmentError} when the first start fails (port in use, bad
   * config, rsync missing), with rsync's own words.
   */
  async start(): Promise<void> {
    this.#stopping = false;
    await this.#clearStale();
    let first: (err?: Error) => void = () => {};
    const started = new Promise<void>((res, rej) => first = (err) => err ? rej(err) : res());
    this.#loop = this.#run(first);
    await started;
  }

  /**
   * Announces `version` in the read module's comment: rewrites the
   * conf (atomically: rsyncd reads it on every connection) when it changed.
   * Calls run one at a time, in call order, so the last call's version is
   * the one left in the file.
   *
   * @throws {Error} when the conf cannot be rewritten (a full disk): it
   * still announces the version before, which the caller must not take as
   * announced.
   */
  setVersion(version: VersionMarker | null): Promise<void> {
    const render = this.#o.render;
    if (!render) return Promise.resolve();
    const next = this.#rewrite.then(() => this.#writeConf(render(version)));
    // A failed rewrite fails its own call only: the next one still runs.
    this.#rewrite = next.catch(() => {});
    return next;
  }

  /** Writes the conf through a temp file of this process. */
  async #writeConf(text: string): Promise<void> {
    if (text === this.#conf) return;
    const tmp = tempFor(this.#o.confPath);
    try {
      await Deno.writeTextFile(tmp, text);
      await Deno.rename(tmp, this.#o.confPath);
      this.#conf = text;
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new Error(`cannot rewrite ${this.#o.confPath}: ${(e as Error).message}`);
    }
  }

  /** Stops the daemon and every process of its group; idempotent. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    const child = this.#child;
    if (child) {
      killGroup(child.pid, "SIGTERM");
      const t = setTimeout(() => killGroup(child.pid, "SIGKILL"), 5_000);
      await child.status;
      clearTimeout(t);
      // Per-connection children may still be finishing a transfer.
      killGroup(child.pid, "SIGKILL");
    }
    await this.#loop;
    this.#set("stopped");
  }

  async #run(first: (err?: Error) => void): Promise<void> {
    let backoff = this.#o.backoffMin;
    let isFirst = true;
    while (!this.#stopping) {
      this.#set("starting");
      const t0 = Date.now();
      // Before the spawn: what the daemon logs at once (a warning on its
      // config) belongs to this start, however late this process looks.
      const logFrom = await fileSize(this.#logPath);
      let child: Deno.ChildProcess;
      try {
        child = new Deno.Command(this.#o.rsync, {
          args: ["--daemon", "--no-detach", `--config=${this.#o.confPath}`],
          stdin: "null",
          stdout: "null",
          stderr: "piped",
          detached: true,
        }).spawn();
      } catch (e) {
        const err = e instanceof Deno.errors.NotFound
          ? new EnvironmentError(`rsync is not installed: install it with "apt-get install rsync"`)
          : new EnvironmentError(`cannot start rsync: ${(e as Error).message}`);
        if (isFirst) return first(err);
        this.#lastError = err.message;
        await this.#sleep(backoff);
        continue;
      }
      this.#child = child;
      const forget = trackGroup(child.pid);
      const stderr = collectStderr(child.stderr);
      const start = await this.#waitReady(child, logFrom);
      const ready = start.ready;
      if (ready) {
        this.#set("up");
        this.#o.log.info("rsync daemon up", {
          pid: child.pid,
          listen: formatHostPort(this.#o.listen),
          ms: Date.now() - t0,
        });
        if (isFirst) first();
        isFirst = false;
      }
      const status = await child.status;
      forget();
      this.#child = null;
      if (this.#stopping) break;
      const why = await this.#describeExit(child.pid, status, await stderr, start);
      this.#lastError = why;
      this.#set("down");
      if (!ready && isFirst) {
        killGroup(child.pid, "SIGKILL");
        return first(
          new EnvironmentError(
            `rsync daemon did not start on ${formatHostPort(this.#o.listen)}: ${why}`,
          ),
        );
      }
      if (Date.now() - t0 > 60_000) backoff = this.#o.backoffMin;
      this.#o.log.error("rsync daemon died; restarting", {
        listen: formatHostPort(this.#o.listen),
        reason: why,
        restart_in: formatDuration(backoff),
      });
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2, this.#o.backoffMax);
      if (!this.#stopping) this.#restarts++;
    }
  }

  /**
   * Waits for this daemon's greeting. A greeting counts only when this
   * child holds the listening socket: another process on the port (an old
   * rsyncd on 0.0.0.0) greets while this one fails to bind and exits.
   */
  async #waitReady(child: Deno.ChildProcess, logFrom: number): Promise<StartOutcome> {
    let exited = false;
    child.status.then(() => exited = true);
    const deadline = Date.now() + this.#o.readyTimeout;
    let foreign = false;
    while (!exited && !this.#stopping && Date.now() < deadline) {
      const r = await probeRsyncd(this.#o.listen, 500, {
        proxyHeader: this.#o.proxyProtocol ? PROXY_V1_UNKNOWN : undefined,
      });
      if (r.ok) {
        if ((await holdsListener(child.pid, this.#o.listen.port)) !== false) {
          return { ready: true, timedOut: false, foreign, logFrom };
        }
        foreign = true;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    const timedOut = !exited && !this.#stopping;
    if (timedOut) killGroup(child.pid, "SIGTERM");
    return { ready: false, timedOut, foreign, logFrom };
  }

  async #describeExit(
    pid: number,
    status: Deno.CommandStatus,
    stderr: string,
    start: StartOutcome,
  ): Promise<string> {
    const other = start.foreign
      ? "; another process answers on that address (an old rsync daemon?)"
      : "";
    if (start.timedOut) {
      const tail = await this.#logTail(start.logFrom);
      return `no greeting within ${this.#o.readyTimeout}ms${other}` +
        (tail.length ? `; its log: ${tail.join(" | ")}` : "");
    }
    const how = status.signal ? `killed by ${status.signal}` : `exited with code ${status.code}`;
    // rsync's stderr holds only its generic "rsync error: … (code N)"; the
    // cause ("bind() failed: Address already in use") is in its log file.
    const specific = (l: string) => l.trim() !== "" && !l.startsWith("rsync error:");
    const said = stderr.split("\n").find(specific) ?? (await this.#logLines(pid)).find(specific);
    if (said) return `${how}: ${clip(said)}${other}`;
    const tail = start.ready ? [] : await this.#logTail(start.logFrom);
    return how + other + (tail.length ? `; its log: ${tail.join(" | ")}` : "");
  }

  get #logPath(): string {
    return `${this.#o.stateDir}/rsyncd.log`;
  }

  async #logLines(pid: number): Promise<string[]> {
    try {
      const text = await Deno.readTextFile(this.#logPath);
      const mark = `[${pid}] `;
      return text.split("\n").slice(-200)
        .filter((l) => l.includes(mark) && /failed|unable|unknown|invalid|error|denied/i.test(l))
        .map((l) => l.slice(l.indexOf(mark) + mark.length));
    } catch {
      return [];
    }
  }

  /**
   * The daemon's last log lines written since byte `from` (this start),
   * for an error message: at most {@linkcode LOG_TAIL_LINES} distinct lines
   * of at most {@linkcode LOG_TAIL_CHARS} characters, without the time and
   * pid prefix, control characters stripped.
   */
  async #logTail(from: number): Promise<string[]> {
    const text = await readFrom(this.#logPath, from, 64 * 1024);
    const lines = text.split("\n")
      .map((l) => clip(l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[\d+\] /, "")))
      .filter((l) => l !== "");
    // A daemon that refuses every probe logs the same line each time.
    const distinct: string[] = [];
    for (const l of lines.reverse()) {
      if (!distinct.includes(l)) distinct.unshift(l);
      if (distinct.length === LOG_TAIL_LINES) break;
    }
    return distinct;
  }

  /** A daemon left running by an earlier fanout that was SIGKILLed holds our port. */
  async #clearStale(): Promise<void> {
    const pidFile = `${this.#o.stateDir}/rsyncd.pid`;
    let pid: number;
    try {
      pid = Number((await Deno.readTextFile(pidFile)).trim());
    } catch {
      return;
    }
    if ((await commandLine(pid)).includes(this.#o.confPath)) {
      this.#o.log.warn("stopping a stale rsync daemon left by an earlier run", { pid });
      killGroup(pid, "SIGTERM");
      for (let i = 0; i < 50 && (await exists(`/proc/${pid}`)); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      killGroup(pid, "SIGKILL");
    }
    await Deno.remove(pidFile).catch(() => {});
  }

  #set(state: DaemonState): void {
    if (state !== this.#state) this.#since = Date.now();
    this.#state = state;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(() => {
        this.#wake = null;
        res();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = null;
        res();
      };
    });
  }
}

async function collectStderr(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text = (text + chunk).slice(-4096);
  }
  return text;
}

/** How a start attempt went, for {@linkcode RsyncDaemon}'s messages. */
interface StartOutcome {
  ready: boolean;
  /** No greeting from this daemon within readyTimeout, and it was still running. */
  timedOut: boolean;
  /** Something else greeted on the address. */
  foreign: boolean;
  /** The log file's size when the start began: its lines after it are this start's. */
  logFrom: number;
}

/** How many of the daemon's log lines an error message quotes, and how long each may be. */
const LOG_TAIL_LINES = 5;
const LOG_TAIL_CHARS = 300;

/**
 * A line of the daemon's for a message: control characters (lib/core/control_chars.ts, and tabs)
 * stripped, as it ends up on a terminal, trimmed, at most LOG_TAIL_CHARS.
 */
function clip(line: string): string {
  // The shared strip, and tabs too: a quoted line stays one plain line.
  const text = stripControl(line).replace(/[\t\n]/g, "").trim();
  return text.length > LOG_TAIL_CHARS ? `${text.slice(0, LOG_TAIL_CHARS)}…` : text;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** The text of `path` from byte `from`, at most its last `max` bytes; "" when unreadable. */
async function readFrom(path: string, from: number, max: number): Promise<string> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path);
  } catch {
    return "";
  }
  try {
    const size = (await f.stat()).size;
    // A log rotated (shorter than at the start) is read from its beginning.
    const start = size < from ? 0 : from;
    const at = Math.max(start, size - max);
    await f.seek(at, Deno.SeekMode.Start);
    const buf = new Uint8Array(size - at);
    let n = 0;
    while (n < buf.length) {
      const got = await f.read(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    const text = new TextDecoder().decode(buf.subarray(0, n));
    // Cut mid-line when capped: drop the partial first line.
    return at > start ? text.slice(text.indexOf("\n") + 1) : text;
  } catch {
    return "";
  } finally {
    f.close();
  }
}
