/**
 * The proxy's backend pool: one explicit state machine per rsync server, fed
 * by active checks (the rsync greeting and module list, and the tree version
 * from the server's `/status`) and by passive marking (a failed connect), and
 * a round-robin pick over the backends in rotation that holds a client
 * address to its backend for the affinity window (affinity.ts).
 *
 * A backend's life:
 *
 * ```
 *   new ──first check ok──▶ up ──fall failed checks, or a failed connect──▶ down
 *    └──first check fails──▶ down ──rise passed checks──▶ up
 * ```
 *
 * An up backend is in rotation unless its tree version has lagged the newest
 * version among up backends for longer than `version_grace`, so a client that
 * got version N never gets N-1 on its next run.
 *
 * A server's claim is hostile input: "newest" is never more than the reference
 * version (what the primary's `/status` announces; without it, the lower
 * median of the backends' versions), and a backend claiming more than
 * `version_max_lead` past the reference, or failing the `verifyVersion` hook,
 * is distrusted: out of rotation, its version counted nowhere. One forged
 * marker then cannot take the others out of rotation.
 *
 * @module
 */

import { MAX_STATUS_BODY, readLimited } from "../http/mod.ts";
import { formatDuration, formatHostPort, type HostPort, type Logger } from "../core/mod.ts";
import type { BackendSpec } from "../config/mod.ts";
import { probeRsyncd, PROXY_V1_UNKNOWN } from "../rsync/mod.ts";
import { parseMarker, type VersionMarker } from "../version/mod.ts";
import { AffinityTable } from "./affinity.ts";

/** up or down; `new` until the first check answers. */
export type BackendState = "new" | "up" | "down";

/** The outcome of the last active check. */
export interface CheckResult {
  /** When it finished (ms since epoch). */
  at: number;
  ok: boolean;
  /** Round trip of the rsync probe. */
  ms: number;
  error: string | null;
}

/**
 * One backend: its state machine and its counters. The proxy's hot path
 * updates the counters directly (plain fields: no allocation per chunk).
 */
export class Backend {
  readonly name: string;
  addr: HostPort;
  health: HostPort | null;
  state: BackendState = "new";
  /** When `state` last changed (ms since epoch). */
  since: number;
  /** Why it last went down. */
  reason: string | null = null;
  /** Consecutive passed checks while down; consecutive failed ones while up. */
  streak = 0;
  lastCheck: CheckResult | null = null;
  /**
   * The tree version its `/status` last reported: a marker, null (a tree
   * without one), or undefined (never read: not a fanout server, or unreachable).
   */
  version: VersionMarker | null | undefined = undefined;
  versionError: string | null = null;
  /** Version reads started, and the number of the newest one taken: an older read never overwrites a newer. */
  versionReads = { started: 0, taken: 0 };
  /** Since when it has been behind the newest version (ms), or null. */
  behindSince: number | null = null;
  /** The same moment on the monotonic clock, which times the grace period. */
  behindMono: number | null = null;
  /** Behind for longer than the grace period: out of rotation. */
  lagging = false;
  /** Why its version is not believed (out of rotation, counted nowhere), or null. */
  distrusted: string | null = null;
  /** What the `verifyVersion` hook said about the last version read, or null. */
  versionProblem: string | null = null;
  inRotation = false;
  active = 0;
  connections = 0;
  /** Bytes copied from clients to this backend. */
  bytesToBackend = 0;
  /** Bytes copied from this backend to clients. */
  bytesToClient = 0;
  checkFailures = 0;
  connectFailures = 0;

  constructor(spec: BackendSpec, now: number) {
    this.name = spec.name;
    this.addr = spec.addr;
    this.health = spec.health;
    this.since = now;
  }

  /** The version's seq; -1 for a tree without a marker, undefined when unknown. */
  get seq(): number | undefined {
    return this.version === undefined ? undefined : this.version?.seq ?? -1;
  }
}

/** The seq no backend may claim to be far past, and where it comes from. */
export interface Reference {
  seq: number;
  /** `primary rsync1` or `median of the backends`. */
  from: string;
  /** From the primary's `/status` (else a median: the primary's version is unknown). */
  primary: boolean;
}

