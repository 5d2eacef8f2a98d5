// Loads the fleet file a role runs from and checks the role has what it needs.
import type { CommonOptions, Role } from "../config/options.ts";
import { ConfigError, hostname, UsageError } from "../core/mod.ts";
import type { Fleet } from "./config.ts";
import { cacheFleet, fleetCacheKey, readCachedFleet } from "./fleet_cache.ts";

/** Where the fleet file is looked for when `-c` is not given. */
export const DEFAULT_FLEET_FILE = "/etc/fanout/fanout.yaml";

/**
 * The fleet for `role`: from `-c`, else the default file, else (client only)
 * from flags alone. The client, which cron starts every minute, takes it from
 * lib/config/fleet_cache.ts when nothing changed since its last run; the validating
 * code (the YAML parser, the schema) is loaded only when it did.
 *
 * @throws {UsageError} when there is no fleet file to read.
 * @throws {ConfigError} when it is invalid or lacks the role's section.
 */
export async function fleetFor(opts: CommonOptions, role?: Role): Promise<Fleet> {
  const self = role ? { role, name: opts.name } : undefined;
  const file = opts.config ?? (exists(DEFAULT_FLEET_FILE) ? DEFAULT_FLEET_FILE : null);
  if (file === null && !(role === "client" && setsKey(opts, "source") && setsKey(opts, "dest"))) {
    throw new UsageError(
      `no fleet file: pass -c FILE (${DEFAULT_FLEET_FILE} does not exist)` +
        (role === "client" ? ", or --source URL --dest DIR" : ""),
    );
  }
  const key = role === "client"
    ? await fleetCacheKey(file, opts.overrides, role, opts.name ?? hostname())
    : null;
  let fleet = key && await readCachedFleet(key);
  if (!fleet) {
    const config = await import("./config.ts");
    fleet = file === null
      ? await config.flagsOnlyFleet(opts.overrides)
      // The text the key holds, not a second read that could see a newer file.
      : await config.loadFleet(file, {
        overrides: opts.overrides,
        self,
        text: key?.text ?? undefined,
      });
    if (key) await cacheFleet(key, fleet);
  }
  if (role) requireSection(fleet, role);
  return fleet;
}

/** Whether the command line sets the client's key `name` (a client then needs no fleet file). */
function setsKey(opts: CommonOptions, name: string): boolean {
  return opts.overrides.some((o) => o.path[0] === "client" && o.path[1] === name);
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

// Not node:fs's existsSync: importing node:fs starts Deno's Node layer, a cost
// every cron run would pay (docs/benchmarks.md).
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
