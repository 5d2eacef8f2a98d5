/**
 * The signed envelope of a release: the publisher's word that the tree of
 * version `seq` (its commit, ref and publish time) is the one whose manifest
 * has this SHA-256. Eight lines of ASCII, each field in one spelling only:
 *
 * ```
 * fanout-release-v1
 * key 1f0c5e7a9b2d4c68
 * seq 42
 * commit 3f1c0d2e…
 * ref main
 * published_at 2026-12-04T15:54:55.266Z
 * manifest <sha256 hex of the manifest's bytes>
 * signature <base64 of the 64-byte Ed25519 signature>
 * ```
 *
 * The signature covers the seven lines before it, byte for byte. Its first
 * line is the domain: a signature over these bytes cannot be taken for one
 * over anything else the key might sign, nor for another version of this
 * format. The key line names the key (its id), so a fleet can trust the old
 * key and the new one while it rotates.
 *
 * @module
 */

import { quoted, SafetyError } from "../core/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import { type PublicKey, type SigningKey, verifyingKey } from "./keys.ts";

/** The envelope's first line: what is signed, and which format. */
export const RELEASE_DOMAIN = "fanout-release-v1";

/**
 * What every role says, once per run or start, in a fleet whose
 * `release.public_keys` is empty.
 */
export const UNSIGNED_WARNING = "versions are not signed: add release.public_keys (fanout keygen)";

/** The most bytes an envelope may have; a real one has about 300. */
export const ENVELOPE_MAX_BYTES = 1024;

/** What a release's signature binds. */
export interface Release {
  /** The version's publish counter. */
  seq: number;
  /** The git commit, 4 to 64 lowercase hex digits. */
  commit: string;
  /** The git ref it was published from, e.g. `main` or `release/1.2`. */
  ref: string;
  /** When it was published, as `Date.prototype.toISOString` writes it (UTC, `Z`). */
  published_at: string;
  /** The SHA-256 of the manifest's bytes, lowercase hex. */
  manifest_sha256: string;
}

/** A release whose signature was checked, and the key that made it. */
export interface VerifiedRelease extends Release {
  /** The id of the trusted key that signed it. */
  keyId: string;
}

/** What was wrong with an envelope. */
export type SignatureFailure = "malformed" | "unknown-key" | "bad-signature";

/**
 * An envelope refused (exit 4): `reason` says whether it is not an envelope
 * at all ("malformed"), is signed by a key not trusted ("unknown-key"), or
 * carries a signature that does not verify ("bad-signature").
 *
 * @example
 * ```ts
 * try {
 *   await verifyRelease(bytes, trusted);
 * } catch (e) {
 *   if (e instanceof SignatureError && e.reason === "unknown-key") console.error(e.message);
 * }
 * ```
 */
export class SignatureError extends SafetyError {
  /** Which check failed. */
  readonly reason: SignatureFailure;
  constructor(reason: SignatureFailure, message: string) {
    super(message);
    this.name = "SignatureError";
    this.reason = reason;
  }
}

/** Each line's field name and the one spelling its value may have. */
const FIELDS: [string, RegExp][] = [
  ["key", /^[0-9a-f]{16}$/],
  ["seq", /^(0|[1-9][0-9]{0,15})$/],
  ["commit", /^[0-9a-f]{4,64}$/],
  ["ref", /^[A-Za-z0-9._+\/-]{1,255}$/],
  ["published_at", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/],
  ["manifest", /^[0-9a-f]{64}$/],
];
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;

const enc = new TextEncoder();

function malformed(message: string): SignatureError {
  return new SignatureError("malformed", `release envelope: ${message}`);
}

/** The values of `r` and `keyId` as field texts, in {@linkcode FIELDS} order, checked. */
function fieldValues(r: Release, keyId: string): string[] {
  if (Number.isInteger(r.seq) && !Number.isSafeInteger(r.seq)) {
    throw malformed(`seq ${r.seq} is too big`);
  }
  const values = [keyId, String(r.seq), r.commit, r.ref, r.published_at, r.manifest_sha256];
  FIELDS.forEach(([name, re], i) => {
    if (!re.test(values[i])) throw malformed(`${name} ${quoted(values[i])} is not ${re.source}`);
  });
  if (Number.isNaN(Date.parse(r.published_at))) {
    throw malformed(`published_at ${quoted(r.published_at)} is not a time`);
  }
  return values;
}

/**
 * The bytes a release's signature covers: the domain line, then one line
 * per field.
 *
 * @example
 * ```ts
 * new TextDecoder().decode(signedBytes(release, key.publicKey.id)).split("\n")[0]; // "fanout-release-v1"
 * ```
 */
export function signedBytes(r: Release, keyId: string): Uint8Array<ArrayBuffer> {
  const values = fieldValues(r, keyId);
  return enc.encode(
    [RELEASE_DOMAIN, ...FIELDS.map(([name], i) => `${name} ${values[i]}`), ""].join("\n"),
  );
}

/**
 * Signs `r` with `key`; returns the envelope's bytes.
 *
 * @throws {SignatureError} ("malformed") when a field of `r` has no valid spelling.
 *
 * @example
 * ```ts
 * const key = await loadSigningKey("/etc/fanout/release.key");
 * const envelope = await signRelease({ ...marker, manifest_sha256: digest }, key);
 * ```
 */
