/**
 * Every fleet-file key, declared once: what its value must be, its default,
 * the flag that sets it, and one line saying what it does. The schema
 * (_schema.ts), the defaults `parseFleet` fills in, the key flags of lib/cli
 * and the table in docs/configuration.md (`deno task docs`) all come from
 * {@linkcode FLEET}.
 *
 * @module
 */

import type { KeyPath } from "./paths.ts";
import type { Role } from "./options.ts";
import * as t from "./_key_types.ts";

export type { FlagReading, KeyType } from "./_key_types.ts";

/** The flag that sets a key, as declared beside it. */
export interface FlagDecl {
  /** The flag's name, without the dashes. */
  name: string;
  /** The value's name in the help when not the type's own (e.g. "PATH"). */
  placeholder?: string;
  /**
   * The roles the flag sets this key for. Implied for keys of a host's own
   * section (primary, replicas, publisher, proxy, client); "all" also
   * accepts the flag where no role is given (demo, fleet, render).
   */
  roles?: Role[] | "all";
}

/** How an absent key is filled. */
export type Fill = "required" | "default" | "optional";

/** One key's declaration: see {@linkcode key}. */
export interface Key<In, Out, F extends Fill> {
  readonly kind: "key";
  readonly type: t.KeyType<In, Out>;
  readonly fill: F;
  /** With fill "default": the value an absent key takes, written as in the file. */
  readonly default?: In;
  /**
   * With fill "optional": what an absent key means, for the docs, e.g.
   * "`<tree>-push`" when config.ts derives it from other keys, or "none".
   */
  readonly absent?: string;
  /** One line for the docs and the flag's help: what the key does. */
  readonly doc: string;
  readonly flag?: FlagDecl;
}

/** What {@linkcode key} takes besides the type. */
export type KeyOptions<In> =
  & { doc: string; flag?: FlagDecl }
  & ({ required: true } | { default: In } | { absent: string });

type FillOf<O> = O extends { required: true } ? "required"
  : O extends { default: unknown } ? "default"
  : "optional";

/**
 * Declares a key of type `type`: required, with a default (written as the
 * file writes it), or optional with words for what its absence means.
 *
 * @example
 * ```ts
 * const interval = key(t.duration, { default: "2s", doc: "active health checks this often" });
 * ```
 */
export function key<In, Out, const O extends KeyOptions<In>>(
  type: t.KeyType<In, Out>,
  opts: O,
): Key<In, Out, FillOf<O>> {
  const o = opts as { doc: string; flag?: FlagDecl; default?: In; absent?: string };
  const fill = "required" in opts ? "required" : "default" in opts ? "default" : "optional";
  return {
    kind: "key",
    type,
    fill: fill as FillOf<O>,
    default: o.default,
    absent: o.absent,
    doc: o.doc,
    flag: o.flag,
  };
}

/** What an absent section is: an error, an empty section (every default), or null. */
export type Absent = "required" | "defaults" | "null";

/** A mapping of keys: see {@linkcode section}. */
export interface Section<K extends Keys, A extends Absent> {
  readonly kind: "section";
  readonly keys: K;
  readonly absent: A;
}

/** A list of mappings of the same keys (the replicas); absent, it is empty. */
export interface List<K extends Keys> {
  readonly kind: "list";
  readonly keys: K;
}

/** Any declaration. */
export type Decl =
  | Key<unknown, unknown, Fill>
  | Section<Keys, Absent>
  | List<Keys>;

/** Declarations by key name. */
export interface Keys {
  readonly [name: string]: Decl;
}

/**
 * Declares a section of `keys`; `absent` says what a missing one is.
 *
 * @example
 * ```ts
 * const rsync = section({ path: key(t.str, { default: "rsync", doc: "the rsync binary" }) });
 * ```
 */
export function section<K extends Keys, A extends Absent = "defaults">(
  keys: K,
  absent?: A,
): Section<K, A> {
  return { kind: "section", keys, absent: (absent ?? "defaults") as A };
}

