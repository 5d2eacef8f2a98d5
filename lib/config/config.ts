/**
 * The fleet file: read it once, validate it, and hand every role typed,
 * defaulted objects. Nothing else in fanout reads raw YAML.
 *
 * @module
 */

import type { ZodIssue, ZodTypeAny } from "zod";
import {
  ConfigError,
  type ConfigProblem,
  CONTROL_CHARS,
  DEFAULTS,
  dialable,
  FileTooBigError,
  formatRsyncUrl,
  hostname,
  type HostPort,
  isWildcard,
  parseRsyncUrl,
  quoted,
  readTextUpTo,
} from "../core/mod.ts";
import type { RawFleet } from "./_schema.ts";
import { camelKeys, PORTS } from "./keys.ts";
import type { Override } from "./options.ts";
import { closest, formatPath, type KeyPath, linesOf } from "./paths.ts";

/** An rsync server host: the primary or a replica. */
export interface ServerHost {
  /** `primary` or `replica`. */
  kind: "primary" | "replica";
  name: string;
  /** The host's own IP: pushes leave from it and `hosts allow` lists it. */
  address: string;
  /** Where its rsync daemon listens. */
  listen: HostPort;
  /** Where its health endpoint listens. */
  health: HostPort;
  /**
   * Where its second rsync daemon listens when `proxy.proxy_protocol` is on:
   * read module only, `proxy protocol = yes` (a global daemon setting, so the
   * daemon that takes pushes cannot have it). The proxy connects there.
   */
  proxyListen: HostPort;
  /** The tree on this host. */
  path: string;
  /** rsyncd `max connections` of the read module. */
  maxConnections: number;
  /** Who pushes to it: null for the primary. */
  upstream: string | null;
  /** `<state_dir>/<name>`: pid, lock, logs, status. */
  stateDir: string;
}

/** The git server that publishes to the primary. */
export interface PublisherHost {
  name: string;
  address: string;
  repo: string | null;
  ref: string;
  /** Persistent export of the tree, so rsync sends only the delta. */
  staging: string;
  /** How long a publish waits for another one to finish (ms). */
  lockTimeout: number;
  stateDir: string;
}

/** The TCP balancer in front of the servers. */
export interface ProxyConfig {
  name: string;
  listen: HostPort;
  /** The address clients dial, when `listen` is a wildcard. */
  address: string | null;
  health: HostPort;
  /** Server names, in rotation order. */
  backends: string[];
  interval: number;
  checkTimeout: number;
  fall: number;
  rise: number;
  maxConnections: number;
  /** Connections one client address may hold at once. */
  maxConnectionsPerSource: number;
  /** Time a client has to send its rsync greeting and module request (ms). */
  handshakeTimeout: number;
  idleTimeout: number;
  drainTimeout: number;
  versionGrace: number;
  /** How long a client address is held to the backend its first connection went to (ms); 0: off. */
  affinity: number;
  /** Seqs past the primary's a backend may claim before its version is distrusted. */
  versionMaxLead: number;
  proxyProtocol: boolean;
  /** The socket engine: see lib/proxy/net/net.ts. */
  engine: "auto" | "copy" | "splice" | "deno";
  stateDir: string;
}

/** How clients mirror the tree. */
export interface ClientConfig {
  /** rsync URL of the read module, or null when it cannot be derived. */
  source: string | null;
  dest: string | null;
  splay: number;
  timeout: number;
  connectTimeout: number;
  retries: number;
  maxDelete: number;
  verifyEvery: number;
  backupDir: string | null;
  atomic: boolean;
  keep: number;
  /** Take files' owners and groups from the server (off: the client's user owns them). */
  keepOwners: boolean;
  watchInterval: number;
  /**
   * The health endpoint `--watch` long-polls for new versions (`GET
   * /version`), or null: poll only.
   */
  notify: HostPort | null;
  /** The user field of the rendered cron line. */
  user: string;
}