export async function signRelease(r: Release, key: SigningKey): Promise<Uint8Array<ArrayBuffer>> {
  const signed = signedBytes(r, key.publicKey.id);
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", key.privateKey, signed));
  const line = enc.encode(`signature ${sig.toBase64()}\n`);
  const out = new Uint8Array(signed.length + line.length);
  out.set(signed);
  out.set(line, signed.length);
  return out;
}

/** An envelope taken apart: its release, its key id and its signature. */
function parseEnvelope(
  bytes: Uint8Array,
): { release: Release; keyId: string; sig: Uint8Array<ArrayBuffer> } {
  if (bytes.length > ENVELOPE_MAX_BYTES) {
    throw malformed(`${bytes.length} bytes, more than ${ENVELOPE_MAX_BYTES}`);
  }
  if (bytes.some((b) => b > 0x7e || (b < 0x20 && b !== 0x0a))) {
    throw malformed("holds a byte that is not printable ASCII");
  }
  const text = new TextDecoder().decode(bytes);
  if (!text.endsWith("\n")) throw malformed("does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== RELEASE_DOMAIN) {
    throw malformed(`expected first line ${quoted(RELEASE_DOMAIN)}, got ${quoted(lines[0])}`);
  }
  if (lines.length !== FIELDS.length + 2) {
    throw malformed(`expected ${FIELDS.length + 2} lines, got ${lines.length}`);
  }
  const values = FIELDS.map(([name, re], i) => {
    const line = lines[i + 1];
    if (!line.startsWith(`${name} `)) {
      throw malformed(`line ${i + 2}: expected "${name} …", got ${quoted(line)}`);
    }
    const value = line.slice(name.length + 1);
    if (!re.test(value)) {
      throw malformed(`line ${i + 2}: ${name} ${quoted(value)} is not ${re.source}`);
    }
    return value;
  });
  const sigLine = lines[FIELDS.length + 1];
  const sigText = sigLine.startsWith("signature ") ? sigLine.slice("signature ".length) : "";
  let sig: Uint8Array<ArrayBuffer> | null = null;
  if (SIGNATURE.test(sigText)) {
    try {
      sig = Uint8Array.fromBase64(sigText, { lastChunkHandling: "strict" });
    } catch { /* not canonical: refused below */ }
  }
  if (!sig) {
    throw malformed(
      `line ${lines.length}: expected "signature <88 base64 characters>", got ${quoted(sigLine)}`,
    );
  }
  const [keyId, seq, commit, ref, published_at, manifest_sha256] = values;
  if (!Number.isSafeInteger(Number(seq))) throw malformed(`line 3: seq ${seq} is too big`);
  const release = { seq: Number(seq), commit, ref, published_at, manifest_sha256 };
  fieldValues(release, keyId); // the checks the patterns cannot make (range, a real time)
  return { release, keyId, sig };
}

/**
 * The release an envelope names, read but not verified: what a server that
 * relays envelopes needs to know which version one belongs to. Null when it
 * is not a well-formed envelope. Never trust it further than that: only
 * {@linkcode verifyRelease} says who signed it.
 *
 * @example
 * ```ts
 * const r = readEnvelope(await Deno.readFile("/srv/plugins/.fanout-release"));
 * if (r && !markerMismatch(r, marker)) console.log("the envelope is the marker's version");
 * ```
 */
export function readEnvelope(bytes: Uint8Array): Release | null {
  try {
    return parseEnvelope(bytes).release;
  } catch (e) {
    if (e instanceof SignatureError) return null;
    throw e;
  }
}

/**
 * Checks an envelope against the trusted public keys: well formed, signed
 * by a key among `trusted` (by the id it names), with a signature that
 * verifies. Returns its release; throws on anything else.
 *
 * @throws {SignatureError} whose `reason` says which check failed.
 *
 * @example
 * ```ts
 * const release = await verifyRelease(envelopeBytes, [parsePublicKey(fleet.releaseKey)]);
 * if (release.manifest_sha256 !== await manifestDigest(manifestBytes)) throw new Error("not this manifest");
 * ```
 */
export async function verifyRelease(
  envelope: Uint8Array,
  trusted: readonly PublicKey[],
): Promise<VerifiedRelease> {
  const { release, keyId, sig } = parseEnvelope(envelope);
  const key = trusted.find((k) => k.id === keyId);
  if (!key) {
    throw new SignatureError(
      "unknown-key",
      `release envelope is signed by key ${keyId}, which is not trusted (trusted: ${
        trusted.map((k) => k.id).join(", ") || "none"
      })`,
    );
  }
  const ok = await crypto.subtle.verify(
    "Ed25519",
    await verifyingKey(key),
    sig,
    signedBytes(release, keyId),
  );
  if (!ok) {
    throw new SignatureError(
      "bad-signature",
      `release envelope of seq ${release.seq}: the signature does not verify with key ${keyId}`,
    );
  }
  return { ...release, keyId };
}

/**
 * The first field in which a verified release and a version marker differ,
 * or null when the marker is the release's: a client holds a marker only
 * together with the release that vouches for it.
 *
 * @example
 * ```ts
 * const field = markerMismatch(release, readMarker(dest)!);
 * if (field) throw new SafetyError(`the marker's ${field} is not the signed release's`);
 * ```
 */
export function markerMismatch(r: Release, m: VersionMarker): keyof VersionMarker | null {
  for (const k of ["seq", "commit", "ref", "published_at"] as const) if (r[k] !== m[k]) return k;
  return null;
}
