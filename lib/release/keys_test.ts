import assert from "node:assert/strict";
import { ConfigError } from "../core/mod.ts";
import {
  generateKeyPair,
  KeyError,
  loadSigningKey,
  parsePublicKey,
  PUBLIC_KEY_PREFIX,
  verifyingKey,
  writePrivateKey,
} from "./keys.ts";
import { withDir } from "./_testing.ts";

const enc = new TextEncoder();

Deno.test("keys: a new pair writes, loads, signs and verifies; the text form parses back to the same key", async () => {
  await withDir(async (dir) => {
    const { privatePem, publicKey } = await generateKeyPair();
    assert.match(publicKey.text, /^ed25519:[A-Za-z0-9+/]{43}=$/);
    assert.equal(publicKey.id, publicKey.raw.subarray(0, 8).toHex());
    assert.deepEqual(parsePublicKey(publicKey.text), publicKey);

    await writePrivateKey(`${dir}/release.key`, privatePem);
    assert.equal(Deno.statSync(`${dir}/release.key`).mode! & 0o777, 0o600);
    await assert.rejects(
      writePrivateKey(`${dir}/release.key`, privatePem),
      Deno.errors.AlreadyExists,
    );

    const key = await loadSigningKey(`${dir}/release.key`);
    assert.deepEqual(key.publicKey, publicKey);
    assert.equal(key.privateKey.extractable, false);
    const data = enc.encode("fanout");
    const sig = await crypto.subtle.sign("Ed25519", key.privateKey, data);
    assert.ok(await crypto.subtle.verify("Ed25519", await verifyingKey(publicKey), sig, data));
    const other = (await generateKeyPair()).publicKey;
    assert.notEqual(other.id, publicKey.id);
    assert.ok(!await crypto.subtle.verify("Ed25519", await verifyingKey(other), sig, data));
  });
});

Deno.test("keys: a key openssl made loads, with the public key openssl derives", async () => {
  const has = await new Deno.Command("sh", { args: ["-c", "command -v openssl"], stdout: "null" })
    .output();
  if (!has.success) return; // no openssl: nothing to compare with
  await withDir(async (dir) => {
    const file = `${dir}/k.pem`;
    const run = (args: string[]) => new Deno.Command("openssl", { args }).outputSync();
    assert.ok(run(["genpkey", "-algorithm", "ed25519", "-out", file]).success);
    Deno.chmodSync(file, 0o600);
    const der = run(["pkey", "-in", file, "-pubout", "-outform", "DER"]).stdout;
    const key = await loadSigningKey(file);
    assert.equal(key.publicKey.text, PUBLIC_KEY_PREFIX + der.slice(-32).toBase64());
  });
});

Deno.test("keys: a key file open to others, a symlink, another user's, or not a key is refused, naming the setting", async () => {
  await withDir(async (dir) => {
    const { privatePem } = await generateKeyPair();
    const file = `${dir}/release.key`;
    await writePrivateKey(file, privatePem);
    const refused = async (path: string, re: RegExp) => {
      const e = await loadSigningKey(path, { setting: "publisher.signing_key" }).then(
        () => assert.fail(`${path} loaded`),
        (e) => e,
      );
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.problems[0].path, "publisher.signing_key");
      assert.match(e.message, re);
      assert.ok(!e.message.includes(privatePem.split("\n")[1]), "no key bytes in a message");
    };

    await refused(`${dir}/absent.key`, /does not exist/);
    Deno.chmodSync(file, 0o640);
    await refused(file, /mode 640, readable by group; expected 600 or 400 \(chmod 600/);
    Deno.chmodSync(file, 0o600);
    Deno.symlinkSync(file, `${dir}/link.key`);
    await refused(`${dir}/link.key`, /is a symlink/);
    Deno.mkdirSync(`${dir}/d.key`, { mode: 0o700 });
    await refused(`${dir}/d.key`, /not a regular file/);
    if (Deno.uid() === 0) {
      Deno.chownSync(file, 65534, null);
      await refused(file, /owned by uid 65534, not by this user \(uid 0\)/);
      Deno.chownSync(file, 0, null);
    }

    const bad = async (name: string, text: string) => {
      await Deno.writeTextFile(`${dir}/${name}`, text, { mode: 0o600 });
      await refused(`${dir}/${name}`, /does not hold an Ed25519 private key in PEM/);
    };
    const [begin, body, end] = privatePem.trim().split("\n");
    await bad("empty", "");
    await bad("twice", privatePem + privatePem);
    await bad("cut", `${begin}\n${body.slice(0, 40)}\n${end}\n`);
    await bad("crlf", privatePem.replaceAll("\n", "\r\n"));
    await bad("public", `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`);
    // The right length, another algorithm's header (X25519, OID 1.3.101.110).
    const der = Uint8Array.fromBase64(body);
    der[11] = 0x6e;
    await bad("x25519", `${begin}\n${der.toBase64()}\n${end}\n`);
    await Deno.writeFile(`${dir}/big`, new Uint8Array(5000).fill(65), { mode: 0o600 });
    await refused(`${dir}/big`, /too big/);
    // Without its trailing newline, the same key still loads.
    await Deno.writeTextFile(`${dir}/nonl`, privatePem.trimEnd(), { mode: 0o600 });
    await loadSigningKey(`${dir}/nonl`);
  });
});

Deno.test("keys: a public key is parsed strictly: prefix, length, alphabet, canonical padding", () => {
  const good = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
  assert.equal(parsePublicKey(good).raw.length, 32);
  const refused = (text: string, re: RegExp) =>
    assert.throws(() => parsePublicKey(text), (e) => e instanceof KeyError && re.test(e.message));
  refused("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", /prefix is missing/);
  refused("ED25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", /prefix is missing/);
  refused(" " + good, /prefix is missing/);
  refused(good + "\n", /got 45 characters/);
  refused(good.slice(0, -1), /got 43 characters/);
  refused("ed25519:", /got 0 characters/);
  refused(good.replace("/", "_"), /not canonical base64/);
  refused(good.replace("=", "A"), /not canonical base64/);
  // "Ro=" and "Rp=" decode alike; only the one with zero spare bits is the key's text.
  refused(good.replace("URo=", "URp="), /not canonical base64/);
  refused("ed25519:\x1b[2J" + "A".repeat(40) + "=", /\\u001b/);
});