/**
 * Declares a list of mappings of `keys`.
 *
 * @example
 * ```ts
 * const replicas = list({ name: key(t.name, { required: true, doc: "its name" }) });
 * ```
 */
export function list<K extends Keys>(keys: K): List<K> {
  return { kind: "list", keys };
}

/** What a declaration parses to, defaults filled in. */
type ValueOf<D> = D extends Key<unknown, infer O, Fill> ? O
  : D extends Section<infer K, Absent> ? Parsed<K>
  : D extends List<infer K> ? Parsed<K>[]
  : never;

type MayBeAbsent<D> = D extends Key<unknown, unknown, "optional"> ? true
  : D extends Section<Keys, "null"> ? true
  : false;

/**
 * What a mapping of declarations parses to: required and defaulted keys are
 * always there, optional keys and "null" sections may be absent.
 */
export type Parsed<K extends Keys> = Flat<
  & { -readonly [k in keyof K as MayBeAbsent<K[k]> extends true ? never : k]: ValueOf<K[k]> }
  & { -readonly [k in keyof K as MayBeAbsent<K[k]> extends true ? k : never]?: ValueOf<K[k]> }
>;

type Flat<T> = { [k in keyof T]: T[k] };

// ---------------------------------------------------------------------------
// the keys

/** The ports of a server's daemons when its entry gives only an address. */
export const PORTS = { rsync: 873, health: 8873, proxyHealth: 8874 } as const;

const SERVERS: Role[] = ["primary", "replica"];

/** An rsync server's keys: the primary's and each replica's. */
function server(maxConnections: number) {
  return {
    name: key(t.name, { required: true, doc: "the host's name, unique in the fleet" }),
    address: key(t.ip, {
      absent: "the `listen` IP",
      doc: "the host's own IP: pushes leave from it, and its downstreams take writes from it",
      flag: { name: "address" },
    }),
    listen: key(t.hostPort, {
      absent: `\`<address>:${PORTS.rsync}\``,
      doc: "where its rsync daemon listens",
      flag: { name: "listen" },
    }),
    health: key(t.hostPort, {
      absent: `\`<address>:${PORTS.health}\``,
      doc: "where its health endpoint (/healthz, /status, /metrics) listens",
      flag: { name: "health" },
    }),
    proxy_listen: key(t.hostPort, {
      absent: "`<listen IP>:<listen port + 1>`",
      doc: "with `proxy.proxy_protocol`: the second, read-only daemon the proxy connects to",
    }),
    path: key(t.absPath, { required: true, doc: "the tree on this host", flag: { name: "path" } }),
    max_connections: key(t.int(1), {
      default: maxConnections,
      doc: "the read module's `max connections`",
    }),
  };
}

/**
 * The fleet file's keys, in the order the docs list them.
 *
 * @example
 * ```ts
 * FLEET.push.keys.debounce.default; // "0ms"
 * ```
 */
