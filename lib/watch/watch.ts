/**
 * Watches a tree and turns raw events into change sets for the push engine.
 *
 * Each directory gets its own non-recursive `Deno.watchFs` watch, from a walk
 * fanout does itself. Deno's recursive mode follows symbolic links: a link to
 * `/usr` inside the tree would put a watch on every directory of /usr, and a
 * link to `/` would try to watch the whole machine. The walk never follows
 * links and skips excluded directories (`.git`), and it is faster than the
 * recursive mode.
 *
 * The watches come from inotify itself, through FFI (lib/sys/inotify.ts), when
 * FFI is permitted: no worker isolate to carry, and a kernel queue overflow is
 * always reported. Otherwise they live in a worker (`_watch_worker.js`): Deno
 * keeps one watcher per runtime and checks every event against every watch
 * ever opened in it, closed ones included, so the watches added for new
 * directories would slow every later event down for the life of the process.
 * When they pile up, a fresh worker takes over with one watch list and the
 * old one is dropped.
 *
 * Events are never trusted alone: an overflow, an event that cannot be mapped,
 * or a storm (the kernel drops events silently when its queue overflows, and
 * Deno does not always say so) re-walks the tree and asks for a full push; the
 * engine's periodic reconcile catches the rest (Deno drops the events of a
 * symlink whose target is outside the tree: denoland/deno#27560).
 *
 * @module
 */

import workerSource from "./_watch_worker.js" with { type: "text" };
import type { Change } from "../version/mod.ts";
import { compileExcludes, type ExcludeMatcher, type Logger } from "../core/mod.ts";
import { InotifySource, openLibc, type RawEvent } from "../sys/mod.ts";
import type { Registry } from "../health/mod.ts";

/** Options of {@linkcode TreeWatcher}. */
export interface WatchOptions {
  /** Absolute path of the tree. */
  root: string;
  /** rsync-style patterns whose events are ignored (push.exclude). */
  excludes: string[];
  /** More events than this within one second is a storm (push.storm_events). */
  stormEvents: number;
  /** Receives mapped changes, in event order. */
  onChanges: (changes: Change[]) => void;
  /** Receives requests for a full push, with the reason. */
  onFull: (reason: string) => void;
  /**
   * Receives paths named like an rsync temp file that were written (a
   * directory one `deep`): never pushed for that, as they may be rsync's
   * own, but a real file may be so named (`.env.sample`), and a check of the
   * tree must look at it.
   */
  onTempNamed?: (changes: Change[]) => void;
  /**
   * Told at once when events may have been lost (a burst begins, the kernel
   * queue overflowed), before the re-walk and the `onFull` that follow: a
   * check of the tree must not take the changes reported meanwhile for all.
   */
  onLost?: () => void;
  log: Logger;
  registry?: Registry;
}

/** rsync's in-flight files: `.name.XXXXXX` temp files and `--delay-updates` dirs. */
const RSYNC_TEMP = /(^|\/)\.[^/]+\.[A-Za-z0-9]{6}$/;
const DELAY_DIR = /(^|\/)\.~tmp~(\/|$)|^\.fanout-tmp(\/|$)/;
/** How long a written file's push waits for its close event. */
const WRITE_GRACE_MS = 25;
/** Watches added for new directories (calls, paths) before a fresh worker takes over. */
const MAX_EXTRA_CALLS = 16;
const MAX_EXTRA_PATHS = 2000;

/** The first re-arm after a fallback waits this long; each failed one doubles it, up to a minute. */
const REARM_MIN_MS = 1_000;
const REARM_MAX_MS = 60_000;

/** Whether the watcher runs on events or fell back to periodic full pushes. */
export type WatchMode = "events" | "polling" | "stopped";

/** Which kernel interface the watches come through. */
export type WatchBackend = "inotify" | "watchFs";

/** Where watches come from: inotify directly, or Deno.watchFs in a worker. */
interface WatchSource {
  /** Watches `dirs` (non-recursively); resolves once the watches are in place. */
  watch(dirs: string[]): Promise<void>;
  /** Resolves once every event seen so far was delivered. */
  drain(): Promise<void>;
  /** True when a fresh source should take over (watches piled up). */
  readonly crowded: boolean;
  terminate(): Promise<void>;
}

