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
import type { Manifest, ManifestEntry, TreeEntry, VerifiedRelease } from "../release/mod.ts";

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
  /**
   * Makes the tree the checked signed release `c` (lib/client/signed.ts):
   * every path as its manifest lists it and nothing else, or, when a fetched
   * file is not the manifest's, nothing changed and a refusal thrown.
   */
  applyRelease?(c: CheckedRelease, ctx: ApplyContext): Promise<ReleaseApplied>;
}

/** What {@linkcode TreeLayout.apply} gets. */
export interface ApplyContext {
  state: DestState;
  /** The backup dir for this run (`<backup_dir>/<time>`), or null. */
  backupDir: string | null;
  /** A killed run left dest dirty: no stat record is trusted, every file is hashed. */
  forced?: boolean;
  /**
   * A look at the tree begun while the signed release was fetched
   * (lib/client/signed_state.ts): {@linkcode TreeLayout.applyRelease} takes
   * it instead of walking the tree and reading the stat record itself, when
   * it is of the tree it would walk.
   */
  look?: TreeLook;
  /**
   * The release is the state dir's kept copy, not one fetched this run
   * (lib/client/signed.ts): the tree is only confirmed to be it already,
   * and anything to change throws {@linkcode KeptDiffers} before dest is
   * touched, so that the run fetches the release and repairs as it would
   * without a kept copy.
   */
  keptOnly?: boolean;
}

/**
 * The tree is not the kept release already (see
 * {@linkcode ApplyContext.keptOnly}); nothing changed.
 *
 * @example
 * ```ts
 * if (plan.wrong.length) throw new KeptDiffers();
 * ```
 */
export class KeptDiffers extends Error {
  constructor() {
    super("the tree is not the kept release");
    this.name = "KeptDiffers";
  }
}

/** A walk of a tree, and what the state dir's stat record says of it, begun before its release is known. */
export interface TreeLook {
  /** The tree walked. */
  tree: string;
  /** When the walk began (ms since the epoch). */
  at: number;
  /** The walk, with what a walk of the tree for the run's context leaves out. */
  walked: Promise<TreeEntry[]>;
  /** What the stat record vouches for against release `now` (see recordVouches). */
  vouches(now: CheckedRelease): Promise<((got: TreeEntry, want: ManifestEntry) => boolean) | null>;
  /** Whether the walk is the stat record whole for release `now` (see recordIsRelease). */
  isRelease(now: CheckedRelease): Promise<boolean>;
}

/** A signed release whose envelope, manifest and marker were checked (lib/client/signed.ts). */
export interface CheckedRelease {
  /** The envelope's release and the key that signed it. */
  release: VerifiedRelease;
  /** The source's marker: the release's version. */
  marker: VersionMarker;
  /** The three files as fetched, written to the tree as they are. */
  bytes: { marker: Uint8Array; envelope: Uint8Array; manifest: Uint8Array };
  /**
   * The manifest, each mode as the client applies it: no setuid or setgid
   * bit, nothing writable by others (lib/client/job.ts, safeAttrs).
   */
  manifest: Manifest;
}

/** What {@linkcode TreeLayout.applyRelease} did. */
export interface ReleaseApplied {
  /** Listed paths fetched, created or given their mode. */
  changed: number;
  /** Paths removed that the manifest does not list. */
  deleted: number;
  /** True when the tree's marker, envelope or manifest were written. */
  control: boolean;
  /** The transfer of the fetched paths; null when none was needed. */
  r: RsyncResult | null;
  /** The directory holding the tree now. */
  tree: string;
}
