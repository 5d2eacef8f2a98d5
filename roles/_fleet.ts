// Loads the fleet file a role runs from and checks the role has what it needs.
import type { CommonOptions, Role } from "../lib/cli.ts";
import { ConfigError, UsageError } from "../lib/errors.ts";
import { flagsOnlyFleet, type Fleet, loadFleet } from "../lib/config.ts";

/** Where the fleet file is looked for when `-c` is not given. */
export const DEFAULT_FLEET_FILE = "/etc/fanout/fanout.yaml";

/**
 * The fleet for `role`: from `-c`, else the default file, else (client only)
 * from flags alone.
 *
 * @throws {UsageError} when there is no fleet file to read.
 * @throws {ConfigError} when it is invalid or lacks the role's section.
 */
export async function fleetFor(opts: CommonOptions, role?: Role): Promise<Fleet> {
  const self = role ? { role, name: opts.name } : undefined;
  let fleet: Fleet;
  if (opts.config) fleet = await loadFleet(opts.config, { overrides: opts.overrides, self });
  else if (exists(DEFAULT_FLEET_FILE)) {
    fleet = await loadFleet(DEFAULT_FLEET_FILE, { overrides: opts.overrides, self });
  } else if (role === "client" && opts.flags.source && opts.flags.dest) {
    fleet = await flagsOnlyFleet(opts.overrides);
  } else {
    throw new UsageError(
      `no fleet file: pass -c FILE (${DEFAULT_FLEET_FILE} does not exist)` +
        (role === "client" ? ", or --source URL --dest DIR" : ""),
    );
  }
  if (role) requireSection(fleet, role);
  return fleet;
}

function requireSection(fleet: Fleet, role: Role): void {
  const file = fleet.file ?? "flags";
  const missing = (path: string, message: string) => {
    throw new ConfigError(file, [{ path, message }]);
  };
  if (role === "proxy" && !fleet.proxy) {
    missing("proxy", "missing: --role proxy needs a proxy section (listen, health, backends)");
  }
  if (role === "publish" && !fleet.publisher) {
    missing(
      "publisher",
      "missing: --role publish needs a publisher section (its address is the one the primary lets write)",
    );
  }
  if (role === "client") {
    if (!fleet.client.dest) {
      missing("client.dest", "missing: --role client needs a destination (client.dest or --dest)");
    }
    if (!fleet.client.source) {
      missing(
        "client.source",
        "missing: proxy.listen is a wildcard, so set client.source, proxy.address or --source",
      );
    }
  }
}

// Not node:fs's existsSync: importing node:fs costs every run ~20 ms of start-up.
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
