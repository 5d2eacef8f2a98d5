/**
 * The client's tree layouts (in place, or atomic generations) behind one
 * interface: what `runClient` calls and each layout module implements.
 *
 * @module
 */

import type { DestState } from "./safety.ts";
import type { Drift } from "./drift.ts";
import type { RsyncResult } from "../rsync/mod.ts";
import type { ChangeList, VersionMarker } from "../version/mod.ts";

/** How the tree is laid out on disk: in place, or atomic generations. */
export interface TreeLayout {
  /** The directory to compare against and read the version from; null when none yet. */
  current(): Promise<string | null>;
  /** Applies `drift` (already checked) so dest matches the source. */
  apply(drift: Drift, ctx: ApplyContext): Promise<RsyncResult>;
  /** Removes what a killed run left behind. */
  recover(): Promise<void>;
  /**
   * Applies a version log's change list (lib/client/catchup.ts) so dest is at
   * `target`; null when the source did not match the list (the whole-tree
   * path follows). Layouts without it always walk the tree.
   */
  applyChanges?(list: ChangeList, target: VersionMarker, ctx: ApplyContext): Promise<
    RsyncResult | null
  >;
}

/** What {@linkcode TreeLayout.apply} gets. */
export interface ApplyContext {
  state: DestState;
  /** The backup dir for this run (`<backup_dir>/<time>`), or null. */
  backupDir: string | null;
}
