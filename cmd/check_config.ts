/**
 * `fanout check-config`: validate the fleet file and print, per host, what it
 * will run and listen on, and whether versions are signed. With `--role`,
 * also check what that role needs on this host: its secrets, rsync, its
 * tree, and for the publisher its signing key.
 *
 * @module
 */

import {
  checkSecretFiles,
  type CommonOptions,
  downstreamsOf,
  type Fleet,
  fleetFor,
  readReportToken,
  type Role,
  selectServer,
  servers,
  writersOf,
} from "../lib/config/mod.ts";
import { formatDuration, formatHostPort } from "../lib/core/mod.ts";
import { requireRsync } from "../lib/rsync/mod.ts";
import {
  daemonIdentity,
  knowsProxyProtocolHosts,
  proxyProtocolPeers,
  renderRsyncdConf,
} from "../lib/rsyncd/mod.ts";
import { checkPublisher } from "../lib/publish/mod.ts";
import { parsePublicKey, UNSIGNED_WARNING } from "../lib/release/mod.ts";

/**
 * Prints the plan of the fleet; returns 0 when valid.
 *
 * @throws {ConfigError} / {EnvironmentError} with what is wrong.
 */
export async function checkConfig(opts: CommonOptions, role?: Role): Promise<number> {
  const fleet = await fleetFor(opts, role);
  const lines = describeFleet(fleet);
  if (role) {
    const { checked, unchecked } = await checkRoleHere(fleet, role, opts.name);
    lines.push(
      ...checked,
      `--role ${role}${opts.name ? ` --name ${opts.name}` : ""}: ready on this host` +
        ` (not checked: ${unchecked.join(", ")})`,
    );
  }
  console.log(lines.join("\n"));
  return 0;
}

/** One line per host: what it runs, where it listens, whom it pushes to. */
export function describeFleet(fleet: Fleet): string[] {
  const lines = [
    `${fleet.file ?? "flags"}: valid. tree "${fleet.tree}": read module "${fleet.modules.read}", ` +
    `write module "${fleet.modules.write}", auth user "${fleet.auth.user}", state under ${fleet.stateDir}`,
  ];
  const row = (kind: string, name: string, text: string) =>
    `  ${kind.padEnd(8)} ${name.padEnd(10)} ${text}`;
  const p = fleet.publisher;
  if (p) {
    lines.push(row(
      "publish",
      p.name,
      `exports ${
        p.repo ?? "(--repo)"
      } at ${p.ref}, pushes from ${p.address} to ${fleet.primary.name} ${fleet.modules.write}`,
    ));
  }
  for (const s of servers(fleet)) {
    const writers = writersOf(fleet, s);
    const from = s.kind === "primary" ? p?.name : s.upstream;
    const downs = downstreamsOf(fleet, s.name).map((d) => d.name);
    const proxied = fleet.proxy?.proxyProtocol && fleet.proxy.backends.includes(s.name);
    lines.push(row(
      s.kind,
      s.name,
      `rsync daemon ${formatHostPort(s.listen)}, health ${
        formatHostPort(s.health)
      }, tree ${s.path}; ` +
        (writers.length ? `writes from ${from} (${writers.join(" ")})` : "no writes allowed") +
        (downs.length ? `; pushes to ${downs.join(", ")}` : "") +
        (proxied ? `; PROXY-protocol read daemon ${formatHostPort(s.proxyListen)}` : ""),
    ));
  }
  const x = fleet.proxy;
  if (x) {
    lines.push(row(
      "proxy",
      x.name,
      `listens ${formatHostPort(x.listen)}, health ${formatHostPort(x.health)}, backends ${
        x.backends.join(", ")
      } ` +
        `(checks every ${formatDuration(x.interval)}, fall ${x.fall}, rise ${x.rise}` +
        `${x.proxyProtocol ? ", PROXY protocol" : ""})`,
    ));
  }
  const c = fleet.client;
  lines.push(row(
    "client",
    "(each)",
    `mirrors ${c.source ?? "(set client.source)"} into ${c.dest ?? "(set client.dest)"} ` +
      `(splay ${formatDuration(c.splay)}, max_delete ${c.maxDelete}${c.atomic ? ", atomic" : ""})`,
  ));
  lines.push(row("release", "(all)", describeRelease(fleet)));
  return lines;
}

/**
 * Whether versions are signed, and by which keys; or the warning every role
 * gives when they are not.
 *
 * @example
 * ```ts
 * describeRelease(fleet);
 * // "versions are signed: clients accept keys 1f0c5e7a9b2d4c68; the publisher signs with /etc/fanout/release.key"
 * ```
 */
export function describeRelease(fleet: Fleet): string {
  const keys = fleet.release.publicKeys.map((k) => parsePublicKey(k).id);
  if (!keys.length) return `warning: ${UNSIGNED_WARNING}`;
  return `versions are signed: clients accept ${keys.length === 1 ? "key" : "keys"} ${
    keys.join(", ")
  }; the publisher signs with ${fleet.release.signingKeyFile}`;
}

/**
 * Runs the start-up checks of `role` that change nothing on the host (the
 * same functions the role calls); returns lines on what they found worth
 * saying, and what only a start can tell.
 */
async function checkRoleHere(
  fleet: Fleet,
  role: Role,
  name?: string,
): Promise<{ checked: string[]; unchecked: string[] }> {
  const only = (unchecked: string[]) => ({ checked: [], unchecked });
  if (role === "publish") {
    const { pub, repo, signingKey } = await checkPublisher(fleet);
    return {
      checked: signingKey
        ? [
          `signing key ${fleet.release.signingKeyFile}: key ${signingKey.publicKey.id}, ` +
          "listed in release.public_keys, readable by its owner only",
        ]
        : [],
      unchecked: [`whether ${repo} holds ${pub.ref}`, "whether the primary takes the push"],
    };
  }
  const rsyncVersion = await requireRsync(fleet.rsync.path);
  if (role === "primary" || role === "replica") {
    const self = selectServer(fleet, role, name);
    // The daemon behind a PROXY-protocol proxy needs the proxy's IP with rsync 3.5+.
    const proxied = fleet.proxy?.proxyProtocol && fleet.proxy.backends.includes(self.name);
    if (proxied && knowsProxyProtocolHosts(rsyncVersion)) proxyProtocolPeers(fleet, self);
    await checkSecretFiles(fleet, {
      daemon: writersOf(fleet, self).length > 0,
      pusher: downstreamsOf(fleet, self.name).length > 0,
    });
    // A bad report token stops the primary; a missing one only turns reports off.
    if (role === "primary") await readReportToken(fleet);
    // The tree must exist: its owner is who the daemon runs as.
    const id = await daemonIdentity(fleet, self);
    // Every value must render (the renderer refuses what rsyncd would misread).
    renderRsyncdConf(fleet, self, id);
    return only(["whether the ports are free", `whether ${self.stateDir} can be written`]);
  }
  if (role === "proxy") return only(["whether the ports are free", "whether the backends answer"]);
  return only(["whether the source answers", `whether ${fleet.client.dest} can be written`]);
}
