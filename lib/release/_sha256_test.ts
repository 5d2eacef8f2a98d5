import assert from "node:assert/strict";
import { Sha256, sha256Hex } from "./_sha256.ts";

const enc = new TextEncoder();

async function webCrypto(data: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data)).toHex();
}

Deno.test("sha256: known vectors", () => {
  assert.equal(
    sha256Hex(new Uint8Array()),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assert.equal(
    sha256Hex(enc.encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    sha256Hex(enc.encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("sha256: every length around the block and padding edges, whole and in pieces, as WebCrypto", async () => {
  const data = new Uint8Array(300);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
  const h = new Sha256();
  for (let n = 0; n <= 300; n++) {
    const whole = data.subarray(0, n);
    const want = await webCrypto(whole);
    assert.equal(sha256Hex(whole), want, `length ${n}`);
    // Pieces of 1, 7 and 63 bytes: the partial-block paths.
    for (const step of [1, 7, 63]) {
      h.reset();
      for (let i = 0; i < n; i += step) h.update(whole.subarray(i, i + step));
      assert.equal(h.hex(), want, `length ${n} in pieces of ${step}`);
    }
  }
});

Deno.test("sha256: a megabyte in uneven pieces", async () => {
  const data = new Uint8Array(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i ^ (i >> 9)) & 0xff;
  const h = new Sha256();
  for (let i = 0, step = 1; i < data.length; i += step, step = step * 3 + 1 & 0xffff) {
    h.update(data.subarray(i, i + step));
  }
  assert.equal(h.hex(), await webCrypto(data));
});