export const FLEET = {
  tree: key(t.name, { required: true, doc: "name of the tree; the read module is called this" }),
  binary: key(t.absPath, {
    default: "/usr/local/bin/fanout",
    doc: "where rendered units, cron lines and hooks find fanout",
  }),
  modules: section({
    read: key(t.name, {
      absent: "`<tree>`",
      doc: "the module clients read (open to all, read only)",
    }),
    write: key(t.name, {
      absent: "`<tree>-push`",
      doc: "the module pushes and publishes write to (auth + `hosts allow`)",
    }),
  }),
  auth: section({
    user: key(t.name, { default: "fanout", doc: "the rsync user of pushes and publishes" }),
    secrets_file: key(t.absPath, {
      default: "/etc/fanout/rsyncd.secrets",
      doc: "daemons: `user:password` lines, mode 600 or 400",
    }),
    password_file: key(t.absPath, {
      default: "/etc/fanout/push.password",
      doc: "pushers: the password alone, mode 600 or 400",
    }),
    report_token_file: key(t.absPath, {
      default: "/etc/fanout/report.token",
      doc: "primary: the report secret; client: its own token " +
        "(`fanout render report-token --name NAME`), mode 600 or 400",
    }),
  }),
  uid: key(t.rsyncdStr, {
    absent: "the owner of `path`",
    doc: "the daemon's user when fanout runs as root",
  }),
  gid: key(t.rsyncdStr, {
    absent: "the group of `path`",
    doc: "the daemon's group when fanout runs as root",
  }),
  state_dir: key(t.absPath, {
    default: "/var/lib/fanout",
    doc: "each host keeps pid, lock, logs and status under `<state_dir>/<name>`",
    flag: { name: "state-dir", roles: "all" },
  }),
  rsync: section({
    path: key(t.str, {
      default: "rsync",
      doc: "the rsync binary (3.1.3 or newer; tested with 3.2.7 and 3.5.0)",
    }),
    timeout: key(t.duration, { default: "300s", doc: "I/O timeout of daemons and transfers" }),
    connect_timeout: key(t.duration, { default: "10s", doc: "daemon connect timeout" }),
  }),
  primary: section(server(1000), "required"),
  publisher: section({
    name: key(t.name, { default: "publisher", doc: "the git server's name" }),
    address: key(t.ip, {
      required: true,
      doc: "the only address allowed to write to the primary",
      flag: { name: "address" },
    }),
    repo: key(t.absPath, {
      absent: "none (`--repo`)",
      doc: "the git repository (bare or not) to publish from",
      flag: { name: "repo", placeholder: "PATH" },
    }),
    ref: key(t.str, {
      default: "main",
      doc: "the branch, tag or commit to publish",
      flag: { name: "ref", placeholder: "REF" },
    }),
    staging: key(t.absPath, {
      absent: "`<state_dir>/<name>/staging`",
      doc: "a lasting export of the tree, so rsync sends only the delta",
    }),
    lock_timeout: key(t.duration, {
      default: "5m",
      doc: "how long a publish waits for another one to finish before exiting 5",
    }),
  }, "null"),
  replicas: list({
    ...server(200),
    upstream: key(t.name, {
      absent: "the primary",
      doc: "who pushes to it (a replica here makes a relay: tree fan-out)",
    }),
  }),
  proxy: section({
    name: key(t.name, { default: "proxy", doc: "the proxy's name" }),
    listen: key(t.hostPort, {
      default: `0.0.0.0:${PORTS.rsync}`,
      doc: "where clients connect",
      flag: { name: "listen" },
    }),
    address: key(t.ip, {
      absent: "the `listen` IP",
      doc: "the address clients dial (needed when `listen` is a wildcard); " +
        "with `proxy_protocol`, the IP servers take PROXY headers from",
    }),
    health: key(t.hostPort, {
      absent: `\`<listen IP>:${PORTS.proxyHealth}\``,
      doc: "where its health endpoint (/healthz, /status, /metrics) listens",
      flag: { name: "health" },
    }),
    backends: key(t.names, {
      absent: "every server",
      doc: "server names to balance over, in rotation order",
      flag: { name: "backends" },
    }),
    interval: key(t.duration, { default: "2s", doc: "active rsync health checks this often" }),
    check_timeout: key(t.duration, {
      default: "1s",
      doc: "a health check's time limit; it also bounds a client's connect to a backend",
    }),
    fall: key(t.int(1, 100), { default: 2, doc: "failed checks that mark a backend down" }),
    rise: key(t.int(1, 100), { default: 2, doc: "passed checks that mark a backend up again" }),
    max_connections: key(t.int(1), {
      default: 1000,
      doc: "client connections at once; beyond it, clients get an rsync `@ERROR`",
      flag: { name: "max-connections" },
    }),
    // A tenth of the slots, so one host cannot lock the others out, and far
    // more than a NAT in front of a few hundred cron clients holds at once
    // (a no-op pull lasts a second).
    max_connections_per_source: key(t.int(1), {
      default: 100,
      doc: "connections one client address may hold; clients behind one NAT share it",
    }),
    handshake_timeout: key(t.duration, {
      default: "10s",
      doc: "a client must send its rsync greeting and module request within it",
    }),
    idle_timeout: key(t.duration, {
      default: "300s",
      doc: "a connection whose server has sent nothing for this long is closed",
    }),
    drain_timeout: key(t.duration, {
      default: "30s",
      doc: "on stop, how long open connections may still run",
    }),
    version_grace: key(t.duration, {
      default: "10s",
      doc: "how long a backend may lag the newest version before leaving rotation",
    }),
    // Longer than a client run's connections take (a few seconds), short
    // enough that clients behind one NAT spread again soon.
    affinity: key(t.duration, {
      default: "10s",
      doc: "a client address's connections go to its first one's backend for this long " +
        "(not extended); 0s: off",
    }),
    // 1 covers a publish read mid-way (a replica already at N+1, the primary
    // read at N); a marker forged further ahead is not believed.
    version_max_lead: key(t.int(0), {
      default: 1,
      doc: "seqs past the primary's a backend may claim before its version is distrusted",
    }),
    proxy_protocol: key(t.bool, {
      default: false,
      doc: "send a PROXY v1 header to backends",
      flag: { name: "proxy-protocol" },
    }),
    // Native sockets copying through a buffer where FFI works, Deno's elsewhere.
    engine: key(t.oneOf("auto", "copy", "splice", "deno"), {
      default: "auto",
      doc: "`copy` or `splice` (native sockets, Linux, `--allow-ffi`), `deno` (Deno's sockets); " +
        "`auto`: copy, else deno with a warning",
    }),
  }, "null"),
  client: section({
    source: key(t.rsyncUrl, {
      absent: "the proxy (else the primary)",
      doc: "rsync URL of the read module to mirror",
      flag: { name: "source" },
    }),
    dest: key(t.absPath, {
      absent: "(required for clients)",
      doc: "the directory kept identical to the source",
      flag: { name: "dest" },
    }),
    splay: key(t.duration, {
      default: "30s",
      doc: "a cron run first waits a per-host delay in `[0, splay)`",
      flag: { name: "splay" },
    }),
    timeout: key(t.duration, {
      default: "300s",
      doc: "I/O timeout of a sync",
      flag: { name: "timeout" },
    }),
    connect_timeout: key(t.duration, { default: "10s", doc: "connect timeout of a sync" }),
    retries: key(t.int(0, 100), {
      default: 3,
      doc: "retries after a connection failure",
      flag: { name: "retries" },
    }),
    max_delete: key(t.int(0), {
      default: 500,
      doc: "refuse a sync that would delete more entries than this",
      flag: { name: "max-delete" },
    }),
    verify_every: key(t.duration, {
      default: "0s",
      doc: "full tree check at most this often when the version is unchanged; 0s: every run",
      flag: { name: "verify-every" },
    }),
    backup_dir: key(t.absPath, {
      absent: "none",
      doc: "keep what a sync overwrote or deleted here",
      flag: { name: "backup-dir" },
    }),
    atomic: key(t.bool, {
      default: false,
      doc: "swap in each new tree at once through a symlink",
      flag: { name: "atomic" },
    }),
    keep: key(t.int(1, 100), {
      default: 3,
      doc: "with `atomic`, the trees kept for `--rollback`",
      flag: { name: "keep" },
    }),
    keep_owners: key(t.bool, {
      default: false,
      doc:
        "take files' owner and group from the server (by name); off: the client's user owns them",
    }),
    watch_interval: key(t.duration, { default: "2s", doc: "how often `--watch` polls" }),
    notify: key(t.hostPortOrOff, {
      absent: "the `source` host's `health`",
      doc: "where `--watch` long-polls `GET /version` to hear of a new version at once " +
        "(polling stays the fallback), and a cron run asks whether dest's version is still " +
        "the one served (then no rsync connection); `off`: neither",
      flag: { name: "notify" },
    }),
    user: key(t.name, { default: "root", doc: "the user field of the rendered cron line" }),
  }),
  push: section({
    debounce: key(t.duration, {
      default: "0ms",
      doc: "wait for this much quiet before pushing",
      flag: { name: "debounce", roles: SERVERS },
    }),
    max_delay: key(t.duration, { default: "1s", doc: "never wait longer than this for quiet" }),
    reconcile: key(t.duration, {
      default: "5m",
      doc: "full push this often, whatever the watcher saw",
      flag: { name: "reconcile", roles: SERVERS },
    }),
    concurrency: key(t.int(1, 256), {
      default: 8,
      doc: "replicas pushed to at once",
      flag: { name: "concurrency", roles: SERVERS },
    }),
    max_delete: key(t.int(0), {
      default: 1000,
      doc:
        "refuse a push, or hold the deletions of a `delete_window`, past this many net deletions",
      flag: { name: "max-delete", roles: SERVERS },
    }),
    max_delete_percent: key(t.int(1, 100), {
      default: 50,
      doc: "likewise past this share of the tree's entries (from 20 deletions up; `100`: off)",
    }),
    delete_hold: key(t.duration, {
      default: "2s",
      doc: "deletions wait for this much quiet (at most 10 times it) before going downstream",
    }),
    delete_window: key(t.duration, {
      default: "10m",
      doc: "deletions sent within this window count together against the guards",
    }),
    exclude: key(t.patterns, { default: [".git"], doc: "never pushed or published" }),
    max_paths: key(t.int(1), {
      default: 1000,
      doc: "more changed paths than this: push the whole tree",
    }),
    storm_events: key(t.int(1), {
      default: 200,
      doc: "more watch events than this in a second: some may be lost, " +
        "so re-walk and push the whole tree once quiet",
    }),
    poll_interval: key(t.duration, {
      default: "10s",
      doc: "whole pushes this often when the watcher cannot run (out of inotify watches)",
    }),
    retry_min: key(t.duration, { default: "1s", doc: "first retry delay for a failing replica" }),
    retry_max: key(t.duration, {
      default: "60s",
      doc: "longest retry delay for a failing replica",
    }),
  }),
  fleet: section({
    retention: key(t.duration, {
      default: "7d",
      doc: "client reports older than this are deleted from the primary's database",
    }),
    silent_after: key(t.duration, {
      default: "5m",
      doc: "a client with no report for longer is `silent`",
    }),
    report_rate: key(t.int(1, 10_000), {
      default: 12,
      doc: "reports accepted per client host per minute (more get 429)",
    }),
    report_rate_total: key(t.int(1, 1_000_000), {
      default: 6000,
      doc: "reports accepted from all clients together per minute (more get 429)",
    }),
    max_clients: key(t.int(1, 1_000_000), {
      default: 5000,
      doc: "distinct client hosts kept; a report from one more gets 403",
    }),
  }),
  release: section({
    public_keys: key(t.publicKeys, {
      default: [],
      doc: "keys a version must be signed with (`fanout keygen`); none: versions are unsigned, " +
        "and every role warns",
    }),
    signing_key_file: key(t.absPath, {
      default: "/etc/fanout/release.key",
      doc: "publisher: the private key that signs each version (`fanout keygen`), mode 600",
    }),
  }),
};

