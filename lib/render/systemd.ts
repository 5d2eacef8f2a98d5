/**
 * `fanout render systemd --role primary|replica|proxy [--name N]`: the unit
 * that runs a long-running role. The one-shot roles have their own renderers
 * (`render cron` for clients, `render post-receive` for publish).
 *
 * Servers run as root, because their rsync daemon binds port 873, chroots into
 * the tree and drops to the tree's uid for every connection; the unit keeps
 * only the capabilities that takes ({@linkcode SERVER_CAPABILITIES}). The
 * proxy needs nothing but its port.
 *
 * @module
 */

import template from "./templates/fanout.service" with { type: "text" };
import type { RenderInput } from "./input.ts";
import { type Fleet, renderedBy, type Role, selectServer } from "../config/mod.ts";
import { ConfigError, renderTemplate, UsageError } from "../core/mod.ts";

/**
 * What a server's unit may keep of root's capabilities, and why:
 * - `CAP_NET_BIND_SERVICE`: the daemon listens on port 873.
 * - `CAP_SYS_CHROOT`, `CAP_SETUID`, `CAP_SETGID`: each connection chroots
 *   into the tree and drops to `uid`/`gid` (setgroups needs CAP_SETGID).
 * - `CAP_CHOWN`, `CAP_FOWNER`, `CAP_FSETID`: when the daemon stays root
 *   (`uid: root`), receiving a push sets owners, modes and times of files it
 *   does not own, setgid bits included.
 * - `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`: fanout (root) reads the whole
 *   tree to push it, writes state into dirs it may not own.
 * - `CAP_KILL`: stopping the daemon's process group reaches per-connection
 *   children that already run as `uid`.
 *
 * `NoNewPrivileges` does not get in the way: dropping privileges is not gaining them.
 */
export const SERVER_CAPABILITIES = [
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_SETUID",
  "CAP_SETGID",
  "CAP_CHOWN",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_KILL",
] as const;

/** The proxy only listens (on port 873 when it replaces nginx) and connects. */
export const PROXY_CAPABILITIES = ["CAP_NET_BIND_SERVICE"] as const;

/** Seconds systemd waits for a server to stop before SIGKILL (fanout itself kills rsync after 5 s). */
const SERVER_STOP_TIMEOUT_S = 20;

/**
 * Renders the unit of `--role primary`, `--role replica --name N` or `--role proxy`.
 *
 * @throws {UsageError} without a role, or for the one-shot roles (client,
 * publish), naming the renderer they need instead.
 * @throws {ConfigError} when the host is not in the fleet file, or a path
 * cannot be written into a unit file.
 *
 * @example
 * ```ts
 * const unit = renderSystemd({ fleet, role: "replica", opts }); // opts.name === "rsync2"
 * // ExecStart=/usr/local/bin/fanout --role replica -c /etc/fanout/fanout.yaml --name rsync2
 * ```
 */
export function renderSystemd({ fleet, role, opts }: RenderInput): string {
  checkSystemdRole(role);
  const file = fleet.file;
  if (!file) throw new UsageError("render systemd needs the fleet file: pass -c FILE");

  const u = role === "proxy" ? proxyUnit(fleet) : serverUnit(fleet, role, opts.name);
  const args = ["--role", role, ...(u.name ? ["--name", u.name] : [])];
  const rw = u.writable;
  const stateUnderVarLib = u.stateDir.startsWith("/var/lib/") && !/\/\.\.?(\/|$)/.test(u.stateDir);
  for (const [key, path] of [["binary", fleet.binary], ...u.keys] as [string, string][]) {
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f]/.test(path)) {
      throw new ConfigError(file, [{
        path: key,
        message: `a unit file cannot hold a path with control characters: ${JSON.stringify(path)}`,
      }]);
    }
  }
  const under = (dirs: string[]) =>
    rw.some((p) => dirs.some((d) => p === d || p.startsWith(`${d}/`)));
  return renderTemplate(template, {
    header: renderedBy(fleet),
    args: args.join(" "),
    fleet_file: file,
    unit: `fanout-${role}.service`,
    description: escapeSpecifiers(u.description),
    exec_start: [fleet.binary, ...args.slice(0, 2), "-c", file, ...args.slice(2)]
      .map(execWord).join(" "),
    stop_timeout: `${u.stopTimeoutS}s`,
    why_root: u.whyRoot,
    capabilities: u.capabilities.join(" "),
    // systemd creates a state dir under /var/lib itself (and makes it writable);
    // elsewhere a privileged pre-start makes it, so it can be bind-mounted writable.
    state_directory: stateUnderVarLib ? pathWord(u.stateDir.slice("/var/lib/".length)) : "",
    mkdir: stateUnderVarLib ? "" : execWord(u.stateDir),
    // "-": a missing tree is fanout's to report, in words, not a namespace error.
    read_write_paths: rw.map((p) => (p === u.stateDir ? pathWord(p) : `-${pathWord(p)}`)).join(" "),
    // A tree or state dir under a home stays reachable (read-only, but for itself);
    // one under /tmp would be hidden by a private /tmp.
    protect_home: under(["/home", "/root", "/run/user"]) ? "read-only" : "yes",
    private_tmp: under(["/tmp", "/var/tmp"]) ? "no" : "yes",
  });
}