/** How servers push to their downstream replicas. */
export interface PushConfig {
  debounce: number;
  maxDelay: number;
  reconcile: number;
  concurrency: number;
  maxDelete: number;
  /** Deletions past this share of the tree's entries (percent) are a suspected accident. */
  maxDeletePercent: number;
  /** Deletions wait this long with no other deletion seen before going downstream (ms). */
  deleteHold: number;
  /** Deletions sent within this window count together against the guards (ms). */
  deleteWindow: number;
  exclude: string[];
  maxPaths: number;
  stormEvents: number;
  pollInterval: number;
  retryMin: number;
  retryMax: number;
}

/** The fleet view on the primary: client reports and how they are judged. */
export interface FleetViewConfig {
  /** How long reports are kept (ms). */
  retention: number;
  /** A client whose last report is older than this is silent (ms). */
  silentAfter: number;
  /** Reports accepted per client host per minute. */
  reportRate: number;
  /** Reports accepted from all clients together per minute. */
  reportRateTotal: number;
  /** Distinct client hosts kept. */
  maxClients: number;
}

/** Signed versions: who may sign, and where the publisher's key lives. */
export interface ReleaseConfig {
  /** `ed25519:<base64>` keys; empty: versions are not signed. */
  publicKeys: string[];
  /** The publisher's private key (PEM, mode 600). */
  signingKeyFile: string;
}

/** The whole fleet, validated and defaulted. Durations are milliseconds. */
export interface Fleet {
  /** Absolute path of the fleet file, or null when built from flags alone. */
  file: string | null;
  tree: string;
  binary: string;
  modules: { read: string; write: string };
  auth: { user: string; secretsFile: string; passwordFile: string; reportTokenFile: string };
  uid: string | null;
  gid: string | null;
  stateDir: string;
  rsync: { path: string; timeout: number; connectTimeout: number };
  primary: ServerHost;
  publisher: PublisherHost | null;
  replicas: ServerHost[];
  proxy: ProxyConfig | null;
  client: ClientConfig;
  push: PushConfig;
  fleet: FleetViewConfig;
  release: ReleaseConfig;
}

/** Options of {@linkcode parseFleet} and {@linkcode loadFleet}. */
export interface FleetOptions {
  overrides?: Override[];
  /** Which entry `@host` overrides refer to. */
  self?: { role: string; name?: string };
}

/**
 * Reads and validates a fleet file.
 *
 * @throws {ConfigError} when the file cannot be read or is invalid; every
 * problem names the file, the line when known, the key path and what was expected.
 *
 * @example
 * ```ts
 * const fleet = await loadFleet("/etc/fanout/fanout.yaml");
 * console.log(fleet.primary.listen.port);
 * ```
 */
export async function loadFleet(
  file: string,
  { text, ...opts }: FleetOptions & {
    /** The file's text when the caller has read it already (so both use one version). */
    text?: string;
  } = {},
): Promise<Fleet> {
  try {
    text ??= await readTextUpTo(file, DEFAULTS.maxFleetBytes);
  } catch (e) {
    if (e instanceof FileTooBigError) throw tooBig(file, e.size);
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Deno.errors.IsADirectory
      ? "not a regular file"
      : (e as Error).message;
    throw new ConfigError(file, [{ path: "", message: `cannot read the fleet file: ${why}` }]);
  }
  return await parseFleet(text, absolute(file), opts);
}

/**
 * Validates fleet-file text. `file` is used in messages and as `Fleet.file`.
 *
 * @throws {ConfigError} on any problem (see {@linkcode loadFleet}).
 *
 * @example
 * ```ts
 * const fleet = await parseFleet("tree: t\nprimary: {name: p, address: 127.0.0.2, path: /srv/t}\n", "inline.yaml");
 * ```
 */