/** The fleet file after its checks, defaults filled in. */
export type RawFleet = Parsed<typeof FLEET>;

// ---------------------------------------------------------------------------
// the keys, listed

/** A key's flag, resolved: where it is accepted and what it sets. */
export interface KeyFlag {
  name: string;
  placeholder: string | null;
  /** The roles it sets the key for; "all": every role, and accepted everywhere. */
  roles: Role[] | "all";
  /** The key path it sets; a leading `"@host"` means this host's own entry. */
  at: KeyPath;
}

/** One key of {@linkcode FLEET}, with its place. */
export interface FleetKey {
  /** As the docs write it: `push.debounce`, `replicas[].listen`. */
  path: string;
  decl: Key<unknown, unknown, Fill>;
  /** The section it is in is optional ("null"): a required key is required there only. */
  inOptional: boolean;
  flag: KeyFlag | null;
}

/** The roles whose own entry a section is: their flags set keys there. */
const OWNER: Record<string, { roles: Role[]; self: boolean }> = {
  primary: { roles: ["primary"], self: true },
  replicas: { roles: ["replica"], self: true },
  publisher: { roles: ["publish"], self: false },
  proxy: { roles: ["proxy"], self: false },
  client: { roles: ["client"], self: false },
};

/**
 * Every key of {@linkcode FLEET} in order, server keys once per place
 * (`primary.listen`, `replicas[].listen`).
 *
 * @throws {Error} on a declaration the flags cannot be built from.
 *
 * @example
 * ```ts
 * fleetKeys().find((k) => k.path === "push.debounce")?.flag?.name; // "debounce"
 * ```
 */
