/**
 * The command line: every flag, which roles it applies to, the fleet-file key
 * it overrides, and the help texts. `parseCli` turns argv into one typed
 * {@linkcode Command} or throws a {@linkcode UsageError} with one clear line.
 *
 * @module
 */

import { UsageError, VERSION } from "../core/mod.ts";
import { closest, type CommonOptions, type Override, type Role, ROLES } from "../config/mod.ts";
import { tokenize } from "./_argv.ts";

/** What `render` can produce. */
export const RENDER_KINDS = [
  "rsyncd",
  "systemd",
  "nginx",
  "haproxy",
  "cron",
  "post-receive",
  "report-token",
] as const;

type Scope = Role | "check-config" | "render" | "demo" | "fleet";

interface FlagSpec {
  name: string;
  short?: string;
  type: "string" | "boolean";
  multiple?: boolean;
  /** Where the flag is accepted; "all" means everywhere. */
  scopes: Scope[] | "all";
  /** The fleet-file key it overrides, per role ("@host" = this host's entry). */
  key?: Partial<Record<Role, (string | number)[]>>;
  /** Turns the flag's text into the YAML value the key expects. */
  toValue?: (v: string) => unknown;
  value?: string;
  help: string;
}

const SERVERS: Role[] = ["primary", "replica"];
const everyRole = (path: (string | number)[]) =>
  Object.fromEntries(ROLES.map((r) => [r, path])) as Record<Role, (string | number)[]>;
const serverKey = (k: string) => ({ primary: ["@host", k], replica: ["@host", k] });
const int = (flag: string) => (v: string): unknown => {
  const n = Number(v);
  if (!/^\d+$/.test(v)) throw new UsageError(`--${flag}: expected a whole number, got "${v}"`);
  return n;
};