/** Options of {@linkcode BackendPool}. */
export interface PoolOptions {
  /** Failed checks that take an up backend down. */
  fall: number;
  /** Passed checks that bring a down backend up. */
  rise: number;
  /** How long a backend may lag the newest version before leaving rotation (ms). */
  versionGrace: number;
  /**
   * How long a client address's connections go to the backend its first one
   * went to (ms; see affinity.ts); 0 or unset: plain round robin.
   */
  affinity?: number;
  /** Deadline of each probe and status read (ms). */
  checkTimeout: number;
  /** The module that must be listed by a healthy daemon. */
  module: string;
  /** Backends speak the PROXY protocol: probes send a header too. */
  proxyProtocol: boolean;
  log: Logger;
  /** The wall clock (ms since the epoch), for times shown (tests). */
  now?: () => number;
  /**
   * The monotonic clock (ms) the version grace is timed on: a wall clock
   * stepped back would keep a lagging backend in rotation for the step.
   * Default `performance.now`.
   */
  monotonic?: () => number;
  /** The active check (tests may replace it); default: rsync probe and `/status`. */
  check?: (b: Backend) => Promise<{ ok: boolean; ms: number; error: string | null }>;
  /** Reads a backend's version; default: its `/status`. */
  readVersion?: (b: Backend) => Promise<VersionMarker | null>;
  /**
   * The server whose version is the fleet's (the primary); its `/status` is
   * read every round, whether it is a backend or not. Without it the
   * reference is the lower median of the backends' versions.
   */
  reference?: BackendSpec;
  /** How far past the reference's seq a backend may claim to be before it is distrusted. */
  maxLead?: number;
  /**
   * Checks a version read from a server (a signature, later); resolves with
   * why it is not to be believed, or null. Default: every version passes.
   */
  verifyVersion?: (b: Backend, v: VersionMarker) => Promise<string | null>;
}

/**
 * The backends, their states, and the rotation.
 *
 * @example
 * ```ts
 * const pool = new BackendPool(backendSpecs(fleet), { fall: 2, rise: 2, versionGrace: 10_000,
 *   checkTimeout: 1000, module: "plugins", proxyProtocol: false, log });
 * await pool.checkAll();
 * const b = pool.pick(); // the next backend in rotation, or null
 * const c = pool.pick(new Set(), "192.0.2.7"); // that client's backend while its window lasts
 * ```
 */
export class BackendPool {
  #o: PoolOptions;
  #now: () => number;
  #mono: () => number;
  #backends: Backend[];
  #rotation: Backend[] = [];
  #next = 0;
  #degraded: string | null = null;
  #newest: number | undefined = undefined;
  #highest: { seq: number; on: string } | null = null;
  /** The reference server when it is not a backend (else the backend of that name). */
  #refOnly: Backend | null = null;
  /** The reference's last verified seq, kept through a failed read (a blip must not unbound). */
  #refSeq: number | undefined = undefined;
  #reference: Reference | null = null;
  #affinity: AffinityTable<Backend>;

  constructor(specs: BackendSpec[], opts: PoolOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#mono = opts.monotonic ?? (() => performance.now());
    this.#affinity = new AffinityTable({ window: opts.affinity ?? 0, now: this.#now });
    this.#backends = specs.map((s) => new Backend(s, this.#now()));
    this.#setReference();
  }

  /** Every backend, in rotation order. */
  get backends(): readonly Backend[] {
    return this.#backends;
  }
  /** The backends clients are sent to now. */
  get rotation(): readonly Backend[] {
    return this.#rotation;
  }
  /** Why the rotation is not what it should be (stale versions served), or null. */
  get degraded(): string | null {
    return this.#degraded;
  }
  /** The newest seq among up backends, when known. */
  get newestSeq(): number | undefined {
    return this.#newest;
  }
  /**
   * The version every backend in rotation holds: the oldest among them
   * (backends whose version is unknown left out), null when none is known.
   * A client sent through the proxy gets at least this one, whichever
   * backend it lands on, so it is what the proxy announces on `/version`.
   */
  get served(): VersionMarker | null {
    let oldest: VersionMarker | null = null;
    for (const b of this.#rotation) {
      if (b.version && (!oldest || b.version.seq < oldest.seq)) oldest = b.version;
    }
    return oldest;
  }
  /**
   * Every server whose version the pool reads: the backends, and the
   * reference when it is not one of them.
   */
  get versionSources(): readonly Backend[] {
    return this.#refOnly ? [...this.#backends, this.#refOnly] : this.#backends;
  }

