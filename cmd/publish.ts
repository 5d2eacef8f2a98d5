/**
 * `fanout --role publish`: put a commit's tree on the primary, then its
 * version marker. One-shot, run by the git server's post-receive hook or by
 * hand (a rollback is `--ref <older commit> --force`). Prints one line.
 *
 * @module
 */

import { type CommonOptions, fleetFor } from "../lib/config/mod.ts";
import { log, stripControl } from "../lib/core/mod.ts";
import { checkPublisher, describePublish, publish } from "../lib/publish/mod.ts";
import { UNSIGNED_WARNING } from "../lib/release/mod.ts";

/**
 * Publishes and prints the outcome; returns the exit code.
 *
 * @throws {UsageError} without a repository (`--repo` or `publisher.repo`).
 * @throws the errors of {@linkcode publish}.
 */
export async function run(opts: CommonOptions): Promise<number> {
  const fleet = await fleetFor(opts, "publish");
  const { pub, repo, signingKey } = await checkPublisher(fleet);
  const verbose = opts.verbose;
  const lg = log().child({ role: "publish", name: pub.name });
  const result = await publish({
    fleet,
    publisher: pub,
    repo,
    ref: pub.ref,
    force: opts.force,
    signingKey,
    log: lg,
  });
  if (verbose) {
    // rsync's lines name files from the repository: they reach the pusher's terminal.
    for (const item of result.items) {
      if (!item.startsWith(".d")) console.log(stripControl(item, { oneLine: true }));
    }
  }
  // Before the outcome, which stays the last line (the hook and the demo show it).
  if (!result.release) lg.warn(UNSIGNED_WARNING);
  console.log(stripControl(describePublish(result, fleet)));
  return 0;
}