export async function parseFleet(
  text: string,
  file: string,
  opts: FleetOptions = {},
): Promise<Fleet> {
  // Bytes, not UTF-16 units; the encoder runs only when the length alone cannot decide.
  if (text.length * 3 > DEFAULTS.maxFleetBytes) {
    const size = new TextEncoder().encode(text).length;
    if (size > DEFAULTS.maxFleetBytes) throw tooBig(file, size);
  }
  // The YAML reader and the schema load here, not with the module: a command
  // that never reads a fleet file (--version, --help) does not pay for them.
  const [{ load: loadYaml }, { checkFleet, fleetSchema }] = await Promise.all([
    import("js-yaml"),
    import("./_schema.ts"),
  ]);
  let raw: unknown;
  try {
    raw = loadYaml(text, { filename: file });
  } catch (e) {
    const err = e as { reason?: string; mark?: { line: number }; message: string };
    throw new ConfigError(file, [{
      path: "",
      message: `not valid YAML: ${err.reason ?? err.message}`,
      line: err.mark ? err.mark.line + 1 : undefined,
    }]);
  }
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: "", message: "expected a mapping of keys at the top" }]);
  }
  const fromFlags = applyOverrides(raw as Record<string, unknown>, opts);
  // Control characters first, and alone: such a value must not reach the
  // schema's messages or a rendered file.
  let problems: Problem[] = controlProblems(raw);
  const parsed = problems.length ? null : checkFleet(raw);
  if (parsed?.success) problems = crossCheck(parsed.data);
  else if (parsed) problems = parsed.error.issues.flatMap((i) => fromIssue(i, fleetSchema()));
  if (problems.length > 0) {
    // A file of 100k unknown keys must fail as fast as one: list the first
    // few, and find their lines in one parse.
    const shown = problems.slice(0, MAX_PROBLEMS);
    const lines = await linesOf(text, shown.map((p) => p.keyPath));
    shown.forEach((p, i) => {
      const flag = fromFlags.get(formatPath(p.keyPath));
      if (flag) p.flag = CONTROL_CHARS.test(flag) ? quoted(flag, 200) : flag;
      else p.line = lines[i];
    });
    shown.sort((a, b) => (a.line ?? 1e9) - (b.line ?? 1e9));
    const out: ConfigProblem[] = shown.map(({ keyPath: _k, ...p }) => p);
    if (problems.length > shown.length) {
      out.push({ path: "", message: `and ${problems.length - shown.length} more problems` });
    }
    throw new ConfigError(file, out);
  }
  return build((parsed as { data: RawFleet }).data, file);
}

/** How many problems of an invalid fleet file are listed. */
const MAX_PROBLEMS = 20;

function tooBig(file: string, size: number): ConfigError {
  return new ConfigError(file, [{
    path: "",
    message: `the fleet file is ${size} bytes; fanout reads fleet files up to ${
      DEFAULTS.maxFleetBytes / 1024
    } KiB (${DEFAULTS.maxFleetBytes} bytes)`,
  }]);
}

/**
 * Every string in the fleet file (keys too) that holds a control character.
 * A newline in a value would start a line of its own in rsyncd.conf and in
 * every rendered file, so no value may hold one, nor any other control
 * character (they also reach terminals in messages). Iterative, and each
 * node once: YAML aliases share nodes, and a deep nesting must not overflow
 * the stack.
 */
function controlProblems(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const seen = new Set<object>();
  const stack: { v: unknown; at: KeyPath }[] = [{ v: raw, at: [] }];
  while (stack.length > 0 && problems.length <= MAX_PROBLEMS) {
    const { v, at } = stack.pop()!;
    if (typeof v === "string") {
      if (CONTROL_CHARS.test(v)) problems.push(controlProblem(raw, at, v));
      continue;
    }
    if (typeof v !== "object" || v === null || seen.has(v)) continue;
    seen.add(v);
    const entries: [string | number, unknown][] = Array.isArray(v)
      ? v.map((x, i) => [i, x])
      : Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, x] = entries[i];
      if (typeof k === "string" && CONTROL_CHARS.test(k)) {
        problems.push({
          keyPath: at,
          path: formatPath(at),
          message: `a key holds a control character: ${quoted(k)}`,
        });
      } else stack.push({ v: x, at: [...at, k] });
    }
  }
  return problems;
}

