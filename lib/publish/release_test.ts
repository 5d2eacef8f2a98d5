import assert from "node:assert/strict";
import { type Fleet, parseFleet } from "../config/mod.ts";
import { ConfigError } from "../core/mod.ts";
import {
  generateKeyPair,
  type PublicKey,
  type SigningKey,
  signRelease,
  writePrivateKey,
} from "../release/mod.ts";
import type { VersionMarker } from "../version/mod.ts";
import { releaseCurrent, releaseKey, type StagingManifest } from "./release.ts";

const BASE = `tree: plugins
primary:
  name: rsync1
  address: 10.0.0.10
  path: /data/rsync/plugins
publisher:
  name: git1
  address: 10.0.0.5
`;

function fleetOf(keyFile: string, listed: PublicKey[]): Promise<Fleet> {
  const keys = listed.map((k) => k.text).join(", ");
  return parseFleet(
    `${BASE}release:\n  signing_key_file: ${keyFile}\n  public_keys: [${keys}]\n`,
    "/etc/fanout/fanout.yaml",
  );
}

async function withKeys(
  fn: (dir: string, a: PublicKey, b: PublicKey) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const a = await generateKeyPair(), b = await generateKeyPair();
    await writePrivateKey(`${dir}/a.key`, a.privatePem);
    await writePrivateKey(`${dir}/b.key`, b.privatePem);
    await fn(dir, a.publicKey, b.publicKey);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("releaseKey: none in an unsigned fleet; the file's key when listed; refused when missing or not listed", async () => {
  await withKeys(async (dir, a, b) => {
    assert.equal(await releaseKey(await parseFleet(BASE, "/etc/fanout/fanout.yaml")), null);
    const key = await releaseKey(await fleetOf(`${dir}/a.key`, [b, a]));
    assert.equal(key?.publicKey.text, a.text);
    await assert.rejects(
      async () => await releaseKey(await fleetOf(`${dir}/a.key`, [b])),
      (e) =>
        e instanceof ConfigError && e.exitCode === 2 &&
        e.message.includes(`release.signing_key_file: ${dir}/a.key holds key ${a.text}`) &&
        e.message.includes(`(it lists ${b.id})`),
    );
    await assert.rejects(
      async () => await releaseKey(await fleetOf(`${dir}/none.key`, [a])),
      /none\.key does not exist, .*"fanout keygen -c \/etc\/fanout\/fanout\.yaml"/,
    );
  });
});

Deno.test("releaseCurrent: only an envelope of this marker and manifest, by a listed key", async () => {
  await withKeys(async (dir, a, b) => {
    const fleet = await fleetOf(`${dir}/a.key`, [a]);
    const key = (await releaseKey(fleet)) as SigningKey;
    const other = (await releaseKey(await fleetOf(`${dir}/b.key`, [b]))) as SigningKey;
    const marker: VersionMarker = {
      seq: 7,
      commit: "3f1c0d2e",
      ref: "main",
      published_at: "2026-12-04T15:54:55.266Z",
    };
    const m: StagingManifest = {
      bytes: new Uint8Array(),
      digest: "ab".repeat(32),
      paths: 0,
      hashed: 0,
    };
    const sign = (k: SigningKey, over = {}) =>
      signRelease({ ...marker, manifest_sha256: m.digest, ...over }, k);
    assert.equal(await releaseCurrent(fleet, await sign(key), marker, m), true);
    assert.equal(await releaseCurrent(fleet, null, marker, m), false, "none on the primary");
    assert.equal(await releaseCurrent(fleet, await sign(other), marker, m), false, "not listed");
    assert.equal(
      await releaseCurrent(fleet, await sign(key, { manifest_sha256: "cd".repeat(32) }), marker, m),
      false,
      "another manifest",
    );
    assert.equal(await releaseCurrent(fleet, await sign(key, { seq: 6 }), marker, m), false);
    assert.equal(
      await releaseCurrent(fleet, new TextEncoder().encode("junk\n"), marker, m),
      false,
      "not an envelope",
    );
  });
});
