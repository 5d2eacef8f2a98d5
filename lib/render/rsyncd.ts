/**
 * `fanout render rsyncd --role primary|replica [--name N]`: the rsyncd.conf a
 * server host runs, for operators who run their own daemon.
 *
 * @module
 */

import type { RenderInput } from "./input.ts";
import { type Fleet, selectServer } from "../config/mod.ts";
import { UsageError } from "../core/mod.ts";
import { type DaemonIdentity, renderRsyncdConf } from "../rsyncd/mod.ts";

/**
 * Renders the rsyncd.conf of the primary or of the replica `--name`.
 *
 * @throws {UsageError} without `--role primary` or `--role replica`.
 */
export async function renderRsyncd({ fleet, role, opts }: RenderInput): Promise<string> {
  if (role !== "primary" && role !== "replica") {
    throw new UsageError("render rsyncd needs --role primary or --role replica (with --name)");
  }
  const self = selectServer(fleet, role, opts.name);
  return renderRsyncdConf(fleet, self, await renderIdentity(fleet, self.path));
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