/** Every flag fanout knows. */
export const FLAGS: FlagSpec[] = [
  {
    name: "role",
    type: "string",
    scopes: "all",
    value: "ROLE",
    help: `what this host is: ${ROLES.join(", ")}`,
  },
  {
    name: "config",
    short: "c",
    type: "string",
    scopes: "all",
    value: "FILE",
    help: "the fleet file (default /etc/fanout/fanout.yaml)",
  },
  {
    name: "name",
    type: "string",
    scopes: "all",
    value: "NAME",
    help: "which entry of the fleet file this host is (default: the host name)",
  },
  {
    name: "log-format",
    type: "string",
    scopes: "all",
    value: "FMT",
    help: "logfmt (default) or json",
  },
  {
    name: "log-level",
    type: "string",
    scopes: "all",
    value: "LEVEL",
    help: "debug, info (default), warn or error",
  },
  {
    name: "set",
    type: "string",
    multiple: true,
    scopes: "all",
    value: "KEY=VALUE",
    help: "override any fleet-file key, e.g. --set push.debounce=50ms (repeatable)",
  },
  {
    name: "state-dir",
    type: "string",
    scopes: "all",
    key: everyRole(["state_dir"]),
    value: "DIR",
    help: "where pid, lock, logs and status live (state_dir)",
  },
  { name: "help", short: "h", type: "boolean", scopes: "all", help: "show help" },
  { name: "version", short: "V", type: "boolean", scopes: "all", help: "print the version" },
  // servers
  {
    name: "listen",
    type: "string",
    scopes: [...SERVERS, "proxy"],
    key: { ...serverKey("listen"), proxy: ["proxy", "listen"] },
    value: "IP:PORT",
    help: "where the rsync daemon (or the proxy) listens",
  },
  {
    name: "health",
    type: "string",
    scopes: [...SERVERS, "proxy"],
    key: { ...serverKey("health"), proxy: ["proxy", "health"] },
    value: "IP:PORT",
    help: "where /healthz, /status and /metrics are served",
  },
  {
    name: "path",
    type: "string",
    scopes: SERVERS,
    key: serverKey("path"),
    value: "DIR",
    help: "the tree on this host",
  },
  {
    name: "address",
    type: "string",
    scopes: [...SERVERS, "publish"],
    key: { ...serverKey("address"), publish: ["publisher", "address"] },
    value: "IP",
    help: "this host's address: pushes leave from it",
  },
  {
    name: "debounce",
    type: "string",
    scopes: SERVERS,
    key: { primary: ["push", "debounce"], replica: ["push", "debounce"] },
    value: "DUR",
    help: "wait for this much quiet before pushing (push.debounce, default 0ms)",
  },
  {
    name: "reconcile",
    type: "string",
    scopes: SERVERS,
    key: { primary: ["push", "reconcile"], replica: ["push", "reconcile"] },
    value: "DUR",
    help: "full push this often (push.reconcile, default 5m)",
  },
  {
    name: "concurrency",
    type: "string",
    scopes: SERVERS,
    key: { primary: ["push", "concurrency"], replica: ["push", "concurrency"] },
    toValue: int("concurrency"),
    value: "N",
    help: "replicas pushed to at once (push.concurrency, default 8)",
  },
  {
    name: "max-delete",
    type: "string",
    scopes: [...SERVERS, "client"],
    key: {
      primary: ["push", "max_delete"],
      replica: ["push", "max_delete"],
      client: ["client", "max_delete"],
    },
    toValue: int("max-delete"),
    value: "N",
    help: "refuse a sync that would delete more entries than this",
  },
  {
    name: "allow-mass-delete",
    type: "boolean",
    scopes: SERVERS,
    help: "lift the mass-delete guard until every replica has had one whole push",
  },
  // proxy
  {
    name: "backends",
    type: "string",
    scopes: ["proxy"],
    key: { proxy: ["proxy", "backends"] },
    toValue: (v) => v.split(",").map((s) => s.trim()).filter(Boolean),
    value: "A,B",
    help: "server names to balance over (proxy.backends)",
  },
  {
    name: "max-connections",
    type: "string",
    scopes: ["proxy"],
    key: { proxy: ["proxy", "max_connections"] },
    toValue: int("max-connections"),
    value: "N",
    help: "refuse clients beyond this many (proxy.max_connections)",
  },
  {
    name: "proxy-protocol",
    type: "boolean",
    scopes: ["proxy"],
    key: { proxy: ["proxy", "proxy_protocol"] },
    toValue: () => true,
    help: "send a PROXY v1 header to backends (proxy.proxy_protocol)",
  },
  // client
  {
    name: "source",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "source"] },
    value: "URL",
    help: "rsync URL to mirror from (client.source, default: the proxy)",
  },
  {
    name: "dest",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "dest"] },
    value: "DIR",
    help: "the directory kept identical to the source (client.dest)",
  },
  {
    name: "splay",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "splay"] },
    value: "DUR",
    help: "wait a per-host delay in [0, DUR) first (client.splay, default 30s)",
  },
  {
    name: "no-splay",
    type: "boolean",
    scopes: ["client"],
    help: "start at once (for interactive runs)",
  },
  {
    name: "timeout",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "timeout"] },
    value: "DUR",
    help: "I/O timeout (client.timeout, default 300s)",
  },
  {
    name: "retries",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "retries"] },
    toValue: int("retries"),
    value: "N",
    help: "retries after a connection failure (client.retries, default 3)",
  },
  {
    name: "verify-every",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "verify_every"] },
    value: "DUR",
    help:
      "full tree check at most this often when the version is unchanged (default 0s: every run)",
  },
  {
    name: "backup-dir",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "backup_dir"] },
    value: "DIR",
    help: "keep what a sync overwrote or deleted here (client.backup_dir)",
  },
  {
    name: "atomic",
    type: "boolean",
    scopes: ["client"],
    key: { client: ["client", "atomic"] },
    toValue: () => true,
    help: "swap in each new tree at once through a symlink (client.atomic)",
  },
  {
    name: "keep",
    type: "string",
    scopes: ["client"],
    key: { client: ["client", "keep"] },
    toValue: int("keep"),
    value: "N",
    help: "with --atomic, trees kept for --rollback (client.keep, default 3)",
  },
  {
    name: "rollback",
    type: "boolean",
    scopes: ["client"],
    help: "with --atomic, switch back to the previous tree",
  },
  {
    name: "adopt",
    type: "boolean",
    scopes: ["client"],
    help: "take over an existing non-empty dest once (drops its .git)",
  },
  {
    name: "check",
    type: "boolean",
    scopes: ["client"],
    help: "dry run: list drift, exit 1 if any, change nothing",
  },
  {
    name: "json",
    type: "boolean",
    scopes: ["client", "fleet"],
    help: "with --check (or fleet): print JSON",
  },
  {
    name: "watch",
    type: "boolean",
    scopes: ["client"],
    help: "keep running; sync within seconds of each new version",
  },
  {
    name: "verbose",
    short: "v",
    type: "boolean",
    scopes: ["client", "publish"],
    help: "show progress and a summary line",
  },
  // publish
  {
    name: "repo",
    type: "string",
    scopes: ["publish"],
    key: { publish: ["publisher", "repo"] },
    value: "PATH",
    help: "the git repository (bare or not) to publish from (publisher.repo)",
  },
  {
    name: "ref",
    type: "string",
    scopes: ["publish"],
    key: { publish: ["publisher", "ref"] },
    value: "REF",
    help: "branch, tag or commit to publish (publisher.ref, default main)",
  },
  {
    name: "force",
    type: "boolean",
    scopes: ["publish"],
    help: "publish even an older commit (rollback); it gets a new, higher seq",
  },
  // demo
  {
    name: "duration",
    type: "string",
    scopes: ["demo"],
    value: "DUR",
    help: "stop by itself after this long (default: run until Ctrl-C)",
  },
  {
    name: "keep-dir",
    type: "boolean",
    scopes: ["demo"],
    help: "keep the demo's temporary directory",
  },
];