export function fleetKeys(): FleetKey[] {
  const out: FleetKey[] = [];
  const walk = (keys: Keys, at: string[], inOptional: boolean) => {
    for (const [name, d] of Object.entries(keys)) {
      if (d.kind === "section") walk(d.keys, [...at, name], inOptional || d.absent === "null");
      else if (d.kind === "list") walk(d.keys, [...at, `${name}[]`], inOptional);
      else {
        const path = [...at, name].join(".");
        out.push({
          path,
          decl: d,
          inOptional,
          flag: d.flag ? keyFlag(path, d, [...at, name]) : null,
        });
      }
    }
  };
  walk(FLEET, [], false);
  return out;
}

function keyFlag(path: string, d: Key<unknown, unknown, Fill>, at: string[]): KeyFlag {
  const flag = d.flag!;
  const reading = d.type.flag;
  if (!reading) throw new Error(`${path}: no flag can set a key of ${d.type.expected}`);
  const owner = OWNER[at[0].replace("[]", "")];
  const roles = flag.roles ?? owner?.roles;
  if (!roles) throw new Error(`${path}: say which roles --${flag.name} is for`);
  const keyPath = at.map((k) => k.replace("[]", ""));
  return {
    name: flag.name,
    placeholder: reading === "switch" ? null : flag.placeholder ?? reading.placeholder,
    roles,
    at: owner?.self ? ["@host", ...keyPath.slice(1)] : keyPath,
  };
}

