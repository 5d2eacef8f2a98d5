/**
 * The publisher's Ed25519 signing key and the public key every client trusts.
 *
 * - The private key is a PEM file (PKCS #8, as `openssl genpkey -algorithm
 *   ed25519` writes it too) that only its owner may read: a symlink, a file
 *   of another user, or one open to group or others is refused before a byte
 *   of it is read.
 * - The public key is one short line for the fleet file:
 *   `ed25519:<base64 of the 32 raw bytes>`, parsed strictly, so a key cut or
 *   padded by a copy and paste is refused rather than read as another key.
 * - A key's id is its first 8 bytes in hex: what a signature names to say
 *   which key made it. An Ed25519 public key is a curve point whose bytes
 *   look random, so they tell keys apart as well as a hash of them would;
 *   the signature is checked with the whole key all the same.
 *
 * WebCrypto only (`crypto.subtle`, "Ed25519").
 *
 * @module
 */

import { ConfigError, type ConfigProblem, quoted, UsageError } from "../core/mod.ts";
import { secretFileProblem } from "../config/mod.ts";
import { readChecked } from "./_read.ts";

/** The text form's prefix: the algorithm, so another one can come later without a guess. */
export const PUBLIC_KEY_PREFIX = "ed25519:";

/** The most a private key file may hold; a real one is 119 bytes. */
const PRIVATE_KEY_MAX_BYTES = 4096;

/** PKCS #8 of an Ed25519 key is this header and the 32-byte seed (RFC 8410). */
const PKCS8_HEADER = Uint8Array.fromHex("302e020100300506032b657004220420");
const PEM_BEGIN = "-----BEGIN PRIVATE KEY-----";
const PEM_END = "-----END PRIVATE KEY-----";

/**
 * A bad public key (in the fleet file or on the command line), or a private
 * key file whose content is not an Ed25519 key (exit 2).
 *
 * @example
 * ```ts
 * try {
 *   parsePublicKey("ed25519:short");
 * } catch (e) {
 *   if (e instanceof KeyError) console.error(e.message);
 * }
 * ```
 */
export class KeyError extends UsageError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KeyError";
  }
}

/** A parsed public key. */
export interface PublicKey {
  /** The text form, `ed25519:<base64>`, exactly as parsed or made. */
  text: string;
  /** The 32 raw bytes. */
  raw: Uint8Array<ArrayBuffer>;
  /** 16 lowercase hex digits: the first 8 bytes of `raw`. */
  id: string;
}

/** A private key ready to sign with, and its public key. */
export interface SigningKey {
  /** The WebCrypto key, usable for "sign" only, not extractable. */
  privateKey: CryptoKey;
  /** The public key that verifies its signatures. */
  publicKey: PublicKey;
}

/** A new key pair: the private key's file content and the public key. */
export interface NewKeyPair {
  /** PEM text (PKCS #8) to write with {@linkcode writePrivateKey}. */
  privatePem: string;
  /** The public key for the fleet file. */
  publicKey: PublicKey;
}

function publicKeyOf(raw: Uint8Array<ArrayBuffer>): PublicKey {
  return {
    text: PUBLIC_KEY_PREFIX + raw.toBase64(),
    raw,
    id: raw.subarray(0, 8).toHex(),
  };
}

/**
 * Parses the text form of a public key: `ed25519:` then exactly 44 base64
 * characters (standard alphabet, with its one `=`) that decode to 32 bytes.
 * White space around it is not accepted: the fleet file's parser trims.
 *
 * @throws {KeyError} saying what is wrong: the prefix, the length, the alphabet.
 *
 * @example
 * ```ts
 * const key = parsePublicKey("ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
 * key.id; // 16 hex digits
 * ```
 */
export function parsePublicKey(text: string): PublicKey {
  const want = `expected ${PUBLIC_KEY_PREFIX}<44 base64 characters>`;
  if (!text.startsWith(PUBLIC_KEY_PREFIX)) {
    throw new KeyError(`public key ${quoted(text)}: ${want} (the prefix is missing)`);
  }
  const b64 = text.slice(PUBLIC_KEY_PREFIX.length);
  if (b64.length !== 44) {
    throw new KeyError(
      `public key ${quoted(text)}: ${want}, got ${b64.length} characters after the prefix`,
    );
  }
  let raw: Uint8Array<ArrayBuffer>;
  try {
    if (!/^[A-Za-z0-9+/]{43}=$/.test(b64)) throw new Error("not base64");
    raw = Uint8Array.fromBase64(b64, { lastChunkHandling: "strict" });
  } catch {
    throw new KeyError(`public key ${quoted(text)}: ${want}; it is not canonical base64`);
  }
  return publicKeyOf(raw);
}