  /**
   * The seq no backend may claim to be past (by more than `maxLead`), and
   * where it comes from: `primary rsync1` or `median of the backends`.
   */
  get reference(): Reference | null {
    return this.#reference;
  }

  /** The affinity window (ms; 0: off) and the client addresses it holds to a backend now. */
  get affinity(): { window: number; clients: number } {
    return { window: this.#affinity.window, clients: this.#affinity.size };
  }

  /**
   * The backend for a connection from `client` (its address): the one its
   * window holds it to while that one is in rotation and not in `exclude`
   * (already tried for this connection); else the next in rotation after
   * the last one picked, which then starts the client's window. Null when
   * none is left.
   */
  pick(exclude?: ReadonlySet<Backend>, client?: string): Backend | null {
    if (client === undefined) return this.#nextInRotation(exclude);
    const held = this.#affinity.lookup(
      client,
      (b) => !exclude?.has(b) && this.#rotation.includes(b),
    );
    if (held) return held;
    const b = this.#nextInRotation(exclude);
    if (b) this.#affinity.remember(client, b);
    return b;
  }

  /** Round robin: the next backend in rotation not in `exclude`. */
  #nextInRotation(exclude?: ReadonlySet<Backend>): Backend | null {
    const r = this.#rotation;
    for (let i = 0; i < r.length; i++) {
      const b = r[(this.#next + i) % r.length];
      if (exclude?.has(b)) continue;
      this.#next = (this.#next + i + 1) % r.length;
      return b;
    }
    return null;
  }

  /**
   * Reads the version of the server named `name` again (one of
   * {@linkcode versionSources}: it announced a new one) and updates the
   * rotation, without running a health check. Never throws.
   */
  async recheckVersion(name: string): Promise<void> {
    const b = this.versionSources.find((x) => x.name === name);
    if (!b) return;
    await this.#readVersion(b);
    this.#recompute();
  }

  /** Passive marking: a connect to `b` failed, so it is down until `rise` checks pass. */
  markFailed(b: Backend, why: string): void {
    b.connectFailures++;
    if (b.state !== "down") this.#set(b, "down", `connect failed: ${why}`);
    b.streak = 0;
    this.#recompute();
  }

  /**
   * Runs one round of active checks on every backend at once, then updates
   * states and the rotation. Never throws.
   */
  async checkAll(): Promise<void> {
    await Promise.all([
      ...this.#backends.map((b) => this.#checkOne(b)),
      this.#refOnly ? this.#readVersion(this.#refOnly) : null,
    ]);
    this.#recompute();
  }

  /**
   * Replaces the backend list (SIGHUP). Backends that keep their name and
   * address keep their state and counters; new ones start `new` and join
   * after their first check; removed ones leave the rotation (their open
   * connections run on).
   */
  update(specs: BackendSpec[]): { added: string[]; removed: string[] } {
    const old = new Map(this.#backends.map((b) => [b.name, b]));
    const added: string[] = [];
    this.#backends = specs.map((s) => {
      const b = old.get(s.name);
      if (b && formatHostPort(b.addr) === formatHostPort(s.addr)) {
        b.health = s.health;
        old.delete(s.name);
        return b;
      }
      added.push(s.name);
      return new Backend(s, this.#now());
    });
    this.#setReference();
    this.#recompute();
    return { added, removed: [...old.keys()] };
  }

  /** Why no backend is in rotation, for the client's `@ERROR` line and `/healthz`. */
  whyNone(): string {
    if (this.#backends.length === 0) return "no backends configured";
    return this.#backends.map((b) => {
      if (b.state === "new") return `${b.name}: not checked yet`;
      if (b.state === "down") return `${b.name}: ${b.reason ?? "down"}`;
      if (b.distrusted) return `${b.name}: version distrusted (${b.distrusted})`;
      return `${b.name}: up`;
    }).join("; ");
  }

