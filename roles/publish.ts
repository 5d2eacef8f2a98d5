/**
 * `fanout --role publish`: put a commit's tree on the primary, then its
 * version marker. One-shot, run by the git server's post-receive hook or by
 * hand (a rollback is `--ref <older commit> --force`). Prints one line.
 *
 * @module
 */

import type { CommonOptions } from "../lib/cli.ts";
import type { Fleet, PublisherHost } from "../lib/config.ts";
import { ConfigError, UsageError } from "../lib/errors.ts";
import { log } from "../lib/log.ts";
import { stripControl } from "../lib/control_chars.ts";
import { describePublish, publish } from "../lib/publish.ts";
import { requireRsync } from "../lib/rsync.ts";
import { checkSecretFiles } from "../lib/secrets.ts";
import { fleetFor } from "./_fleet.ts";

/**
 * Publishes and prints the outcome; returns the exit code.
 *
 * @throws {UsageError} without a repository (`--repo` or `publisher.repo`).
 * @throws the errors of {@linkcode publish}.
 */
export async function run(opts: CommonOptions): Promise<number> {
  const fleet = await fleetFor(opts, "publish");
  const { pub, repo } = await checkPublisher(fleet);
  const verbose = opts.flags.verbose === true;
  const result = await publish({
    fleet,
    publisher: pub,
    repo,
    ref: pub.ref,
    force: opts.flags.force === true,
    log: log().child({ role: "publish", name: pub.name }),
  });
  if (verbose) {
    // rsync's lines name files from the repository: they reach the pusher's terminal.
    for (const item of result.items) {
      if (!item.startsWith(".d")) console.log(stripControl(item, { oneLine: true }));
    }
  }
  console.log(stripControl(describePublish(result, fleet)));
  return 0;
}

/**
 * The publisher's start-up checks, which change nothing (check-config runs
 * them too): a repository, rsync, the password file, a local address.
 *
 * @throws {UsageError} without a repository (`--repo` or `publisher.repo`).
 * @throws {ConfigError} / {EnvironmentError} naming what is wrong.
 *
 * @example
 * ```ts
 * const { pub, repo } = await checkPublisher(fleet);
 * ```
 */
export async function checkPublisher(
  fleet: Fleet,
): Promise<{ pub: PublisherHost; repo: string }> {
  const pub = fleet.publisher!;
  if (!pub.repo) {
    throw new UsageError(
      "no repository to publish from: pass --repo PATH or set publisher.repo in the fleet file",
    );
  }
  await requireRsync(fleet.rsync.path);
  await checkSecretFiles(fleet, { daemon: false, pusher: true });
  requireLocalAddress(fleet.file ?? "flags", pub.address);
  return { pub, repo: pub.repo };
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