/** What the command line asks for. */
export type Command =
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "role"; role: Role; opts: CommonOptions }
  | { kind: "check-config"; role?: Role; opts: CommonOptions }
  | { kind: "render"; what: typeof RENDER_KINDS[number]; role?: Role; opts: CommonOptions }
  | { kind: "demo"; opts: CommonOptions }
  | { kind: "fleet"; opts: CommonOptions };

const SUBCOMMANDS = ["check-config", "render", "demo", "fleet", "help"] as const;

/**
 * Parses argv.
 *
 * @throws {UsageError} for an unknown flag (with a did-you-mean), a flag that
 * does not apply to the role, a missing role, a bad value.
 *
 * @example
 * ```ts
 * const cmd = parseCli(["--role", "replica", "-c", "fleet.yaml", "--name", "rsync2"]);
 * // { kind: "role", role: "replica", opts: { config: "fleet.yaml", name: "rsync2", … } }
 * ```
 */
export function parseCli(argv: string[]): Command {
  const specs = Object.fromEntries(FLAGS.map((f) => [f.name, f]));
  const { values, positionals } = tokenize(argv, specs, (flag) => {
    const near = closest(flag.replace(/^-+/, ""), FLAGS.map((f) => f.name));
    return `unknown flag "${flag}"${near ? ` (did you mean "--${near}"?)` : ""}; see fanout --help`;
  });
  const sub = positionals[0];
  if (sub !== undefined && !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    if ((ROLES as readonly string[]).includes(sub)) {
      throw new UsageError(`unexpected "${sub}": a role is given with --role ${sub}`);
    }
    const near = closest(sub, [...SUBCOMMANDS]);
    throw new UsageError(
      `unknown command "${sub}"${near ? ` (did you mean "${near}"?)` : ""}; see fanout --help`,
    );
  }
  const roleText = values.role as string | undefined;
  if (roleText !== undefined && !(ROLES as readonly string[]).includes(roleText)) {
    const near = closest(roleText, [...ROLES]);
    throw new UsageError(
      `unknown role "${roleText}"${near ? ` (did you mean "${near}"?)` : ""}: expected one of ${
        ROLES.join(", ")
      }`,
    );
  }
  const role = roleText as Role | undefined;

  if (values.version) return { kind: "version" };
  if (sub === "help") return { kind: "help", text: helpText(positionals[1] ?? role) };
  if (values.help) return { kind: "help", text: helpText(sub ?? role) };

  const scope: Scope | undefined = sub === "check-config" || sub === "render" || sub === "demo" ||
      sub === "fleet"
    ? sub
    : role;
  if (!scope) {
    throw new UsageError(
      "no role given: pass --role primary|replica|proxy|client|publish (see fanout --help)",
    );
  }
  // check-config and render describe a role, so they accept that role's flags.
  const accepts = (f: FlagSpec) =>
    f.scopes === "all" || f.scopes.includes(scope) ||
    (role !== undefined && f.scopes.includes(role));
  for (const f of FLAGS) {
    if (values[f.name] !== undefined && !accepts(f)) {
      throw new UsageError(
        `--${f.name} does not apply to ${describeScope(scope)}; see fanout ${
          scope === role ? `--role ${role}` : scope
        } --help`,
      );
    }
  }
  const extra = sub ? positionals.slice(sub === "render" ? 2 : 1) : positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);

  const opts = commonOptions(values, role);
  switch (sub) {
    case "check-config":
      return { kind: "check-config", role, opts };
    case "render": {
      const what = positionals[1];
      if (!what) throw new UsageError(`render what? one of ${RENDER_KINDS.join(", ")}`);
      if (!(RENDER_KINDS as readonly string[]).includes(what)) {
        const near = closest(what, [...RENDER_KINDS]);
        throw new UsageError(
          `cannot render "${what}"${near ? ` (did you mean "${near}"?)` : ""}: expected one of ${
            RENDER_KINDS.join(", ")
          }`,
        );
      }
      return { kind: "render", what: what as typeof RENDER_KINDS[number], role, opts };
    }
    case "demo":
      return { kind: "demo", opts };
    case "fleet":
      return { kind: "fleet", opts };
  }
  return { kind: "role", role: role!, opts };
}