/**
 * Makes a new Ed25519 key pair.
 *
 * @example
 * ```ts
 * const { privatePem, publicKey } = await generateKeyPair();
 * await writePrivateKey("/etc/fanout/release.key", privatePem);
 * console.log(`release_key: ${publicKey.text}`);
 * ```
 */
export async function generateKeyPair(): Promise<NewKeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return {
    privatePem: `${PEM_BEGIN}\n${pkcs8.toBase64()}\n${PEM_END}\n`,
    publicKey: publicKeyOf(raw),
  };
}

/**
 * Writes a private key to a new file of mode 600; never over an existing
 * file (an old key would be lost, or a planted symlink followed).
 *
 * @throws {Deno.errors.AlreadyExists} when something is at `path`.
 *
 * @example
 * ```ts
 * await writePrivateKey("/etc/fanout/release.key", (await generateKeyPair()).privatePem);
 * ```
 */
export async function writePrivateKey(path: string, pem: string): Promise<void> {
  await Deno.writeTextFile(path, pem, { createNew: true, mode: 0o600 });
}

/**
 * The PKCS #8 bytes of PEM text, or null when it is not exactly one Ed25519
 * private key block (a trailing newline allowed).
 */
function pkcs8FromPem(text: string): Uint8Array<ArrayBuffer> | null {
  const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  if (lines.length !== 3 || lines[0] !== PEM_BEGIN || lines[2] !== PEM_END) return null;
  let der: Uint8Array<ArrayBuffer>;
  try {
    der = Uint8Array.fromBase64(lines[1], { lastChunkHandling: "strict" });
  } catch {
    return null;
  }
  if (der.length !== PKCS8_HEADER.length + 32) return null;
  return PKCS8_HEADER.every((b, i) => der[i] === b) ? der : null;
}

/**
 * Reads the bytes of the private key file at `path` after the checks: not a
 * symlink, owned by this user, and what {@linkcode secretFileProblem} asks
 * (a regular file, mode 600 or 400, readable). The file read is the one
 * checked: swapped for another since, it is refused.
 */
function readKeyFile(path: string, setting: string): string | ConfigProblem {
  const problem = (message: string) => ({ path: setting, message });
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    return problem(`${path} does not exist; the publisher needs it to sign releases`);
  }
  if (st.isSymlink) {
    return problem(
      `${path} is a symlink; the signing key must be a regular file (it is not followed)`,
    );
  }
  const uid = Deno.uid();
  if (uid !== null && st.uid !== uid) {
    return problem(
      `${path} is owned by uid ${st.uid}, not by this user (uid ${uid}); chown it to the publisher's user`,
    );
  }
  const p = secretFileProblem(path, setting, "publisher");
  if (p) return p;
  const bytes = readChecked(path, st, PRIVATE_KEY_MAX_BYTES);
  if (bytes === "too big") return problem(`${path} is too big for a key`);
  if (bytes === "changed") return problem(`${path} changed while it was checked; try again`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return problem(`${path} is not text; expected an Ed25519 private key in PEM (PKCS #8)`);
  }
}

/**
 * Loads the signing key from the file at `path`, which fleet-file key
 * `setting` names (for the messages). Refuses a symlink, a file owned by
 * another user, one whose mode gives group or others any access, and one
 * that does not hold exactly one Ed25519 private key in PEM (PKCS #8).
 *
 * @throws {ConfigError} naming the setting, the file and what to run.
 *
 * @example
 * ```ts
 * const key = await loadSigningKey("/etc/fanout/release.key");
 * console.log(`signing as ${key.publicKey.id}`);
 * ```
 */
export async function loadSigningKey(
  path: string,
  opts: { setting?: string; fleetFile?: string } = {},
): Promise<SigningKey> {
  const setting = opts.setting ?? "publisher.signing_key";
  const fail = (p: ConfigProblem) => new ConfigError(opts.fleetFile ?? "flags", [p]);
  const text = readKeyFile(path, setting);
  if (typeof text !== "string") throw fail(text);
  const pkcs8 = pkcs8FromPem(text);
  if (!pkcs8) {
    throw fail({
      path: setting,
      message:
        `${path} does not hold an Ed25519 private key in PEM (PKCS #8): one "${PEM_BEGIN}" block of 48 bytes`,
    });
  }
  // Extractable for one export of its public half; the key kept is not.
  const full = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", full);
  const raw = Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" });
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, [
    "sign",
  ]);
  return { privateKey, publicKey: publicKeyOf(raw) };
}

/**
 * The WebCrypto key that verifies signatures of `key`.
 *
 * @example
 * ```ts
 * const k = await verifyingKey(parsePublicKey(fleetKeyText));
 * await crypto.subtle.verify("Ed25519", k, signature, bytes);
 * ```
 */
export function verifyingKey(key: PublicKey): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", key.raw, { name: "Ed25519" }, false, ["verify"]);
}