function controlProblem(raw: unknown, at: KeyPath, v: string): Problem {
  const c = v[v.search(CONTROL_CHARS)];
  const what = c === "\n"
    ? "a newline"
    : c === "\r"
    ? "a carriage return"
    : c === "\t"
    ? "a tab"
    : `the control character ${quoted(c)}`;
  const host = hostOf(raw, at);
  const shown = quoted(v);
  return {
    keyPath: at,
    path: formatPath(at),
    message: `${host ? `(host ${host}) ` : ""}holds ${what}: ${shown}; ` +
      "no fleet-file value may hold control characters (a newline would start a line of its own in rsyncd.conf)",
  };
}

/** The name of the host entry `at` lies in (`primary`, `replicas[i]`, `publisher`, `proxy`), if valid. */
function hostOf(raw: unknown, at: KeyPath): string | null {
  const r = raw as Record<string, unknown>;
  const entry = at[0] === "replicas" && typeof at[1] === "number"
    ? (r.replicas as unknown[])[at[1]]
    : ["primary", "publisher", "proxy"].includes(at[0] as string)
    ? r[at[0] as string]
    : null;
  const name = (entry as { name?: unknown } | null)?.name;
  return typeof name === "string" && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)
    ? JSON.stringify(name)
    : null;
}

/**
 * A fleet built from command-line flags alone (a client run without a fleet
 * file). Keys not given take their defaults.
 *
 * @throws {ConfigError} naming the flag when a value is invalid.
 */
export async function flagsOnlyFleet(overrides: Override[]): Promise<Fleet> {
  // A placeholder primary keeps the shape valid; a flags-only run uses only
  // the client section, the state dir and rsync settings.
  const text = "tree: fanout\nprimary: {name: none, address: 127.0.0.1, path: /nonexistent}\n";
  const fleet = await parseFleet(text, "flags", { overrides });
  // The placeholder is no server to hear versions from: only --notify names one.
  if (!overrides.some((o) => o.path[o.path.length - 1] === "notify")) fleet.client.notify = null;
  return fleet;
}

/** Every rsync server of the fleet: the primary first, then replicas in file order. */
export function servers(fleet: Fleet): ServerHost[] {
  return [fleet.primary, ...fleet.replicas];
}

/** The server named `name`, or undefined. */
export function findServer(fleet: Fleet, name: string): ServerHost | undefined {
  return servers(fleet).find((s) => s.name === name);
}

/** The replicas that `name` pushes to (its direct downstreams). */
export function downstreamsOf(fleet: Fleet, name: string): ServerHost[] {
  return fleet.replicas.filter((r) => r.upstream === name);
}

/**
 * The addresses allowed to write to `host`'s write module: the publisher's for
 * the primary, the upstream's for a replica.
 */
export function writersOf(fleet: Fleet, host: ServerHost): string[] {
  if (host.kind === "primary") return fleet.publisher ? [fleet.publisher.address] : [];
  const up = host.upstream ? findServer(fleet, host.upstream) : undefined;
  return up ? [up.address] : [];
}

// ---------------------------------------------------------------------------

type Problem = ConfigProblem & { keyPath: KeyPath };

