/**
 * The command line: every flag, which roles it applies to, and the help
 * texts; a flag that sets a fleet-file key comes from the key's declaration
 * (lib/config/keys.ts). `parseCli` turns argv into one typed
 * {@linkcode Command}, switches read once into typed options, or throws a
 * {@linkcode UsageError} with one clear line.
 *
 * @module
 */

import { durationTooLong, parseDuration, UsageError, VERSION } from "../core/mod.ts";
import {
  closest,
  type CommonOptions,
  type FleetKey,
  fleetKeys,
  type Override,
  type Role,
  ROLES,
  shownDefault,
} from "../config/mod.ts";
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

type Scope = Role | "check-config" | "render" | "demo" | "fleet" | "keygen";

interface FlagSpec {
  name: string;
  short?: string;
  type: "string" | "boolean";
  multiple?: boolean;
  /** Where the flag is accepted; "all" means everywhere. */
  scopes: Scope[] | "all";
  value?: string;
  /** The help line; a key flag's comes from the key of the role shown. */
  help?: string;
  /** The fleet-file key it overrides, per role (lib/config/keys.ts declares them). */
  keys?: Partial<Record<Role, FleetKey>>;
}

/** Flags of every command that set no fleet-file key. */
const COMMON_FLAGS: FlagSpec[] = [
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
];

/** Flags that set no fleet-file key, listed after the key flags. */
const SWITCHES: FlagSpec[] = [
  { name: "help", short: "h", type: "boolean", scopes: "all", help: "show help" },
  { name: "version", short: "V", type: "boolean", scopes: "all", help: "print the version" },
  {
    name: "allow-mass-delete",
    type: "boolean",
    scopes: ["primary", "replica"],
    help: "lift the mass-delete guard until every replica has had one whole push",
  },
  {
    name: "no-splay",
    type: "boolean",
    scopes: ["client"],
    help: "start at once (for interactive runs)",
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
  {
    name: "force",
    type: "boolean",
    scopes: ["publish"],
    help: "publish even an older commit (rollback); it gets a new, higher seq",
  },
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
  {
    name: "out",
    type: "string",
    scopes: ["keygen"],
    value: "FILE",
    help:
      "where to write the new private key (default: release.signing_key_file with -c, else /etc/fanout/release.key)",
  },
];

/** One flag per flag name the key declarations give, with the key it sets per role. */
function keyFlags(): FlagSpec[] {
  const byName = new Map<string, FlagSpec>();
  for (const k of fleetKeys()) {
    if (!k.flag) continue;
    const { name, placeholder, roles } = k.flag;
    let f = byName.get(name);
    if (!f) {
      f = {
        name,
        type: placeholder === null ? "boolean" : "string",
        scopes: roles === "all" ? "all" : [],
        value: placeholder ?? undefined,
        keys: {},
      };
      byName.set(name, f);
    }
    for (const role of roles === "all" ? ROLES : roles) {
      if (f.keys![role]) throw new Error(`--${name} sets two keys for --role ${role}`);
      f.keys![role] = k;
      if (f.scopes !== "all" && !f.scopes.includes(role)) f.scopes.push(role);
    }
  }
  return [...byName.values()];
}

/** Every flag fanout knows. */
export const FLAGS: FlagSpec[] = [...COMMON_FLAGS, ...keyFlags(), ...SWITCHES];

/** What the command line asks for. */
export type Command =
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "role"; role: Role; opts: CommonOptions }
  | { kind: "check-config"; role?: Role; opts: CommonOptions }
  | { kind: "render"; what: typeof RENDER_KINDS[number]; role?: Role; opts: CommonOptions }
  | { kind: "demo"; opts: CommonOptions }
  | { kind: "fleet"; opts: CommonOptions }
  | { kind: "keygen"; out?: string; opts: CommonOptions };

const SUBCOMMANDS = ["check-config", "render", "demo", "fleet", "keygen", "help"] as const;

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

  // Past "help", a subcommand is one of the others (checked above).
  const scope: Scope | undefined =
    (sub as Exclude<typeof SUBCOMMANDS[number], "help"> | undefined) ?? role;
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

  const opts = optionsFrom(values, role);
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
    case "keygen":
      return { kind: "keygen", out: values.out as string | undefined, opts };
  }
  return { kind: "role", role: role!, opts };
}

function describeScope(scope: Scope): string {
  return (ROLES as readonly string[]).includes(scope) ? `--role ${scope}` : `"fanout ${scope}"`;
}

function optionsFrom(
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
    const key = role && f.keys?.[role];
    if (v === undefined || !key) continue;
    overrides.push({ path: key.flag!.at, value: flagValue(key, v), flag: `--${f.name}` });
  }
  for (const s of (values.set as string[] | undefined) ?? []) overrides.push(parseSet(s));
  const on = (name: string) => values[name] === true;
  return {
    config: values.config as string | undefined,
    name: values.name as string | undefined,
    logFormat,
    logLevel: logLevel as CommonOptions["logLevel"],
    overrides,
    allowMassDelete: on("allow-mass-delete"),
    noSplay: on("no-splay"),
    check: on("check"),
    watch: on("watch"),
    rollback: on("rollback"),
    adopt: on("adopt"),
    json: on("json"),
    verbose: on("verbose"),
    force: on("force"),
    duration: durationOf(values.duration as string | undefined),
    keepDir: on("keep-dir"),
  };
}

/** `--duration` in ms, or null when not given. */
function durationOf(text: string | undefined): number | null {
  if (!text) return null;
  const tooLong = durationTooLong(text);
  if (tooLong) throw new UsageError(`--duration: "${text}" ${tooLong}`);
  const ms = parseDuration(text);
  if (ms === null) {
    throw new UsageError(`--duration: expected a duration like "30s" or "2m", got "${text}"`);
  }
  return ms;
}

/** The fleet-file value a key flag's `v` stands for. */
function flagValue(key: FleetKey, v: string | boolean | string[]): unknown {
  const reading = key.decl.type.flag!;
  return reading === "switch" ? true : reading.read(v as string, `--${key.flag!.name}`);
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
  keygen: {
    usage: "fanout keygen [-c FILE] [--out FILE]",
    what:
      "make an Ed25519 key pair that signs versions: write the private key to a new file of mode 600 (never over an existing one) and print the public key to add under release.public_keys in the fleet file",
    examples: [
      "fanout keygen -c /etc/fanout/fanout.yaml      # writes release.signing_key_file",
      "fanout keygen --out /etc/fanout/release-2027.key   # a new key, for a rotation",
    ],
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
    return `  ${left.padEnd(28)} ${f.help ?? keyHelp(f, scope)}`;
  });
}

/** A key flag's help: the doc of the key it sets in `scope`, its path and default. */
function keyHelp(f: FlagSpec, scope: Scope | "global"): string {
  const key = f.keys![scope as Role] ?? Object.values(f.keys!)[0]!;
  const dflt = shownDefault(key.decl);
  return `${key.decl.doc.replaceAll("`", "")} (${key.path}${dflt ? `, default ${dflt}` : ""})`;
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
    "  fanout keygen [-c FILE] [--out FILE]        a key pair to sign versions with",
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