function describeScope(scope: Scope): string {
  return (ROLES as readonly string[]).includes(scope) ? `--role ${scope}` : `"fanout ${scope}"`;
}

function commonOptions(
  values: Record<string, string | boolean | string[] | undefined>,
  role: Role | undefined,
): CommonOptions {
  const logFormat = (values["log-format"] as string | undefined) ?? "logfmt";
  if (logFormat !== "logfmt" && logFormat !== "json") {
    throw new UsageError(`--log-format: expected logfmt or json, got "${logFormat}"`);
  }
  const logLevel = (values["log-level"] as string | undefined) ?? "info";
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw new UsageError(`--log-level: expected debug, info, warn or error, got "${logLevel}"`);
  }
  const overrides: Override[] = [];
  for (const f of FLAGS) {
    const v = values[f.name];
    if (v === undefined || !f.key || !role) continue;
    const path = f.key[role];
    if (!path) continue;
    let value: unknown = v;
    if (typeof v === "string" && f.toValue) value = f.toValue(v);
    else if (typeof v === "boolean" && f.toValue) value = f.toValue("");
    if (typeof value === "string" && /dir|path|dest|repo|backup/.test(f.name)) {
      value = absolutePath(value);
    }
    overrides.push({ path, value, flag: `--${f.name}` });
  }
  for (const s of (values.set as string[] | undefined) ?? []) overrides.push(parseSet(s));
  return {
    config: values.config as string | undefined,
    name: values.name as string | undefined,
    logFormat,
    logLevel: logLevel as CommonOptions["logLevel"],
    overrides,
    flags: values,
  };
}