function absolute(file: string): string {
  return file.startsWith("/") ? file : `${Deno.cwd()}/${file}`.replace(/\/\.\//g, "/");
}

/** Writes overrides into the raw object; returns key path → flag for messages. */
function applyOverrides(raw: Record<string, unknown>, opts: FleetOptions): Map<string, string> {
  const from = new Map<string, string>();
  for (const o of opts.overrides ?? []) {
    let path = o.path;
    if (path[0] === "@host") {
      const at = hostPath(raw, opts.self);
      if (!at) continue; // selectSelf reports the missing host with a better message
      path = [...at, ...path.slice(1)];
    }
    let obj: Record<string, unknown> = raw;
    for (const key of path.slice(0, -1)) {
      const next = obj[key as string];
      if (next === undefined || next === null) obj[key as string] = {};
      else if (typeof next !== "object") break;
      obj = obj[key as string] as Record<string, unknown>;
    }
    obj[path[path.length - 1] as string] = o.value;
    from.set(formatPath(path), o.flag);
  }
  return from;
}

function hostPath(raw: Record<string, unknown>, self: FleetOptions["self"]): KeyPath | null {
  if (!self) return null;
  if (self.role === "primary") return ["primary"];
  if (self.role === "proxy") return ["proxy"];
  if (self.role === "client") return ["client"];
  if (self.role === "publish") return ["publisher"];
  if (self.role === "replica" && Array.isArray(raw.replicas)) {
    const i = raw.replicas.findIndex((r) => (r as { name?: unknown })?.name === self.name);
    return i >= 0 ? ["replicas", i] : null;
  }
  return null;
}

function fromIssue(issue: ZodIssue, schema: ZodTypeAny): Problem[] {
  const keyPath = issue.path as KeyPath;
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, keyPath);
    return issue.keys.map((k, i) => {
      // Only listed problems get a hint (see MAX_PROBLEMS).
      const near = i < MAX_PROBLEMS ? closest(k, known) : undefined;
      const hint = near ? ` (did you mean "${near}"?)` : ` (known keys: ${known.join(", ")})`;
      return {
        keyPath: [...keyPath, k],
        path: formatPath([...keyPath, k]),
        message: `unknown key${hint}`,
      };
    });
  }
  let message = issue.message;
  if (issue.code === "invalid_type") {
    const expected = issue.expected === "object"
      ? "a mapping"
      : issue.expected === "array"
      ? "a list"
      : issue.expected;
    message = issue.received === "undefined"
      ? `missing: expected ${expected}`
      : `expected ${expected}, got ${issue.received === "object" ? "a mapping" : issue.received}`;
  }
  return [{ keyPath, path: formatPath(keyPath), message }];
}

function knownKeys(schema: ZodTypeAny, path: KeyPath): string[] {
  let s: ZodTypeAny = schema;
  for (const key of path) {
    s = unwrap(s);
    if (typeof key === "number") s = (s._def as { type: ZodTypeAny }).type;
    else s = (s._def as { shape: () => Record<string, ZodTypeAny> }).shape()[key];
  }
  const shape = (unwrap(s)._def as { shape?: () => Record<string, ZodTypeAny> }).shape;
  return shape ? Object.keys(shape()) : [];
}

function unwrap(s: ZodTypeAny): ZodTypeAny {
  while ((s._def as { innerType?: ZodTypeAny }).innerType) {
    s = (s._def as { innerType: ZodTypeAny }).innerType;
  }
  return s;
}

/** Checks that need the whole file: names, references, cycles, clashes. */
function crossCheck(raw: RawFleet): Problem[] {
  const servers = serverEntries(raw);
  const names = servers.map(({ s }) => s.name);
  return [
    ...duplicateNames(raw),
    ...missingAddresses(servers),
    ...sharedAddresses(servers, raw.proxy?.proxy_protocol === true),
    ...badUpstreams(raw, names),
    ...badBackends(raw, names),
    ...sameModules(raw),
    ...retryOrder(raw),
  ];
}

function problem(keyPath: KeyPath, message: string): Problem {
  return { keyPath, path: formatPath(keyPath), message };
}

/** A server entry and where it is in the file. */
type ServerEntry = { at: KeyPath; s: RawFleet["primary"] };

function serverEntries(raw: RawFleet): ServerEntry[] {
  return [
    { at: ["primary"], s: raw.primary },
    ...raw.replicas.map((s, i): ServerEntry => ({ at: ["replicas", i], s })),
  ];
}