/**
 * Accepts the long-running roles only.
 *
 * @throws {UsageError} for no role, and for client and publish, naming the
 * renderer they need instead.
 */
function checkSystemdRole(role?: Role): asserts role is "primary" | "replica" | "proxy" {
  if (role === "client") {
    throw new UsageError(
      `render systemd is for the long-running roles (primary, replica, proxy); --role client runs from cron: use "fanout render cron --role client -c FILE"`,
    );
  }
  if (role === "publish") {
    throw new UsageError(
      `render systemd is for the long-running roles (primary, replica, proxy); --role publish runs from the git server's post-receive hook: use "fanout render post-receive -c FILE"`,
    );
  }
  if (role !== "primary" && role !== "replica" && role !== "proxy") {
    throw new UsageError(
      "render systemd needs --role primary, --role replica --name NAME, or --role proxy",
    );
  }
}
renderSystemd.checkRole = checkSystemdRole;

interface UnitFacts {
  name: string | null;
  description: string;
  stateDir: string;
  writable: string[];
  /** Fleet-file keys of the paths written into the unit, for messages. */
  keys: [string, string][];
  capabilities: readonly string[];
  whyRoot: string[];
  stopTimeoutS: number;
}

function serverUnit(fleet: Fleet, role: "primary" | "replica", name?: string): UnitFacts {
  const self = selectServer(fleet, role, name);
  const at = role === "primary" ? "primary" : `replicas[${fleet.replicas.indexOf(self)}]`;
  const uid = fleet.uid ?? `the owner of ${self.path}`;
  return {
    name: role === "replica" ? self.name : null,
    description: `fanout ${role} ${self.name}: rsync daemon for tree ${fleet.tree} at ${self.path}`,
    stateDir: self.stateDir,
    writable: [self.path, self.stateDir],
    keys: [[`${at}.path`, self.path], ["state_dir", self.stateDir]],
    capabilities: SERVER_CAPABILITIES,
    whyRoot: [
      `Runs as root: its rsync daemon binds port ${self.listen.port}, chroots into the tree and`,
      `drops to ${uid} (uid) for every connection. The capabilities kept are what that takes`,
      "(see SERVER_CAPABILITIES in lib/render/systemd.ts); NoNewPrivileges does not hinder it.",
    ],
    stopTimeoutS: SERVER_STOP_TIMEOUT_S,
  };
}

function proxyUnit(fleet: Fleet): UnitFacts {
  const proxy = fleet.proxy;
  if (!proxy) {
    throw new ConfigError(fleet.file ?? "flags", [{
      path: "proxy",
      message: "missing: render systemd --role proxy needs a proxy section",
    }]);
  }
  return {
    name: null,
    description: `fanout proxy ${proxy.name}: rsync balancer for tree ${fleet.tree}`,
    stateDir: proxy.stateDir,
    writable: [proxy.stateDir],
    keys: [["state_dir", proxy.stateDir]],
    capabilities: PROXY_CAPABILITIES,
    whyRoot: [
      `Runs as root without root's powers: it keeps only the capability to listen on port ${proxy.listen.port}.`,
    ],
    // Draining connections may take drain_timeout; then fanout exits by itself.
    stopTimeoutS: Math.ceil(proxy.drainTimeout / 1000) + 10,
  };
}

/** `%` starts a specifier everywhere in a unit file: double it. */
function escapeSpecifiers(s: string): string {
  return s.replaceAll("%", "%%");
}

/** One word of a path list (ReadWritePaths=, StateDirectory=), quoted when it must be. */
function pathWord(s: string): string {
  return quoteWord(escapeSpecifiers(s));
}

/** One word of a command line (ExecStart=): `$` would also expand a variable there. */
function execWord(s: string): string {
  return quoteWord(escapeSpecifiers(s).replaceAll("$", "$$$$"));
}

function quoteWord(s: string): string {
  return /[\s"'\\;]/.test(s) ? `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"` : s;
}
