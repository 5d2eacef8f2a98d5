import assert from "node:assert/strict";
import { generateKeyPair, loadSigningKey, type SigningKey, writePrivateKey } from "./keys.ts";
import {
  ENVELOPE_MAX_BYTES,
  markerMismatch,
  readEnvelope,
  type Release,
  RELEASE_DOMAIN,
  SignatureError,
  type SignatureFailure,
  signedBytes,
  signRelease,
  verifyRelease,
} from "./sign.ts";
import { withDir } from "./_testing.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const RELEASE: Release = {
  seq: 42,
  commit: "3f1c0d2e".repeat(5),
  ref: "release/1.2",
  published_at: "2026-12-04T15:54:55.266Z",
  manifest_sha256: "ab".repeat(32),
};

async function newKey(): Promise<SigningKey> {
  let key: SigningKey | null = null;
  await withDir(async (dir) => {
    await writePrivateKey(`${dir}/k`, (await generateKeyPair()).privatePem);
    key = await loadSigningKey(`${dir}/k`);
  });
  return key!;
}

async function refused(
  envelope: Uint8Array | string,
  trusted: SigningKey[],
  reason: SignatureFailure,
  re: RegExp,
): Promise<void> {
  const bytes = typeof envelope === "string" ? enc.encode(envelope) : envelope;
  await assert.rejects(
    verifyRelease(bytes, trusted.map((k) => k.publicKey)),
    (e) => e instanceof SignatureError && e.reason === reason && re.test(e.message),
    typeof envelope === "string" ? JSON.stringify(envelope) : "bytes",
  );
}

Deno.test("sign: an envelope signs and verifies, with the key that made it; its text is the eight lines", async () => {
  const key = await newKey(), other = await newKey();
  const envelope = await signRelease(RELEASE, key);
  const lines = dec.decode(envelope).split("\n");
  assert.deepEqual(lines.slice(0, 7), [
    RELEASE_DOMAIN,
    `key ${key.publicKey.id}`,
    "seq 42",
    `commit ${RELEASE.commit}`,
    "ref release/1.2",
    "published_at 2026-12-04T15:54:55.266Z",
    `manifest ${"ab".repeat(32)}`,
  ]);
  assert.match(lines[7], /^signature [A-Za-z0-9+/]{86}==$/);
  assert.equal(lines[8], "");
  assert.deepEqual(
    dec.decode(signedBytes(RELEASE, key.publicKey.id)),
    lines.slice(0, 7).join("\n") + "\n",
  );

  assert.deepEqual(await verifyRelease(envelope, [key.publicKey]), {
    ...RELEASE,
    keyId: key.publicKey.id,
  });
  // Rotation: both keys trusted, each envelope verified by its own.
  const both = [other.publicKey, key.publicKey];
  assert.equal((await verifyRelease(envelope, both)).keyId, key.publicKey.id);
  assert.equal(
    (await verifyRelease(await signRelease(RELEASE, other), both)).keyId,
    other.publicKey.id,
  );
  // Whole seconds, seq 0, a short commit: other valid spellings.
  const plain = { ...RELEASE, seq: 0, commit: "c0ffee3", published_at: "2026-12-04T15:54:55Z" };
  assert.deepEqual(await verifyRelease(await signRelease(plain, key), [key.publicKey]), {
    ...plain,
    keyId: key.publicKey.id,
  });
});

Deno.test("sign: a changed field, another key's signature or an untrusted key is refused, saying which", async () => {
  const key = await newKey(), other = await newKey();
  const text = dec.decode(await signRelease(RELEASE, key));
  const bad = /the signature does not verify with key/;
  // Each field changed, still well formed: the signature no longer covers it.
  await refused(text.replace("seq 42", "seq 43"), [key], "bad-signature", bad);
  await refused(text.replace("commit 3f1c", "commit 4f1c"), [key], "bad-signature", bad);
  await refused(text.replace("ref release/1.2", "ref main"), [key], "bad-signature", bad);
  await refused(text.replace(".266Z", ".267Z"), [key], "bad-signature", bad);
  await refused(text.replace("manifest ab", "manifest cd"), [key], "bad-signature", bad);
  const sig = text.split("\n")[7].slice("signature ".length);
  const flipped = Uint8Array.fromBase64(sig);
  flipped[10] ^= 1;
  await refused(text.replace(sig, flipped.toBase64()), [key], "bad-signature", bad);
  // Another key's signature under this key's id.
  const theirs = dec.decode(await signRelease(RELEASE, other)).split("\n")[7];
  await refused(text.replace(text.split("\n")[7], theirs), [key, other], "bad-signature", bad);
  // Signed by a key nobody trusts.
  await refused(
    text,
    [other],
    "unknown-key",
    new RegExp(
      `signed by key ${key.publicKey.id}, which is not trusted \\(trusted: ${other.publicKey.id}\\)`,
    ),
  );
  await refused(text, [], "unknown-key", /trusted: none/);
});