/** Host names must be unique: state dirs, reports and the proxy tell hosts apart by them. */
function duplicateNames(raw: RawFleet): Problem[] {
  const hosts: { name: string; at: KeyPath }[] = [
    { name: raw.primary.name, at: ["primary", "name"] },
    ...raw.replicas.map((r, i) => ({ name: r.name, at: ["replicas", i, "name"] })),
    ...(raw.publisher ? [{ name: raw.publisher.name, at: ["publisher", "name"] }] : []),
  ];
  const seen = new Map<string, KeyPath>();
  const problems: Problem[] = [];
  for (const h of hosts) {
    const first = seen.get(h.name);
    if (!first) seen.set(h.name, h.at);
    else {
      problems.push(
        problem(h.at, `duplicate name "${h.name}" (also ${formatPath(first.slice(0, -1))})`),
      );
    }
  }
  return problems;
}

/** A server's address comes from `address` or else from a specific `listen` IP. */
function missingAddresses(servers: ServerEntry[]): Problem[] {
  return servers.filter(({ s }) => !s.address && (!s.listen || isWildcard(s.listen.host)))
    .map(({ at }) =>
      problem(
        [...at, "address"],
        "missing: expected an IP address (or a listen address with a specific IP)",
      )
    );
}

/** No two daemons or health endpoints may listen on the same IP and port. */
function sharedAddresses(servers: ServerEntry[], proxied: boolean): Problem[] {
  const problems: Problem[] = [];
  const listens = new Map<string, KeyPath>();
  for (const { at, s } of servers) {
    const listen = s.listen ?? (s.address ? { host: s.address, port: PORTS.rsync } : null);
    const addrs = {
      listen,
      health: s.health ?? (s.address ? { host: s.address, port: PORTS.health } : null),
      // The second daemon runs only behind a PROXY-protocol proxy.
      proxy_listen: !proxied ? null : s.proxy_listen ?? (listen ? nextPort(listen) : null),
    };
    for (const key of ["listen", "health", "proxy_listen"] as const) {
      const hp = addrs[key];
      if (!hp) continue;
      const k = `${hp.host}:${hp.port}`;
      const other = listens.get(k);
      if (other) problems.push(problem([...at, key], `${k} is also used by ${formatPath(other)}`));
      else listens.set(k, [...at, key]);
    }
  }
  return problems;
}

/** Each upstream names another server, and following upstreams reaches the primary. */
function badUpstreams(raw: RawFleet, names: string[]): Problem[] {
  const problems: Problem[] = [];
  raw.replicas.forEach((r, i) => {
    if (r.upstream === undefined) return;
    if (r.upstream === r.name) {
      problems.push(problem(["replicas", i, "upstream"], `"${r.name}" cannot be its own upstream`));
    } else if (!names.includes(r.upstream)) {
      problems.push(problem(
        ["replicas", i, "upstream"],
        `no server named "${r.upstream}" (servers: ${names.join(", ")})`,
      ));
    }
  });
  const cycle = findCycle(raw);
  if (cycle) {
    problems.push(problem(
      ["replicas", cycle.index, "upstream"],
      `upstream cycle: ${cycle.names.join(" -> ")}`,
    ));
  }
  return problems;
}

/** The proxy's backends, when listed, are some of the servers. */
function badBackends(raw: RawFleet, names: string[]): Problem[] {
  const backends = raw.proxy?.backends;
  if (!backends) return [];
  const problems = backends.flatMap((b, i) =>
    names.includes(b)
      ? []
      : [problem(["proxy", "backends", i], `no server named "${b}" (servers: ${names.join(", ")})`)]
  );
  if (backends.length === 0) {
    problems.push(problem(["proxy", "backends"], "expected at least one server name"));
  }
  return problems;
}

/** The read module is open to all and the write module is not: one name cannot be both. */
function sameModules(raw: RawFleet): Problem[] {
  const modules = modulesOf(raw);
  return modules.read === modules.write
    ? [problem(["modules", "write"], "the read and write modules must have different names")]
    : [];
}

