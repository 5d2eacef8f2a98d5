// The fleet file's shape, as zod schemas. Only shape and value checks live
// here; defaults and cross-references are applied in config.ts.
import { z } from "zod";
import { type HostPort, isIp, parseDuration, parseHostPort, parseRsyncUrl } from "../core/mod.ts";
import { rsyncdValueProblem } from "./rsyncd_value.ts";

function got(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  return `${typeof v} ${String(v)}`;
}

/** A value of the right kind refused for a reason of its own. */
class Refused {
  constructor(readonly why: string) {}
}

/** A leaf validated by `check`, with a message that says what was expected. */
function leaf<T>(expected: string, check: (v: unknown) => T | Refused | undefined) {
  return z.unknown().transform((v, ctx): T => {
    const out = v === undefined ? undefined : check(v);
    if (out === undefined || out instanceof Refused) {
      const message = v === undefined
        ? `missing: expected ${expected}`
        : out instanceof Refused
        ? `${got(v)} ${out.why}`
        : `expected ${expected}, got ${got(v)}`;
      ctx.addIssue({ code: "custom", message });
      return z.NEVER;
    }
    return out;
  });
}

/** rsyncd.conf's reading of `v` (where paths, uid and gid land), as a refusal. */
function rsyncdProblem(v: string): Refused | undefined {
  const why = rsyncdValueProblem(v);
  return why ? new Refused(why) : undefined;
}

const str = (what = "a string") =>
  leaf<string>(what, (v) => (typeof v === "string" && v.length > 0 ? v : undefined));
/** A string rsyncd.conf gets as a value: uid, gid. */
const rsyncdStr = () =>
  leaf<string>(
    "a user or group name or number",
    (v) => (typeof v === "string" && v.length > 0 ? rsyncdProblem(v) ?? v : undefined),
  );
const name = () =>
  leaf<string>(
    "a name of letters, digits, '.', '_' or '-'",
    (v) => (typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v) ? v : undefined),
  );
const absPath = () =>
  leaf<string>("an absolute path", (v) => {
    if (typeof v !== "string" || !v.startsWith("/")) return undefined;
    // rsyncd splits a path at "/./" into chroot and module dir.
    if (/\/\.\.?(\/|$)/.test(v)) return new Refused("has a . or .. part: write the path it means");
    return rsyncdProblem(v) ?? v;
  });
const duration = () =>
  leaf<number>(
    'a duration with a unit, like "200ms", "2s" or "5m"',
    (v) => (typeof v === "string" ? parseDuration(v) ?? undefined : undefined),
  );
const hostPort = () =>
  leaf<HostPort>(
    "host:port with an IP address",
    (v) => (typeof v === "string" ? parseHostPort(v) ?? undefined : undefined),
  );
const ip = () =>
  leaf<string>(
    "an IP address (rsync --address and hosts allow need one)",
    (v) => (typeof v === "string" && isIp(v) ? v : undefined),
  );
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  leaf<number>(
    max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
    (v) => (typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : undefined),
  );
const bool = () => leaf<boolean>("true or false", (v) => (typeof v === "boolean" ? v : undefined));
const oneOf = <T extends string>(...choices: T[]) =>
  leaf<T>(
    choices.map((c) => `"${c}"`).join(", ").replace(/, ([^,]*)$/, " or $1"),
    (v) => (choices.includes(v as T) ? v as T : undefined),
  );
const rsyncUrl = () =>
  leaf<string>(
    "an rsync URL like rsync://host:873/module/",
    (v) => (typeof v === "string" && parseRsyncUrl(v) ? v : undefined),
  );
const patterns = () =>
  leaf<string[]>(
    "a list of patterns",
    (v) =>
      Array.isArray(v) && v.every((p) => typeof p === "string" && p.length > 0 && !p.includes("\n"))
        ? v as string[]
        : undefined,
  );
const names = () =>
  leaf<string[]>(
    "a list of host names",
    (v) => Array.isArray(v) && v.every((p) => typeof p === "string") ? v as string[] : undefined,
  );

const server = {
  name: name(),
  address: ip().optional(),
  listen: hostPort().optional(),
  health: hostPort().optional(),
  proxy_listen: hostPort().optional(),
  path: absPath(),
  max_connections: int(1).optional(),
};

/** The raw fleet file, shape-checked; every optional key may be absent. */
export const FleetSchema = z.object({
  tree: name(),
  binary: absPath().optional(),
  modules: z.object({ read: name().optional(), write: name().optional() }).strict().optional(),
  auth: z.object({
    user: name().optional(),
    secrets_file: absPath().optional(),
    password_file: absPath().optional(),
    report_token_file: absPath().optional(),
  }).strict().optional(),
  uid: rsyncdStr().optional(),
  gid: rsyncdStr().optional(),
  state_dir: absPath().optional(),
  rsync: z.object({
    path: str().optional(),
    timeout: duration().optional(),
    connect_timeout: duration().optional(),
  }).strict().optional(),
  primary: z.object(server).strict(),
  publisher: z.object({
    name: name().optional(),
    address: ip(),
    repo: absPath().optional(),
    ref: str().optional(),
    staging: absPath().optional(),
    lock_timeout: duration().optional(),
  }).strict().optional(),
  replicas: z.array(z.object({ ...server, upstream: name().optional() }).strict()).optional(),
  proxy: z.object({
    name: name().optional(),
    listen: hostPort().optional(),
    address: ip().optional(),
    health: hostPort().optional(),
    backends: names().optional(),
    interval: duration().optional(),
    check_timeout: duration().optional(),
    fall: int(1, 100).optional(),
    rise: int(1, 100).optional(),
    max_connections: int(1).optional(),
    max_connections_per_source: int(1).optional(),
    handshake_timeout: duration().optional(),
    idle_timeout: duration().optional(),
    drain_timeout: duration().optional(),
    version_grace: duration().optional(),
    version_max_lead: int(0).optional(),
    proxy_protocol: bool().optional(),
    engine: oneOf("auto", "copy", "splice", "deno").optional(),
  }).strict().optional(),
  client: z.object({
    source: rsyncUrl().optional(),
    dest: absPath().optional(),
    splay: duration().optional(),
    timeout: duration().optional(),
    connect_timeout: duration().optional(),
    retries: int(0, 100).optional(),
    max_delete: int(0).optional(),
    verify_every: duration().optional(),
    backup_dir: absPath().optional(),
    atomic: bool().optional(),
    keep: int(1, 100).optional(),
    keep_owners: bool().optional(),
    watch_interval: duration().optional(),
    user: name().optional(),
  }).strict().optional(),
  push: z.object({
    debounce: duration().optional(),
    max_delay: duration().optional(),
    reconcile: duration().optional(),
    concurrency: int(1, 256).optional(),
    max_delete: int(0).optional(),
    max_delete_percent: int(1, 100).optional(),
    delete_hold: duration().optional(),
    delete_window: duration().optional(),
    exclude: patterns().optional(),
    max_paths: int(1).optional(),
    storm_events: int(1).optional(),
    poll_interval: duration().optional(),
    retry_min: duration().optional(),
    retry_max: duration().optional(),
  }).strict().optional(),
  fleet: z.object({
    retention: duration().optional(),
    silent_after: duration().optional(),
    report_rate: int(1, 10_000).optional(),
    report_rate_total: int(1, 1_000_000).optional(),
    max_clients: int(1, 1_000_000).optional(),
  }).strict().optional(),
}).strict();

/** The raw fleet file after shape checks. */
export type RawFleet = z.infer<typeof FleetSchema>;