// ---------------------------------------------------------------------------
// file keys as fields

/** `"max_delete_percent"` → `"maxDeletePercent"`. */
export type Camel<S extends string> = S extends `${infer H}_${infer T}`
  ? `${H}${Capitalize<Camel<T>>}`
  : S;

/** `T` with its keys as fanout's fields name them. */
export type CamelKeys<T> = { [k in keyof T as Camel<k & string>]: T[k] };

/**
 * A parsed section with its keys as fanout's fields name them.
 *
 * @example
 * ```ts
 * camelKeys({ max_delay: 1000, debounce: 0 }); // { maxDelay: 1000, debounce: 0 }
 * ```
 */
export function camelKeys<T extends object>(section: T): CamelKeys<T> {
  return Object.fromEntries(
    Object.entries(section).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), v]),
  ) as CamelKeys<T>;
}

/**
 * A key's default as the fleet file writes it, or null when it has none
 * of its own (required, or derived from other keys).
 *
 * @example
 * ```ts
 * shownDefault(FLEET.push.keys.exclude); // "[.git]"
 * ```
 */
export function shownDefault(decl: Key<unknown, unknown, Fill>): string | null {
  if (decl.fill !== "default") return null;
  const v = decl.default;
  return Array.isArray(v) ? `[${v.join(", ")}]` : String(v);
}