Deno.test("sign: anything but the canonical eight lines is malformed", async () => {
  const key = await newKey();
  const text = dec.decode(await signRelease(RELEASE, key));
  const lines = text.split("\n");
  const m = (t: string | Uint8Array, re: RegExp) => refused(t, [key], "malformed", re);
  await m(text + "x".repeat(ENVELOPE_MAX_BYTES), /more than 1024/);
  await m(text.slice(0, -1), /does not end with a newline/);
  await m(text.replaceAll("\n", "\r\n"), /not printable ASCII/);
  await m(text.replace("release/1.2", "r\u00e9lease"), /not printable ASCII/);
  await m(text.replace("ref release/1.2", "ref a\tb"), /not printable ASCII/);
  await m(
    text.replace(RELEASE_DOMAIN, "fanout-release-v2"),
    /expected first line "fanout-release-v1"/,
  );
  await m(text + "extra\n", /expected 8 lines, got 9/);
  await m(text.replace(`${lines[2]}\n`, ""), /expected 8 lines, got 7/);
  await m([lines[0], lines[2], lines[1], ...lines.slice(3)].join("\n"), /line 2: expected "key …"/);
  await m(text.replace("seq 42", "seq 042"), /line 3: seq "042"/);
  await m(text.replace("seq 42", "seq  42"), /line 3: seq " 42"/);
  await m(
    text.replace("seq 42", "seq 9999999999999999"),
    /line 3: seq 9999999999999999 is too big/,
  );
  await m(text.replace("commit 3f1c", "commit 3F1C"), /line 4: commit/);
  await m(text.replace("ref release/1.2", "ref a b"), /line 5: ref "a b"/);
  await m(text.replace("ref release/1.2", "ref "), /line 5: ref ""/);
  await m(text.replace(".266Z", ".266+01:00"), /line 6: published_at/);
  await m(
    text.replace("2026-12-04", "2026-13-45"),
    /published_at "2026-13-45T15:54:55.266Z" is not a time/,
  );
  await m(text.replace("manifest ab", "manifest a"), /line 7: manifest/);
  await m(
    text.replace("signature ", "signature  "),
    /line 8: expected "signature <88 base64 characters>"/,
  );
  await m(text.replace("signature ", "sig "), /line 8: expected "signature/);
  // The same 64 bytes with non-zero spare bits: not the one spelling.
  const sig = lines[7].slice("signature ".length);
  const last = sig[85],
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const sloppy = sig.slice(0, 85) + alphabet[alphabet.indexOf(last) | 1] + "==";
  await m(text.replace(sig, sloppy), /line 8: expected "signature/);
});

Deno.test("sign: a release with a field of no valid spelling is not signed", async () => {
  const key = await newKey();
  const no = (r: Partial<Release>, re: RegExp) =>
    assert.rejects(
      signRelease({ ...RELEASE, ...r }, key),
      (e) => e instanceof SignatureError && e.reason === "malformed" && re.test(e.message),
    );
  await no({ seq: -1 }, /seq "-1"/);
  await no({ seq: 1.5 }, /seq "1.5"/);
  await no({ commit: "HEAD" }, /commit "HEAD"/);
  await no({ ref: "main\nkey 0000000000000000" }, /ref "main\\nkey/);
  await no({ published_at: "yesterday" }, /published_at "yesterday"/);
  await no({ manifest_sha256: "" }, /manifest ""/);
});

Deno.test("sign: markerMismatch names the first field a marker differs in", () => {
  const marker = {
    seq: 42,
    commit: RELEASE.commit,
    ref: RELEASE.ref,
    published_at: RELEASE.published_at,
  };
  assert.equal(markerMismatch(RELEASE, marker), null);
  assert.equal(markerMismatch(RELEASE, { ...marker, seq: 41 }), "seq");
  assert.equal(markerMismatch(RELEASE, { ...marker, ref: "main" }), "ref");
  assert.equal(
    markerMismatch(RELEASE, { ...marker, published_at: "2026-12-04T15:54:55Z" }),
    "published_at",
  );
});

Deno.test("sign: readEnvelope reads the release of any well-formed envelope, trusted or not, and null for the rest", async () => {
  const envelope = await signRelease(RELEASE, await newKey());
  assert.deepEqual(readEnvelope(envelope), RELEASE);
  assert.equal(readEnvelope(enc.encode("fanout-release-v1\nseq 1\n")), null);
  assert.equal(readEnvelope(new Uint8Array(ENVELOPE_MAX_BYTES + 1)), null);
  const bent = dec.decode(envelope).replace("seq 42", "seq 43");
  assert.deepEqual(readEnvelope(enc.encode(bent)), { ...RELEASE, seq: 43 }, "not verified");
});