function retryOrder(raw: RawFleet): Problem[] {
  return raw.push.retry_min > raw.push.retry_max
    ? [problem(["push", "retry_min"], "must not be longer than push.retry_max")]
    : [];
}

/**
 * The first upstream cycle, named from the first replica on it; linear in
 * the number of replicas (each is walked once), so a long chain in a big
 * file is checked as fast as a short one.
 */
function findCycle(raw: RawFleet): { index: number; names: string[] } | null {
  const replicas = raw.replicas;
  const up = new Map<string, string>();
  const index = new Map<string, number>();
  replicas.forEach((r, i) => {
    up.set(r.name, r.upstream ?? raw.primary.name);
    if (!index.has(r.name)) index.set(r.name, i);
  });
  const done = new Set<string>();
  for (const r of replicas) {
    const chain: string[] = [];
    const onChain = new Map<string, number>();
    let cur: string | undefined = r.name;
    while (cur !== undefined && cur !== raw.primary.name && !done.has(cur)) {
      const at = onChain.get(cur);
      if (at !== undefined) {
        const loop = chain.slice(at);
        return { index: index.get(loop[0])!, names: [...loop, loop[0]] };
      }
      onChain.set(cur, chain.length);
      chain.push(cur);
      cur = up.get(cur);
    }
    for (const c of chain) done.add(c);
  }
  return null;
}

function build(raw: RawFleet, file: string): Fleet {
  const stateDir = raw.state_dir;
  const primary = serverHost(raw.primary, "primary", raw.primary.name, stateDir);
  const replicas = raw.replicas.map((r) => serverHost(r, "replica", primary.name, stateDir));
  const modules = modulesOf(raw);
  const proxy = raw.proxy ? proxyConfig(raw.proxy, [primary, ...replicas], stateDir) : null;
  return {
    file,
    tree: raw.tree,
    binary: raw.binary,
    modules,
    auth: camelKeys(raw.auth),
    uid: raw.uid ?? null,
    gid: raw.gid ?? null,
    stateDir,
    rsync: camelKeys(raw.rsync),
    primary,
    publisher: raw.publisher ? publisherHost(raw.publisher, stateDir) : null,
    replicas,
    proxy,
    client: clientConfig(raw.client, defaultSource(proxy, primary, modules.read), {
      proxy,
      servers: [primary, ...replicas],
    }),
    push: camelKeys(raw.push),
    fleet: camelKeys(raw.fleet),
    release: camelKeys(raw.release),
  };
}

/** The module names: the tree's name, and the tree's name with -push, unless set. */
function modulesOf(raw: RawFleet): Fleet["modules"] {
  return { read: raw.modules.read ?? raw.tree, write: raw.modules.write ?? `${raw.tree}-push` };
}

function serverHost(
  s: RawFleet["primary"] & { upstream?: string },
  kind: "primary" | "replica",
  primaryName: string,
  stateDir: string,
): ServerHost {
  // crossCheck made sure that without an address, listen has a specific IP.
  const address = s.address ?? s.listen!.host;
  const listen = s.listen ?? { host: address, port: PORTS.rsync };
  return {
    kind,
    name: s.name,
    address,
    listen,
    health: s.health ?? { host: address, port: PORTS.health },
    proxyListen: s.proxy_listen ?? nextPort(listen),
    path: trimSlash(s.path),
    maxConnections: s.max_connections,
    upstream: kind === "primary" ? null : s.upstream ?? primaryName,
    stateDir: `${stateDir}/${s.name}`,
  };
}

function publisherHost(p: NonNullable<RawFleet["publisher"]>, stateDir: string): PublisherHost {
  return {
    ...camelKeys(p),
    repo: p.repo ?? null,
    staging: p.staging ?? `${stateDir}/${p.name}/staging`,
    stateDir: `${stateDir}/${p.name}`,
  };
}