let workerUrl: string | null = null;

/** One watch worker: opens watches on request, forwards their events. */
class WatchWorker implements WatchSource {
  #worker: Worker;
  #waiting = new Map<number, (err: Error | null) => void>();
  #next = 0;
  /** watchFs calls after the first, and the paths they added. */
  extraCalls = -1;
  extraPaths = 0;

  constructor(onEvents: (events: RawEvent[]) => void, onError: (message: string) => void) {
    workerUrl ??= URL.createObjectURL(new Blob([workerSource], { type: "text/javascript" }));
    this.#worker = new Worker(workerUrl, { type: "module" });
    this.#worker.onmessage = (m: MessageEvent) => {
      const msg = m.data;
      if (msg.type === "events") onEvents(msg.events);
      else if (msg.type === "ready") this.#waiting.get(msg.id)?.(null);
      else if (msg.type === "failed") {
        this.#waiting.get(msg.id)?.(new Error(`${msg.name}: ${msg.message}`));
      } else if (msg.type === "error") onError(msg.message);
      if (msg.id !== undefined) this.#waiting.delete(msg.id);
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      onError(e.message);
    };
  }

  /** Watches `dirs` (non-recursively); resolves once the watches are in place. */
  watch(dirs: string[]): Promise<void> {
    const id = this.#next++;
    this.extraCalls++;
    if (this.extraCalls > 0) this.extraPaths += dirs.length;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, (err) => err ? reject(err) : resolve());
      this.#worker.postMessage({ type: "watch", id, dirs });
    });
  }

  /** Closes the watches and resolves once every event seen so far was delivered. */
  drain(): Promise<void> {
    const id = this.#next++;
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 2000);
      this.#waiting.set(id, () => {
        clearTimeout(t);
        resolve();
      });
      this.#worker.postMessage({ type: "close", id });
    });
  }

  get crowded(): boolean {
    return this.extraCalls > MAX_EXTRA_CALLS || this.extraPaths > MAX_EXTRA_PATHS;
  }

  terminate(): Promise<void> {
    for (const done of this.#waiting.values()) done(new Error("watcher stopped"));
    this.#waiting.clear();
    this.#worker.terminate();
    return Promise.resolve();
  }
}

/**
 * Where a watcher stands: on events, polling (the engine pushes the whole
 * tree periodically) while a re-arm with backoff tries to watch again, or
 * stopped.
 */
type WatchState =
  | { mode: "stopped" }
  | { mode: "events" }
  | {
    mode: "polling";
    /** Why it fell back, or why the last re-arm failed. */
    error: string;
    /** Re-arms failed since the fallback. */
    failures: number;
    /** The next re-arm, while one is scheduled. */
    rearm: ReturnType<typeof setTimeout> | undefined;
  };

/** Changes mapped from events and not yet handed over. */
interface Batch {
  changes: Change[];
  /** Directories that appeared: watched before the changes go out. */
  newDirs: string[];
  /** Files with a create or write event and no close yet. */
  writing: Set<string>;
}

/** The hand-over of a {@linkcode Batch}. */
interface Flush {
  /** The scheduled hand-over, and the delay it was scheduled with. */
  timer: ReturnType<typeof setTimeout> | undefined;
  delay: number;
  /** Hand-overs that wait for new directories' watches, chained in order. */
  running: Promise<void> | null;
}

/** What a {@linkcode StormMeter} reports. */
interface StormEvents {
  /** A storm begins, at `eventsPerS` events in one second. */
  start(eventsPerS: number): void;
  /** A storm goes on: every 5 s of it, with the events counted so far. */
  ongoing(events: number): void;
  /** A storm is over (250 ms of quiet), with the events it had. */
  settled(events: number): void;
}

/**
 * Counts events per one-second window. Past `limit` in one, events may have
 * been dropped without a word: Deno hands them over through a 16-event
 * queue and drops what does not fit, and the kernel drops past its own
 * queue. A storm settles after 250 ms of quiet; one that never stops is
 * reported every 5 s, so the replicas keep converging.
 */
class StormMeter {
  #windowStart = 0;
  #windowCount = 0;
  #storm: { events: number; since: number } | null = null;
  #settle: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly limit: number, readonly on: StormEvents) {}

  /** True while a storm has not settled. */
  get active(): boolean {
    return this.#storm !== null;
  }

