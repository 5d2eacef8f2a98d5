/**
 * The publisher's own host: the files it keeps under its state dir, and the
 * start-up checks (check-config runs them too) that find a missing
 * repository, rsync, password file, local address or signing key before a
 * publish queues or sends anything.
 *
 * @module
 */

import { checkSecretFiles, type Fleet, type PublisherHost } from "../config/mod.ts";
import { ConfigError, UsageError } from "../core/mod.ts";
import type { SigningKey } from "../release/mod.ts";
import { requireRsync } from "../rsync/mod.ts";
import { releaseKey } from "./release.ts";

/**
 * Files a publisher keeps under its state dir.
 *
 * @example
 * ```ts
 * const files = publisherFiles(fleet.publisher!);
 * const lock = await acquireLock(files.lock, { timeout: 60_000, what: "publish" });
 * ```
 */
export function publisherFiles(p: PublisherHost): {
  lock: string;
  state: string;
  index: string;
  stamp: string;
  markerDir: string;
  markerList: string;
  pulledDir: string;
  /** The manifest of staging and its stat record (lib/publish/release.ts). */
  manifest: string;
  record: string;
  /** Never created: where the dry run that lists what the transfer sends points. */
  nowhere: string;
  /** The record of the last publish whose marker landed (lib/publish/difference.ts). */
  published: string;
  /**
   * There while a publish sends: one found at the start stopped after part
   * of its tree may have landed, so the next version log entry is not exact.
   */
  sending: string;
  /** What a publish by difference sends, as a list for rsync. */
  sendList: string;
  /** Scratch space of a publish by difference (skeletons for push.exclude's dry runs). */
  scratch: string;
} {
  return {
    lock: `${p.stateDir}/publish.lock`,
    state: `${p.stateDir}/publish.json`,
    index: `${p.stateDir}/staging.index`,
    stamp: `${p.stateDir}/staging.json`,
    markerDir: `${p.stateDir}/marker`,
    markerList: `${p.stateDir}/marker.list`,
    pulledDir: `${p.stateDir}/primary-marker`,
    manifest: `${p.stateDir}/staging.manifest`,
    record: `${p.stateDir}/staging.record`,
    nowhere: `${p.stateDir}/dry-run-nowhere`,
    published: `${p.stateDir}/published.json`,
    sending: `${p.stateDir}/publish-sending`,
    sendList: `${p.stateDir}/send.list`,
    scratch: `${p.stateDir}/difference`,
  };
}

/**
 * The publisher's start-up checks, which change nothing (check-config runs
 * them too): a repository, rsync, the password file, a local address, and in
 * a signed fleet the signing key (mode 600, its public key listed), which it
 * returns (null: the fleet is not signed).
 *
 * @throws {UsageError} without a repository (`--repo` or `publisher.repo`).
 * @throws {ConfigError} / {EnvironmentError} naming what is wrong.
 *
 * @example
 * ```ts
 * const { pub, repo, signingKey } = await checkPublisher(fleet);
 * ```
 */
export async function checkPublisher(
  fleet: Fleet,
): Promise<{ pub: PublisherHost; repo: string; signingKey: SigningKey | null }> {
  const pub = fleet.publisher!;
  if (!pub.repo) {
    throw new UsageError(
      "no repository to publish from: pass --repo PATH or set publisher.repo in the fleet file",
    );
  }
  await requireRsync(fleet.rsync.path);
  await checkSecretFiles(fleet, { daemon: false, pusher: true });
  requireLocalAddress(fleet.file ?? "flags", pub.address);
  return { pub, repo: pub.repo, signingKey: await releaseKey(fleet) };
}

/**
 * rsync fails with a bare "error in socket IO" when `--address` is not one of
 * this host's; say which key is wrong instead.
 */
function requireLocalAddress(file: string, address: string): void {
  try {
    Deno.listen({ hostname: address, port: 0 }).close();
  } catch (e) {
    if (!(e instanceof Deno.errors.AddrNotAvailable)) return;
    throw new ConfigError(file, [{
      path: "publisher.address",
      message:
        `${address} is not an address of this host (publishes leave from it, and the primary lets only it write): use this host's own IP, or --address`,
    }]);
  }
}
