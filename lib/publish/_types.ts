/**
 * The types the steps of a publish hand each other: what was asked
 * (`PublishOptions`), what it did (`PublishResult`), and what it learns on the
 * way (the commit, the primary's state, staging, what may be asked ahead for
 * a publish by difference). They live apart from the steps so that the files
 * of each step can share them and still import one way.
 * Internal to lib/publish.
 *
 * @module
 */

import type { Fleet, PublisherHost } from "../config/mod.ts";
import type { Logger } from "../core/mod.ts";
import type { SigningKey } from "../release/mod.ts";
import type { RsyncStats } from "../rsync/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import type { PrimaryState } from "./_primary.ts";
import type { TreeDiff } from "./git.ts";
import type { publisherFiles } from "./publisher.ts";

/** What to publish, and how. */
export interface PublishOptions {
  fleet: Fleet;
  /** The publisher entry (its address, staging dir, state dir, lock timeout). */
  publisher: PublisherHost;
  /** The repository, bare or not. */
  repo: string;
  /** Branch, tag, `refs/…` name or commit id. */
  ref: string;
  /** Publish even a commit older than the published one (rollback). */
  force?: boolean;
  /**
   * The key that signs the version ({@linkcode checkPublisher} loads it);
   * null in an unsigned fleet. Loaded from the fleet when not given.
   */
  signingKey?: SigningKey | null;
  log: Logger;
}

/** What a publish did. */
export interface PublishResult {
  /** The marker now on the primary. */
  marker: VersionMarker;
  /** The marker that was there before, if any. */
  previous: VersionMarker | null;
  /** False when the commit was already published and nothing differed. */
  published: boolean;
  /** True when the published commit is an ancestor of the previous one (forced). */
  rollback: boolean;
  /** Stats of the tree transfer. */
  stats: RsyncStats | null;
  /** rsync's itemized changes of the tree transfer (`<f+++++++++ a.txt`, `*deleting b.txt`). */
  items: string[];
  /** ms from taking the lock to the marker landing. */
  ms: number;
  /** ms spent waiting for another publish. */
  waitedMs: number;
  /** The version's signature, in a signed fleet; null in an unsigned one (versions not signed). */
  release: {
    /** The id of the key that signed it. */
    keyId: string;
    /** Paths its manifest lists. */
    paths: number;
    /** Files and symlinks hashed for the manifest this time. */
    hashed: number;
  } | null;
}

/** The files of {@linkcode publisherFiles}. */
export type PublisherFiles = ReturnType<typeof publisherFiles>;

/** What {@linkcode publishLocked} did; {@linkcode publish} adds the times. */
export type Published = Omit<PublishResult, "ms" | "waitedMs">;

/** The commit to publish. */
export interface Target {
  commit: string;
  tree: string;
  /** The ref as the marker names it ({@linkcode markerRef}). */
  ref: string;
}

/** What a publish learnt before it sends anything. */
export interface Known {
  target: Target;
  /** The tree transfer's patterns ({@linkcode treeExcludes}). */
  excludes: string[];
  /** The publisher's own record of the version it offered last. */
  local: VersionMarker | null;
  /** A publish from here stopped while it sent: part of its tree may be on the primary. */
  interrupted: boolean;
  /** The primary's marker and envelope. */
  primary: PrimaryState;
  /** Whether `target` rolls the primary back. */
  rollback: boolean;
}

/**
 * What a publish by difference from `last` asks that does not depend on the
 * primary, asked while the primary is. None of it rejects.
 */
export interface Ahead {
  /** The paths that differ between `last`'s tree and the new one (or a doubt). */
  changes: Promise<TreeDiff>;
  /** Signed: the kept manifest, checked against `last`'s (or why not); null unsigned. */
  kept: Promise<Uint8Array | string> | null;
  /** Whether the new commit is an ancestor of `last`'s: the primary's, if it holds `last`. */
  older: { than: string; answer: Promise<boolean | null> };
}

/** What {@linkcode primaryAndStaging} found and did. */
export interface Seen {
  primary: PrimaryState;
  rollback: boolean;
  /** Staging brought from its tree by the paths that differ ({@linkcode updateTree}). */
  updated: boolean;
  /** Staging exported whole, and whether from nothing; null when not (yet). */
  fresh: boolean | null;
}