  /** Counts an event seen at `now` (performance.now()). */
  count(now: number): void {
    if (now - this.#windowStart > 1000) {
      this.#windowStart = now;
      this.#windowCount = 0;
    }
    this.#windowCount++;
    if (!this.#storm && this.#windowCount > this.limit) {
      this.#storm = { events: this.#windowCount, since: now };
      this.on.start(this.#windowCount);
    }
    const storm = this.#storm;
    if (!storm) return;
    storm.events++;
    clearTimeout(this.#settle);
    if (now - storm.since > 5000) {
      storm.since = now;
      this.on.ongoing(storm.events);
    }
    this.#settle = setTimeout(() => {
      this.#storm = null;
      this.on.settled(storm.events);
    }, 250);
  }

  stop(): void {
    clearTimeout(this.#settle);
  }
}

/**
 * Watches `root` until closed.
 *
 * @example
 * ```ts
 * const w = new TreeWatcher({ root, excludes: [".git"], stormEvents: 5000,
 *   onChanges: (c) => engine.notify(c), onFull: (why) => engine.requestFull(why), log });
 * await w.start();
 * // …
 * await w.close();
 * ```
 */
export class TreeWatcher {
  #o: WatchOptions;
  #root: string;
  #exclude: ExcludeMatcher;
  #state: WatchState = { mode: "stopped" };
  #closed = false;
  #worker: WatchSource | null = null;
  #backend: WatchBackend | null = null;
  #dirs = new Set<string>();
  /** Sources being stopped (their epoll loops end asynchronously). */
  #stopping = new Set<Promise<void>>();
  #rebuilding: Promise<void> | null = null;
  #setupMs = 0;
  #batch: Batch = { changes: [], newDirs: [], writing: new Set() };
  #flush: Flush = { timer: undefined, delay: 0, running: null };
  #storm: StormMeter;
  #m;

  constructor(opts: WatchOptions) {
    this.#o = opts;
    this.#root = opts.root;
    this.#exclude = compileExcludes(opts.excludes);
    const r = opts.registry;
    this.#m = {
      events: r?.counter("fanout_watch_events_total", "Filesystem events received."),
      overflows: r?.counter(
        "fanout_watch_overflows_total",
        "Overflows, storms and unmappable events that turned into full pushes.",
      ),
      storms: r?.counter("fanout_watch_storms_total", "Event storms detected."),
    };
    r?.gauge("fanout_watch_dirs", "Directories watched.", () => [[{}, this.#dirs.size]]);
    this.#storm = new StormMeter(opts.stormEvents, {
      start: (eventsPerS) => {
        this.#o.onLost?.();
        this.#m.storms?.inc();
        this.#o.log.info(
          "event burst: some events may be lost; re-walk and whole push once quiet",
          {
            events_per_s: eventsPerS,
          },
        );
      },
      // Mapping goes on; the tree is re-walked (new directories whose events
      // were lost get watched) and pushed whole.
      ongoing: (events) => this.#rebuild(`event burst (${events} events so far)`),
      settled: (events) => {
        this.#m.overflows?.inc();
        this.#rebuild(`event burst (${events} events)`);
      },
    });
  }

  /** events (normal), polling (no watcher: the engine pushes periodically) or stopped. */
  get mode(): WatchMode {
    return this.#state.mode;
  }

  /** inotify (through FFI) or watchFs (Deno's, in a worker); null before start. */
  get backend(): WatchBackend | null {
    return this.#backend;
  }

  /** Why the watcher polls (null while it runs on events). */
  get lastError(): string | null {
    return this.#state.mode === "polling" ? this.#state.error : null;
  }

  /** How long setting up the watches took (ms). */
  get setupMs(): number {
    return this.#setupMs;
  }

  /** Directories watched. */
  get dirs(): number {
    return this.#dirs.size;
  }

  /**
   * Walks the tree and watches every directory. Never throws for a watch
   * limit: it logs one clear message with the sysctl to raise and returns in
   * `polling` mode, where the caller falls back to periodic full pushes.
   */
  async start(): Promise<void> {
    const t0 = performance.now();
    try {
      const { worker, dirs } = await this.#watchTree();
      this.#worker = worker;
      this.#dirs = new Set(dirs);
      this.#state = { mode: "events" };
    } catch (e) {
      this.#fallBack(e as Error);
    }
    this.#setupMs = performance.now() - t0;
  }

