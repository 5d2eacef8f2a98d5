/**
 * Signatures of client run reports: `x-fanout-signature: t=<unix seconds>,sig=<hex>`,
 * where `sig` is HMAC-SHA256 over `"<t>.<body>"` keyed with the client's own
 * report token. That token is derived from the primary's report secret and
 * the client's name ({@linkcode hostToken}): the primary derives it again from
 * the name in the report, so a client's token signs reports of its own name
 * only, and the primary keeps no per-client state.
 * The time inside the signed text lets the primary refuse old reports, and a
 * signature seen once is refused again, so a captured report cannot be replayed.
 *
 * WebCrypto only: the cron client loads this, and it must stay light.
 *
 * @module
 */

/** The header a signed report carries. */
export const SIGNATURE_HEADER = "x-fanout-signature";

const enc = new TextEncoder();

function hmacKey(token: string, use: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    enc.encode(token),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [use],
  );
}

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The signature header value for `body` sent at `t` (unix seconds).
 *
 * @example
 * ```ts
 * const header = await signReport("s3cret", body, Math.floor(Date.now() / 1000));
 * // "t=1764100000,sig=5d41402abc4b2a76b9719d911017c592…"
 * ```
 */
export async function signReport(token: string, body: string, t: number): Promise<string> {
  const sig = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(token, "sign"),
    enc.encode(`${t}.${body}`),
  );
  return `t=${t},sig=${toHex(sig)}`;
}

/**
 * The report token of client `host`: hex HMAC-SHA256 of the name under the
 * primary's report secret. `fanout render report-token --name HOST` prints it.
 *
 * @example
 * ```ts
 * await hostToken("primary-secret", "web1"); // "3f1c…" (64 hex digits)
 * ```
 */
export async function hostToken(secret: string, host: string): Promise<string> {
  const key = await hmacKey(secret, "sign");
  return toHex(await crypto.subtle.sign("HMAC", key, enc.encode(`fanout report token\0${host}`)));
}

/** A parsed signature header. */
export interface Signature {
  /** Unix seconds the client signed at. */
  t: number;
  /** 64 lowercase hex digits. */
  sig: string;
}

/**
 * Parses a signature header; null when it is not `t=<digits>,sig=<64 hex>`.
 *
 * @example
 * ```ts
 * parseSignature("t=1764100000,sig=" + "ab".repeat(32))?.t; // 1764100000
 * ```
 */
export function parseSignature(header: string | null | undefined): Signature | null {
  const m = /^t=(\d{1,12}),sig=([0-9a-f]{64})$/.exec((header ?? "").trim().toLowerCase());
  return m ? { t: Number(m[1]), sig: m[2] } : null;
}

/**
 * True when `s` is the HMAC of `body` at `s.t` under `token` (compared in
 * constant time by WebCrypto).
 *
 * @example
 * ```ts
 * await verifySignature("s3cret", body, parseSignature(header)!); // true or false
 * ```
 */
export async function verifySignature(token: string, body: string, s: Signature): Promise<boolean> {
  const sig = new Uint8Array(32);
  for (let i = 0; i < 32; i++) sig[i] = parseInt(s.sig.slice(i * 2, i * 2 + 2), 16);
  return await crypto.subtle.verify(
    "HMAC",
    await hmacKey(token, "verify"),
    sig,
    enc.encode(`${s.t}.${body}`),
  );
}
