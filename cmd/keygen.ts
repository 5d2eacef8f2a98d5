/**
 * `fanout keygen [-c FILE] [--out FILE]`: make the Ed25519 key pair that
 * signs versions. The private key goes to a new file of mode 600 (never over
 * an existing one: that may be the key the fleet trusts today); the public key
 * is printed as the line to add under `release.public_keys` in the fleet file.
 *
 * @module
 */

import { type CommonOptions, fleetFor } from "../lib/config/mod.ts";
import { stripControl, UsageError } from "../lib/core/mod.ts";
import { generateKeyPair, writePrivateKey } from "../lib/release/mod.ts";

/** Where the key goes without `--out` and without a fleet file. */
export const DEFAULT_KEY_FILE = "/etc/fanout/release.key";

/**
 * Writes a new private key and prints its public key; returns the exit code.
 *
 * @throws {UsageError} when the file exists, or its directory does not or
 * cannot be written (exit 2).
 * @throws {ConfigError} for a bad fleet file given with `-c` (exit 2).
 *
 * @example
 * ```ts
 * await keygen(commonOptions({ config: "/etc/fanout/fanout.yaml" })); // 0
 * ```
 */
export async function keygen(opts: CommonOptions, out?: string): Promise<number> {
  const fleet = opts.config ? await fleetFor(opts) : null;
  const path = out ?? fleet?.release.signingKeyFile ?? DEFAULT_KEY_FILE;
  const { privatePem, publicKey } = await generateKeyPair();
  await writeKey(path, privatePem);
  const listed = fleet?.release.publicKeys.length ?? 0;
  console.log(stripControl(
    [
      `wrote the private key to ${path} (mode 600, owned by uid ${Deno.uid()}: ` +
      "the user the publisher runs as must own it)",
      `add its public key under release.public_keys in the fleet file (key id ${publicKey.id}):`,
      `    - ${publicKey.text}`,
      ...(listed
        ? [
          `the fleet lists ${listed} ${listed === 1 ? "key" : "keys"} now: keep ` +
          `${listed === 1 ? "it" : "them"} until every host has the new one, then point ` +
          "release.signing_key_file at this file (a rotation: see docs/security.md)",
        ]
        : []),
    ].join("\n"),
  ));
  return 0;
}

/** Writes the key to a new file, or says in one line why it cannot. */
async function writeKey(path: string, pem: string): Promise<void> {
  try {
    await writePrivateKey(path, pem);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new UsageError(
        `${path} already exists: refusing to overwrite it (it may be the key this fleet ` +
          "trusts); move it away or pass --out with a new file",
      );
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`cannot write ${path}: its directory does not exist`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(
        `cannot write ${path}: permission denied (run as the publisher's user, or pass --out)`,
      );
    }
    throw e;
  }
}