  /** Stops watching. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#state.mode === "polling") clearTimeout(this.#state.rearm);
    this.#storm.stop();
    clearTimeout(this.#flush.timer);
    await this.#rebuilding;
    await this.#flush.running;
    this.#stop(this.#worker);
    this.#worker = null;
    await Promise.all(this.#stopping);
    this.#state = { mode: "stopped" };
  }

  /**
   * Walks the tree from its canonical root (events carry canonical paths, so
   * they map) and watches every directory found.
   */
  async #watchTree(): Promise<{ worker: WatchSource; dirs: string[] }> {
    this.#root = await Deno.realPath(this.#o.root);
    const dirs = await walkDirs(this.#root, (rel) => this.#skipDir(rel));
    return { worker: await this.#spawn(dirs), dirs };
  }

  /** A new source watching `dirs`, once its watches are in place. */
  async #spawn(dirs: string[]): Promise<WatchSource> {
    const onEvents = (events: RawEvent[]) => {
      if (this.#worker === w || this.#rebuilding) { for (const e of events) this.#handle(e); }
    };
    const onError = (message: string) => {
      if (this.#worker === w && !this.#closed) this.#fallBack(new Error(message));
    };
    const libc = openLibc();
    const w: WatchSource = typeof libc === "string"
      ? new WatchWorker(onEvents, onError)
      : new InotifySource(libc, onEvents, onError);
    this.#backend = typeof libc === "string" ? "watchFs" : "inotify";
    try {
      await w.watch(dirs);
    } catch (e) {
      this.#stop(w);
      throw e;
    }
    return w;
  }

  /** Terminates a source; close() waits for every one stopped. */
  #stop(w: WatchSource | null): void {
    if (!w) return;
    const p = w.terminate().finally(() => this.#stopping.delete(p));
    this.#stopping.add(p);
  }

  #skipDir(rel: string): boolean {
    return DELAY_DIR.test(rel) || this.#exclude.excluded(rel);
  }

  #fallBack(e: Error): void {
    const msg = e.message ?? String(e);
    this.#state = { mode: "polling", error: msg, failures: 0, rearm: undefined };
    this.#scheduleRearm();
    if (/no space left|ENOSPC|too many open files|EMFILE|limit/i.test(msg)) {
      this.#o.log.error(
        "out of inotify watches: raise the limit with sysctl -w fs.inotify.max_user_watches=1048576 " +
          "(and fs.inotify.max_user_instances=1024); until then fanout pushes the whole tree periodically",
        { root: this.#root, error: msg },
      );
    } else {
      this.#o.log.error("cannot watch the tree; falling back to periodic full pushes", {
        root: this.#root,
        error: msg,
      });
    }
    this.#m.overflows?.inc();
    this.#stop(this.#worker);
    this.#worker = null;
    this.#o.onFull("watcher unavailable");
  }

  /**
   * Tries to watch again after a fallback, with a capped backoff: a directory
   * removed mid-walk or a raised watch limit must not leave the watcher
   * polling until a restart.
   */
  #scheduleRearm(): void {
    const st = this.#state;
    if (this.#closed || st.mode !== "polling" || st.rearm !== undefined) return;
    const delay = Math.min(REARM_MAX_MS, REARM_MIN_MS * 2 ** st.failures);
    st.rearm = setTimeout(() => {
      st.rearm = undefined;
      this.#rearm();
    }, delay);
  }

  async #rearm(): Promise<void> {
    const st = this.#state;
    if (this.#closed || st.mode !== "polling") return;
    try {
      const { worker, dirs } = await this.#watchTree();
      if (this.#closed) return this.#stop(worker);
      this.#worker = worker;
      this.#dirs = new Set(dirs);
      this.#state = { mode: "events" };
      this.#o.log.info("watching the tree again", {
        dirs: dirs.length,
        after_failures: st.failures,
      });
      // Whatever changed while polling goes with one whole push.
      this.#o.onFull("watcher back");
    } catch (e) {
      st.failures++;
      st.error = (e as Error).message ?? String(e);
      this.#o.log.debug("watcher still unavailable", { error: st.error });
      this.#scheduleRearm();
    }
  }

  #handle([evKind, paths, flag]: RawEvent): void {
    this.#m.events?.inc();
    if (flag === "rescan") {
      this.#o.onLost?.();
      this.#m.overflows?.inc();
      this.#o.log.warn(
        "watcher asked for a rescan (kernel queue overflow?): re-walk and full push",
        {},
      );
      this.#rebuild("watcher rescan");
      return;
    }
    const batch = this.#batch;
    // Deno reports a file's close-after-write as "access": the writer is done.
    if (evKind === "access") {
      for (const abs of paths) batch.writing.delete(abs);
      if (batch.writing.size === 0 && batch.changes.length) this.#scheduleFlush(0);
      return;
    }
    this.#storm.count(performance.now());
    for (const abs of paths) {
      const rel = this.#relative(abs);
      if (rel === undefined) continue; // Deno maps some symlink events outside the tree
      if (rel === "" || DELAY_DIR.test(rel) || this.#exclude.excluded(rel)) continue;
      if (RSYNC_TEMP.test(rel)) {
        // Named like an rsync temp file: writing it is taken for no change.
        // But it was pushed if it is a real file (.env.sample), or if a push
        // walked its directory while another rsync was writing it, so its
        // going away is one (the next push deletes the copy downstream).
        const st = evKind === "remove" ? null : lstatSync(abs);
        const gone = evKind === "remove" || (evKind === "rename" && st === null);
        if (gone) batch.changes.push({ path: rel, deep: false, gone: true });
        else if (st !== null) this.#o.onTempNamed?.([{ path: rel, deep: st.isDirectory }]);
        continue;
      }
      const kind = evKind === "modify" ? "modify" : evKind === "remove" ? "remove" : "other";
      const st = kind === "remove" ? null : lstatSync(abs);
      if (st?.isDirectory && !this.#dirs.has(abs)) batch.newDirs.push(abs);
      if (kind === "remove") this.#forget(abs);
      if (st?.isFile && evKind !== "rename") batch.writing.add(abs);
      // Only a directory that appeared (created, renamed in) or a path that
      // is gone (maybe a whole directory) needs everything below it looked
      // at; a modified directory is only its own attributes, a file is itself.
      batch.changes.push({
        path: rel,
        deep: st === null || (st.isDirectory && kind !== "modify"),
        gone: st === null,
        created: st !== null && (evKind === "create" || evKind === "rename"),
      });
    }
    // A file being written is pushed once its writer closes it (one push,
    // not one per write), or after a short grace if no close comes (chmod,
    // a writer that keeps the file open).
    if (batch.changes.length) this.#scheduleFlush(batch.writing.size ? WRITE_GRACE_MS : 0);
  }

  #scheduleFlush(ms: number): void {
    const f = this.#flush;
    if (f.timer !== undefined) {
      if (ms > 0 || f.delay === 0) return;
      clearTimeout(f.timer);
    }
    f.delay = ms;
    f.timer = setTimeout(() => this.#handOver(), ms);
  }

  /**
   * Hands the buffered changes over, after watching any new directories:
   * the push that copies a new directory whole must start after its watch is
   * in place, or a file created in between would be missed.
   */
  #handOver(): void {
    this.#flush.timer = undefined;
    const { changes, newDirs: dirs } = this.#batch;
    this.#batch = { changes: [], newDirs: [], writing: new Set() };
    if (this.#o.log.enabled("debug")) {
      this.#o.log.debug("changes", {
        n: changes.length,
        new_dirs: dirs.length,
        paths: changes.slice(0, 8).map((c) => c.path + (c.deep ? "/**" : "")).join(" "),
      });
    }
    if (dirs.length === 0) {
      if (changes.length) this.#o.onChanges(changes);
      return;
    }
    const prev = this.#flush.running ?? Promise.resolve();
    this.#flush.running = prev.then(async () => {
      try {
        await this.#addDirs(dirs);
      } finally {
        // Whatever happened to the watches, the changes go out.
        if (!this.#closed) this.#o.onChanges(changes);
      }
    }).catch((e) => this.#o.log.error("watching new directories failed", { error: e }));
  }

  /** Watches new directories (and any below them) with one more watch. */
  async #addDirs(roots: string[]): Promise<void> {
    await this.#rebuilding;
    const worker = this.#worker;
    if (this.#state.mode !== "events" || !worker) return;
    const dirs: string[] = [];
    for (const r of roots) {
      let found: string[];
      try {
        found = walkDirsSync(r, (rel) => this.#skipDir(rel), this.#root);
      } catch {
        continue; // gone already (moved or removed): its events follow
      }
      for (const d of found) if (!this.#dirs.has(d)) dirs.push(d);
    }
    if (dirs.length === 0) return;
    try {
      await worker.watch(dirs);
      for (const d of dirs) this.#dirs.add(d);
    } catch (e) {
      if (/NotFound/.test((e as Error).message)) return; // gone again: its removal event follows
      if (this.#worker === worker && !this.#closed) this.#fallBack(e as Error);
      return;
    }
    if (worker.crowded && !this.#storm.active) this.#rebuild(null, false);
  }

  #forget(abs: string): void {
    if (!this.#dirs.delete(abs)) return;
    const prefix = abs + "/";
    for (const d of this.#dirs) if (d.startsWith(prefix)) this.#dirs.delete(d);
  }

  /**
   * A fresh worker takes over with one watch list (re-walked when `walk`),
   * then the old one is dropped; they overlap for a moment, so nothing falls
   * in between. With a reason, asks for a full push once the new watches are
   * in place.
   */
  #rebuild(reason: string | null, walk = true): void {
    if (this.#rebuilding || this.#closed || this.#state.mode !== "events") {
      if (reason) this.#o.onFull(reason);
      return;
    }
    this.#rebuilding = (async () => {
      try {
        const dirs = walk
          ? await walkDirs(this.#root, (rel) => this.#skipDir(rel))
          : [...this.#dirs];
        if (this.#closed) return;
        const fresh = await this.#spawn(dirs);
        const old = this.#worker;
        this.#worker = fresh;
        this.#dirs = new Set(dirs);
        // Whatever the old worker saw before the new one was ready must
        // still arrive: it closes its watches and flushes, then goes.
        await old?.drain();
        this.#stop(old);
        this.#o.log.debug("watches moved to a fresh worker", { dirs: dirs.length, walked: walk });
      } catch (e) {
        if (!this.#closed) this.#fallBack(e as Error);
      } finally {
        this.#rebuilding = null;
        if (reason && !this.#closed) this.#o.onFull(reason);
      }
    })();
  }

  #relative(abs: string): string | undefined {
    if (abs === this.#root) return "";
    if (!abs.startsWith(this.#root + "/")) return undefined;
    return abs.slice(this.#root.length + 1);
  }
}

/**
 * Every directory at or below `start` (absolute paths), without following
 * symbolic links and without entering directories `skip` rejects (given the
 * path relative to `root`).
 */
function walkDirsSync(start: string, skip: (rel: string) => boolean, root = start): string[] {
  const dirs = [start];
  for (let i = 0; i < dirs.length; i++) {
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(dirs[i]);
    } catch (e) {
      if (i === 0) throw e;
      continue; // removed while walking: its removal event follows
    }
    for (const e of entries) {
      if (!e.isDirectory) continue; // symlinks report isSymlink, never isDirectory
      const abs = `${dirs[i]}/${e.name}`;
      if (!skip(abs.slice(root.length + 1))) dirs.push(abs);
    }
  }
  return dirs;
}

function lstatSync(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}

/**
 * Every directory of the tree, like {@linkcode walkDirsSync}, listed by
 * `find -type d` (which never follows links): a walk in JavaScript leaves
 * objects and strings for every entry behind as garbage; find leaves one
 * string.
 */
async function walkDirs(root: string, skip: (rel: string) => boolean): Promise<string[]> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("find", { args: [root, "-type", "d", "-print0"], stderr: "null" })
      .output();
  } catch {
    return walkDirsSync(root, skip);
  }
  const dirs = [root];
  for (const abs of new TextDecoder().decode(out.stdout).split("\0")) {
    if (abs.length > root.length && !skip(abs.slice(root.length + 1))) dirs.push(abs);
  }
  // find's exit code is non-zero when something vanished mid-walk; what it
  // listed is still right, and the removal events follow.
  if (dirs.length === 1) await Deno.stat(root);
  return dirs;
}
