// `fanout keygen` end to end: the binary run as a process writes a private
// key of mode 600 that the publisher loads, prints a public key that parses
// and is that key's, and never writes over an existing file.
import assert from "node:assert/strict";
import { type Ran, withLab } from "./_helpers.ts";
import { loadSigningKey, parsePublicKey } from "../lib/release/mod.ts";

/** The public key `keygen` printed: the one line `- ed25519:…`. */
function printedKey(r: Ran): string {
  assert.equal(r.code, 0, `keygen failed (${r.code}):\n${r.stderr}`);
  const lines = r.stdout.split("\n").filter((l) => /^\s+- ed25519:/.test(l));
  assert.equal(lines.length, 1, r.stdout);
  return lines[0].trim().slice(2);
}

Deno.test("keygen: a new key of mode 600 whose printed public key parses and is its own; never over a file", async () => {
  await withLab(async (lab) => {
    const out = `${lab.dir}/keys/release.key`;
    await Deno.mkdir(`${lab.dir}/keys`);
    const made = await lab.run(["keygen", "--out", out]);
    const text = printedKey(made);
    const key = parsePublicKey(text);
    assert.match(made.stdout, new RegExp(`^wrote the private key to ${out} \\(mode 600`));
    assert.ok(made.stdout.includes(`(key id ${key.id})`), made.stdout);
    assert.equal(made.stderr, "");
    assert.equal((await Deno.lstat(out)).mode! & 0o777, 0o600);
    // The file holds the private half of exactly the key printed.
    const loaded = await loadSigningKey(out);
    assert.equal(loaded.publicKey.text, text);

    // Again at the same path: refused in one line, the key kept.
    const before = await Deno.readFile(out);
    const again = await lab.run(["keygen", "--out", out]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /^fanout: .*release\.key already exists: refusing to overwrite it/);
    assert.equal(again.stderr.trim().split("\n").length, 1, again.stderr);
    assert.equal(again.stdout, "");
    assert.deepEqual(await Deno.readFile(out), before);

    // Nor through a symlink planted there, dangling or not.
    const link = `${lab.dir}/keys/planted.key`;
    await Deno.symlink(`${lab.dir}/keys/elsewhere`, link);
    const planted = await lab.run(["keygen", "--out", link]);
    assert.equal(planted.code, 2, planted.stderr);
    await assert.rejects(Deno.lstat(`${lab.dir}/keys/elsewhere`), Deno.errors.NotFound);

    // A directory that is not there: one line, exit 2.
    const nowhere = await lab.run(["keygen", "--out", `${lab.dir}/nowhere/release.key`]);
    assert.equal(nowhere.code, 2, nowhere.stderr);
    assert.match(nowhere.stderr, /^fanout: cannot write .*nowhere\/release\.key: its directory/);
  });
});

Deno.test("keygen: with -c the key goes to release.signing_key_file, and the fleet's keys are named", async () => {
  await withLab(async (lab) => {
    const first = `${lab.dir}/first.key`;
    await lab.fleet({ replicas: [], extra: `release:\n  signing_key_file: ${first}` });
    const a = printedKey(await lab.run(["keygen", "-c", lab.fleetFile]));
    assert.equal((await loadSigningKey(first)).publicKey.text, a);

    // With the key listed, a second one (a rotation) is told to keep the first for now.
    await lab.fleet({
      replicas: [],
      extra: `release:\n  signing_key_file: ${first}\n  public_keys: [${a}]`,
    });
    const next = await lab.run(["keygen", "-c", lab.fleetFile, "--out", `${lab.dir}/next.key`]);
    const b = printedKey(next);
    assert.notEqual(a, b);
    assert.match(
      next.stdout,
      /the fleet lists 1 key now: keep it until every host has the new one/,
    );
    const taken = await lab.run(["keygen", "-c", lab.fleetFile]);
    assert.equal(taken.code, 2);
    assert.match(taken.stderr, /first\.key already exists/);
  });
});

Deno.test("keygen: --help, and --out belongs to keygen only", async () => {
  await withLab(async (lab) => {
    const h = await lab.run(["keygen", "--help"]);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /^fanout keygen \[-c FILE\] \[--out FILE\]\n/);
    assert.match(h.stdout, /--out FILE +where to write the new private key/);
    assert.match((await lab.run(["--help"])).stdout, /fanout keygen \[-c FILE\]/);
    const misplaced = await lab.run(["--role", "publish", "--out", "x"]);
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /^fanout: --out does not apply to --role publish/);
  });
});