function proxyConfig(
  p: NonNullable<RawFleet["proxy"]>,
  servers: ServerHost[],
  stateDir: string,
): ProxyConfig {
  return {
    ...camelKeys(p),
    address: p.address ?? (isWildcard(p.listen.host) ? null : p.listen.host),
    health: p.health ?? { host: p.listen.host, port: PORTS.proxyHealth },
    backends: p.backends ?? servers.map((s) => s.name),
    stateDir: `${stateDir}/${p.name}`,
  };
}

function clientConfig(
  c: RawFleet["client"],
  source: string | null,
  hosts: { proxy: ProxyConfig | null; servers: ServerHost[] },
): ClientConfig {
  const src = c.source ?? source;
  return {
    ...camelKeys(c),
    source: src,
    dest: c.dest ? trimSlash(c.dest) : null,
    backupDir: c.backup_dir ?? null,
    notify: c.notify === "off" ? null : c.notify ?? healthOfSource(src, hosts),
  };
}

/**
 * The health endpoint of the host `source` names: the proxy's, or a
 * server's (dialled at its address when it listens on a wildcard); null
 * when `source` is no host of the fleet.
 */
function healthOfSource(
  source: string | null,
  hosts: { proxy: ProxyConfig | null; servers: ServerHost[] },
): HostPort | null {
  const url = source ? parseRsyncUrl(source) : null;
  if (!url) return null;
  const { proxy, servers } = hosts;
  const named = (listen: HostPort, address: string | null) =>
    url.port === listen.port && (url.host === listen.host || url.host === address);
  if (proxy && named(proxy.listen, proxy.address)) {
    return proxy.address ? dialable(proxy.health, proxy.address) : proxy.health;
  }
  const server = servers.find((s) => named(s.listen, s.address));
  return server ? dialable(server.health, server.address) : null;
}

function defaultSource(
  proxy: ProxyConfig | null,
  primary: ServerHost,
  module: string,
): string | null {
  const at = proxy
    ? (proxy.address ? { host: proxy.address, port: proxy.listen.port } : null)
    : primary.listen;
  return at ? formatRsyncUrl({ ...at, module }) : null;
}

/** The default `proxy_listen`: the listen port + 1 (- 1 for 65535). */
function nextPort(hp: HostPort): HostPort {
  return { host: hp.host, port: hp.port === 65535 ? 65534 : hp.port + 1 };
}

function trimSlash(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, "") : path;
}

/**
 * The server entry this host is, for `--role primary` or `--role replica`.
 * The primary is the fleet's one primary (a given `--name` must match it); a
 * replica is found by `name` (default: the host name).
 *
 * @throws {ConfigError} naming the known hosts when there is no such entry.
 *
 * @example
 * ```ts
 * const me = selectServer(fleet, "replica", "rsync2");
 * ```
 */
export function selectServer(fleet: Fleet, role: "primary" | "replica", name?: string): ServerHost {
  const file = fleet.file ?? "flags";
  if (role === "primary") {
    if (name !== undefined && name !== fleet.primary.name) {
      const other = fleet.replicas.find((r) => r.name === name);
      throw new ConfigError(file, [{
        path: "primary.name",
        message: other
          ? `--name ${name} is a replica here; use --role replica, or --name ${fleet.primary.name}`
          : `--name ${name} is not the primary (primary.name is "${fleet.primary.name}")`,
      }]);
    }
    return fleet.primary;
  }
  const want = name ?? hostname();
  const host = fleet.replicas.find((r) => r.name === want);
  if (!host) {
    const known = fleet.replicas.map((r) => r.name);
    throw new ConfigError(file, [{
      path: "replicas",
      message:
        `no replica named "${want}"${name === undefined ? " (the host name; pass --name)" : ""}; ` +
        (known.length ? `replicas: ${known.join(", ")}` : "the file lists no replicas"),
    }]);
  }
  return host;
}
