/**
 * `fanout render <kind>`: config files for the tools around fanout, derived
 * from the fleet file, each saying which fanout version and fleet file
 * produced it.
 *
 * @module
 */

import type { CommonOptions, Role } from "./cli.ts";
import { type Fleet, selectServer } from "./config.ts";
import { ExitCode, FanoutError, UsageError } from "./errors.ts";
import { type DaemonIdentity, renderRsyncdConf } from "./rsync_daemon.ts";
import { fleetFor } from "../roles/_fleet.ts";
import { VERSION } from "./meta.ts";

/**
 * Prints the rendered file; returns the exit code.
 *
 * @throws {UsageError} when the kind needs a role that was not given.
 */
export async function renderCommand(
  what: string,
  opts: CommonOptions,
  role?: Role,
): Promise<number> {
  const fleet = await fleetFor(opts, role);
  switch (what) {
    case "rsyncd": {
      if (role !== "primary" && role !== "replica") {
        throw new UsageError("render rsyncd needs --role primary or --role replica (with --name)");
      }
      const self = selectServer(fleet, role, opts.name);
      console.log(renderRsyncdConf(fleet, self, await renderIdentity(fleet, self.path)).trimEnd());
      return 0;
    }
  }
  throw new FanoutError(`render ${what} is not built yet in fanout ${VERSION}`, ExitCode.Usage);
}

/**
 * The daemon identity to render for a host that may not be this one: rendered
 * files are for root-run daemons; uid/gid from the fleet file, else the
 * owner of the tree when it exists here, else root.
 */
async function renderIdentity(fleet: Fleet, path: string): Promise<DaemonIdentity> {
  let st: Deno.FileInfo | null = null;
  try {
    st = await Deno.stat(path);
  } catch { /* rendering for another host */ }
  return {
    asRoot: true,
    uid: fleet.uid ?? (st?.uid != null ? String(st.uid) : "root"),
    gid: fleet.gid ?? (st?.gid != null ? String(st.gid) : "root"),
  };
}