function absolutePath(p: string): string {
  if (p.startsWith("/")) return p;
  const parts: string[] = [];
  for (const part of `${Deno.cwd()}/${p}`.split("/")) {
    if (part === "..") parts.pop();
    else if (part && part !== ".") parts.push(part);
  }
  return "/" + parts.join("/");
}

/** `--set push.debounce=50ms` → an override of `push.debounce`; the value is YAML-ish. */
function parseSet(s: string): Override {
  const eq = s.indexOf("=");
  if (eq <= 0) throw new UsageError(`--set: expected KEY=VALUE, got "${s}"`);
  const path = s.slice(0, eq).split(".").flatMap((part) => {
    const m = /^([\w-]+)((?:\[\d+\])*)$/.exec(part);
    if (!m) throw new UsageError(`--set: bad key "${s.slice(0, eq)}"`);
    const idx = [...m[2].matchAll(/\[(\d+)\]/g)].map((x) => Number(x[1]));
    return [m[1], ...idx];
  });
  const raw = s.slice(eq + 1);
  let value: unknown = raw;
  if (raw === "true" || raw === "false") value = raw === "true";
  else if (/^-?\d+$/.test(raw)) value = Number(raw);
  else if (raw.startsWith("[")) {
    value = raw.slice(1, -1).split(",").map((x) => x.trim()).filter(Boolean);
  }
  return { path, value, flag: `--set ${s.slice(0, eq)}` };
}

// ---------------------------------------------------------------------------
// help

const ROLE_HELP: Record<Role, { what: string; examples: string[] }> = {
  primary: {
    what:
      "the primary rsync server: receives publishes, watches its tree, pushes every change to its replicas",
    examples: ["fanout --role primary -c /etc/fanout/fanout.yaml"],
  },
  replica: {
    what:
      "a replica rsync server: serves the tree, accepts pushes from its upstream only; relays to its own downstream replicas",
    examples: ["fanout --role replica -c /etc/fanout/fanout.yaml --name rsync2"],
  },
  proxy: {
    what: "a health-checked, version-aware TCP round-robin balancer in front of every rsync server",
    examples: ["fanout --role proxy -c /etc/fanout/fanout.yaml"],
  },
  client: {
    what: "mirror the tree into a local directory (from cron); exits 0 silently when in sync",
    examples: [
      "fanout --role client -c /etc/fanout/fanout.yaml",
      "fanout --role client --source rsync://lb:873/plugins/ --dest /apps/dat/plugins --no-splay",
      "fanout --role client -c fanout.yaml --check          # list drift, exit 1 if any",
      "fanout --role client -c fanout.yaml --adopt --no-splay  # take over a git checkout once",
    ],
  },
  publish: {
    what:
      "export a commit's tree (no .git) and push it to the primary, then write the version marker",
    examples: [
      "fanout --role publish -c /etc/fanout/fanout.yaml --repo /srv/git/plugins.git --ref main",
      "fanout --role publish -c /etc/fanout/fanout.yaml --ref 1a2b3c4 --force   # roll back",
    ],
  },
};