  async #checkOne(b: Backend): Promise<void> {
    const [r] = await Promise.all([
      (this.#o.check ?? ((b) => this.#probe(b)))(b),
      this.#readVersion(b),
    ]);
    const now = this.#now();
    b.lastCheck = { at: now, ok: r.ok, ms: Math.round(r.ms * 10) / 10, error: r.error };
    if (!r.ok) b.checkFailures++;
    if (b.state === "new") {
      this.#set(b, r.ok ? "up" : "down", r.error);
      b.streak = 0;
    } else if (b.state === "up") {
      b.streak = r.ok ? 0 : b.streak + 1;
      if (b.streak >= this.#o.fall) {
        this.#set(b, "down", `${b.streak} failed checks: ${r.error}`);
        b.streak = 0;
      }
    } else {
      b.streak = r.ok ? b.streak + 1 : 0;
      if (!r.ok) b.reason = r.error;
      if (b.streak >= this.#o.rise) {
        this.#set(b, "up", null);
        b.streak = 0;
      }
    }
  }

  async #probe(b: Backend): Promise<{ ok: boolean; ms: number; error: string | null }> {
    const r = await probeRsyncd(b.addr, this.#o.checkTimeout, {
      list: true,
      proxyHeader: this.#o.proxyProtocol ? PROXY_V1_UNKNOWN : undefined,
    });
    if (r.ok && !r.modules!.includes(this.#o.module)) {
      return { ok: false, ms: r.ms, error: `module "${this.#o.module}" is not listed` };
    }
    return { ok: r.ok, ms: r.ms, error: r.ok ? null : r.error ?? "failed" };
  }

  /**
   * Reads the version; on failure keeps the last one known (a blip must not
   * evict). Reads of one backend may overlap (a check round and a notice):
   * one started earlier never overwrites a later one's answer.
   */
  async #readVersion(b: Backend): Promise<void> {
    if (!b.health && !this.#o.readVersion) return;
    const mine = ++b.versionReads.started;
    try {
      const read = this.#o.readVersion ??
        ((b: Backend) => readStatusVersion(b, this.#o.checkTimeout));
      const v = await read(b);
      const problem = v && this.#o.verifyVersion ? await this.#o.verifyVersion(b, v) : null;
      if (mine < b.versionReads.taken) return;
      b.versionReads.taken = mine;
      b.versionProblem = problem;
      b.version = v;
      b.versionError = null;
    } catch (e) {
      if (mine < b.versionReads.taken) return;
      b.versionError = (e as Error).message;
    }
  }

  /** The reference server: the backend of that name, or one read on the side. */
  #setReference(): void {
    const ref = this.#o.reference;
    this.#refOnly = ref && !this.#backends.some((b) => b.name === ref.name)
      ? (this.#refOnly?.name === ref.name ? this.#refOnly : new Backend(ref, this.#now()))
      : null;
  }

  /** The reference seq now: the primary's (last verified) or the lower median of up backends. */
  #referenceNow(up: Backend[]): Reference | null {
    const name = this.#o.reference?.name;
    const ref = this.#refOnly ?? this.#backends.find((b) => b.name === name);
    if (ref && ref.seq !== undefined && !ref.versionProblem) this.#refSeq = ref.seq;
    if (this.#refSeq !== undefined) {
      return { seq: this.#refSeq, from: `primary ${name}`, primary: true };
    }
    const seqs = up.filter((b) => b.seq !== undefined && !b.versionProblem).map((b) => b.seq!);
    if (!seqs.length) return null;
    seqs.sort((a, b) => a - b);
    const seq = seqs[Math.floor((seqs.length - 1) / 2)];
    return { seq, from: "median of the backends", primary: false };
  }

  /** Why `b`'s version is not to be believed, or null. */
  #distrust(b: Backend, ref: Reference | null): string | null {
    if (b.versionProblem) return b.versionProblem;
    const lead = this.#o.maxLead ?? Infinity;
    if (ref && b.seq !== undefined && b.seq > ref.seq + lead) {
      return `claims seq ${b.seq}, more than ${lead} past seq ${ref.seq} (${ref.from})`;
    }
    return null;
  }

  #set(b: Backend, state: BackendState, reason: string | null): void {
    const from = b.state;
    if (from === state) return;
    b.state = state;
    b.since = this.#now();
    b.reason = state === "down" ? reason : null;
    const fields = { backend: b.name, addr: formatHostPort(b.addr), reason: b.reason ?? undefined };
    if (state === "up") this.#o.log.info("backend up", fields);
    else if (from === "new") this.#o.log.warn("backend down at start", fields);
    else this.#o.log.warn("backend down", fields);
  }

  /** Trust, version lag, then the rotation. */
  #recompute(): void {
    const now = this.#now();
    const mono = this.#mono();
    const up = this.#backends.filter((b) => b.state === "up");
    const ref = this.#reference = this.#referenceNow(up);
    for (const b of this.#backends) this.#setDistrust(b, this.#distrust(b, ref));
    const trusted = up.filter((b) => !b.distrusted);
    const known = trusted.filter((b) => b.seq !== undefined);
    // No server's claim outranks the primary's: one ahead of it (a publish
    // read mid-way) makes no other lag. (A median is no cap: the newest
    // version reaches the backends one by one.)
    const highest = known.length ? Math.max(...known.map((b) => b.seq!)) : undefined;
    const newest = highest !== undefined && ref?.primary ? Math.min(highest, ref.seq) : highest;
    this.#newest = newest;
    for (const b of this.#backends) {
      if (
        !b.distrusted && b.seq !== undefined && b.seq >= 0 &&
        (!this.#highest || b.seq > this.#highest.seq)
      ) {
        this.#highest = { seq: b.seq, on: b.name };
      }
      // Unknown counts as behind once some backend's version is known: it may be old.
      const behind = b.state === "up" && !b.distrusted && newest !== undefined &&
        (b.seq === undefined || b.seq < newest);
      if (!behind) b.behindSince = b.behindMono = null;
      else if (b.behindMono === null) [b.behindSince, b.behindMono] = [now, mono];
      const lagging = behind && mono - b.behindMono! >= this.#o.versionGrace;
      if (lagging !== b.lagging) {
        const fields = { backend: b.name, seq: b.seq ?? "unknown", newest };
        if (lagging) {
          this.#o.log.warn("backend lags; out of rotation", {
            ...fields,
            for: formatDuration(mono - b.behindMono!),
          });
        } else if (b.state === "up") {
          this.#o.log.info("backend caught up; back in rotation", fields);
        }
        b.lagging = lagging;
      }
    }
    let rotation = trusted.filter((b) => !b.lagging);
    this.#degraded = null;
    if (rotation.length === 0 && trusted.length > 0) {
      // Never refuse everyone over versions: serve the newest that is up.
      const best = Math.max(...trusted.map((b) => b.seq ?? -2));
      rotation = trusted.filter((b) => (b.seq ?? -2) === best);
      this.#degraded = `every healthy backend lags; serving the newest available (${
        rotation.map((b) => b.name).join(", ")
      })`;
    } else if (
      this.#highest && newest !== undefined && newest < this.#highest.seq && rotation.length
    ) {
      this.#degraded =
        `serving seq ${newest}: seq ${this.#highest.seq} was seen on ${this.#highest.on}, which is not up`;
    }
    for (const b of this.#backends) b.inRotation = false;
    for (const b of rotation) b.inRotation = true;
    this.#rotation = rotation;
    if (this.#next >= rotation.length) this.#next = 0;
  }

  #setDistrust(b: Backend, why: string | null): void {
    if (why === b.distrusted) return;
    if (why) {
      this.#o.log.warn("backend's version distrusted; out of rotation", { backend: b.name, why });
    } else if (b.distrusted) {
      this.#o.log.info("backend's version trusted again", { backend: b.name });
    }
    b.distrusted = why;
  }
}

/**
 * Reads `tree.version` from a fanout server's `GET /status`.
 *
 * @throws {Error} when the endpoint does not answer in time or is not a
 * fanout server's.
 */
export async function readStatusVersion(
  b: Backend,
  timeoutMs: number,
): Promise<VersionMarker | null> {
  if (!b.health) throw new Error("no health endpoint");
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(`http://${formatHostPort(b.health)}/status`, { signal: ac.signal });
    const body = await readLimited(res, MAX_STATUS_BODY);
    if (body === null) throw new Error(`/status is larger than ${MAX_STATUS_BODY} bytes`);
    if (!res.ok) throw new Error(`/status answered ${res.status}`);
    const tree = (JSON.parse(body) as { tree?: { version?: unknown } }).tree;
    if (!tree || !("version" in tree)) throw new Error("/status has no tree.version");
    if (tree.version === null) return null;
    const v = parseMarker(JSON.stringify(tree.version));
    if (!v) throw new Error("/status has an invalid tree.version");
    return v;
  } catch (e) {
    if (ac.signal.aborted) throw new Error(`/status did not answer within ${timeoutMs}ms`);
    throw e;
  } finally {
    clearTimeout(t);
  }
}