const SUB_HELP: Record<string, { usage: string; what: string; examples: string[] }> = {
  "check-config": {
    usage: "fanout check-config -c FILE [--role R] [--name N]",
    what:
      "validate the fleet file and print what each host will run and listen on; with --role, also check the files that role needs (secrets, password, rsync)",
    examples: [
      "fanout check-config -c fanout.yaml",
      "fanout check-config -c fanout.yaml --role replica --name rsync2",
    ],
  },
  render: {
    usage: `fanout render <${RENDER_KINDS.join("|")}> [--role R] -c FILE`,
    what: "print a config file for a third-party tool, derived from the fleet file",
    examples: [
      "fanout render rsyncd --role replica --name rsync2 -c fanout.yaml",
      "fanout render systemd --role primary -c fanout.yaml > /etc/systemd/system/fanout-primary.service",
      "fanout render nginx -c fanout.yaml",
      "fanout render cron -c fanout.yaml > /etc/cron.d/fanout",
      "fanout render post-receive -c fanout.yaml > /srv/git/plugins.git/hooks/post-receive",
      "fanout render report-token -c fanout.yaml --name web1 > web1.token   # on the primary; install as web1's auth.report_token_file",
    ],
  },
  demo: {
    usage: "fanout demo [--duration 60s] [--keep-dir]",
    what:
      "start a whole fleet on loopback (primary, two replicas, proxy, two clients), publish a commit, change it, and show each hop live",
    examples: ["fanout demo", "fanout demo --duration 30s"],
  },
  fleet: {
    usage: "fanout fleet -c FILE [--json]",
    what:
      "show which host has which version, from the primary's fleet view; exit 0 when every server and client is current, 1 when any is behind, failing, silent or unknown, 3 when the primary cannot be reached",
    examples: [
      "fanout fleet -c fanout.yaml",
      "fanout fleet -c fanout.yaml --json | jq '.clients[] | select(.state != \"current\")'",
      "until fanout fleet -c fanout.yaml >/dev/null; do sleep 10; done   # wait for a publish to land",
    ],
  },
};

function flagLines(scope: Scope | "global"): string[] {
  return FLAGS.filter((f) =>
    scope === "global" ? f.scopes === "all" : f.scopes !== "all" && f.scopes.includes(scope)
  ).map((f) => {
    const left = `${f.short ? `-${f.short}, ` : "    "}--${f.name}${f.value ? ` ${f.value}` : ""}`;
    return `  ${left.padEnd(28)} ${f.help}`;
  });
}

/** The help text for `topic` (a role, a subcommand), or the global help. */
export function helpText(topic?: string): string {
  if (topic && topic in ROLE_HELP) {
    const h = ROLE_HELP[topic as Role];
    return [
      `fanout --role ${topic}: ${h.what}`,
      "",
      "Flags for this role:",
      ...flagLines(topic as Role),
      "",
      "Flags for every role:",
      ...flagLines("global"),
      "",
      "Examples:",
      ...h.examples.map((e) => `  ${e}`),
      "",
    ].join("\n");
  }
  if (topic && topic in SUB_HELP) {
    const h = SUB_HELP[topic];
    return [
      `${h.usage}`,
      "",
      h.what,
      "",
      ...(flagLines(topic as Scope).length ? ["Flags:", ...flagLines(topic as Scope), ""] : []),
      "Examples:",
      ...h.examples.map((e) => `  ${e}`),
      "",
    ].join("\n");
  }
  return [
    `fanout ${VERSION}: keep one code directory identical on hundreds of hosts, from git, over rsync.`,
    "",
    "Usage:",
    "  fanout --role primary  -c FILE              long-running: rsync daemon, watch, push to replicas",
    "  fanout --role replica  -c FILE --name NAME  long-running: rsync daemon; relays to its downstreams",
    "  fanout --role proxy    -c FILE              long-running: health-checked TCP balancer",
    "  fanout --role client   -c FILE              one-shot (cron): mirror the tree; also --check, --watch",
    "  fanout --role publish  -c FILE --repo R --ref main   one-shot (git hook): publish a commit",
    "  fanout render <rsyncd|systemd|nginx|haproxy|cron|post-receive|report-token> [--role R] -c FILE",
    "  fanout check-config -c FILE [--role R]      validate; print what each host will do",
    "  fanout fleet -c FILE                        which host has which version",
    "  fanout demo                                 the whole topology on loopback, live",
    "  fanout --version | --help | --role R --help | <command> --help",
    "",
    "Flags for every role:",
    ...flagLines("global"),
    "",
    "Exit codes: 0 ok, 1 drift (--check, fleet), 2 usage/config/environment error,",
    "3 transfer failed (rsync's code in the message), 4 refused for safety, 5 another run holds the lock.",
    "",
  ].join("\n");
}
