/**
 * SHA-256 in plain TypeScript, synchronous and incremental: WebCrypto's
 * digest takes a whole buffer and answers on another thread, which costs
 * more than the hashing itself for the small inputs of a code tree (a
 * symlink's target, a key, a file of a few KiB), and cannot hash a large file
 * in pieces. Internal to lib/release.
 *
 * @module
 */

const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const IV = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];
const W = new Int32Array(64);

/** Runs the 64-byte blocks of `d[p, end)` into the state `h`. */
function compress(h: Int32Array, d: Uint8Array, p: number, end: number): void {
  let h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3], h4 = h[4], h5 = h[5], h6 = h[6], h7 = h[7];
  for (; p < end; p += 64) {
    for (let j = 0, q = p; j < 16; j++, q += 4) {
      W[j] = (d[q] << 24) | (d[q + 1] << 16) | (d[q + 2] << 8) | d[q + 3];
    }
    for (let j = 16; j < 64; j++) {
      const a = W[j - 15], b = W[j - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      W[j] = (W[j - 16] + s0 + W[j - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d0 = h3, e = h4, f = h5, g = h6, hh = h7;
    for (let j = 0; j < 64; j++) {
      const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + s1 + ((e & f) ^ (~e & g)) + K[j] + W[j]) | 0;
      const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d0 + t1) | 0;
      d0 = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d0) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + hh) | 0;
  }
  h[0] = h0, h[1] = h1, h[2] = h2, h[3] = h3, h[4] = h4, h[5] = h5, h[6] = h6, h[7] = h7;
}

/**
 * An incremental SHA-256: `update` any number of times, then `digest` once
 * (or `reset` and start again).
 *
 * @example
 * ```ts
 * const h = new Sha256();
 * h.update(new TextEncoder().encode("ab")).update(new TextEncoder().encode("c"));
 * h.hex(); // "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
 * ```
 */
export class Sha256 {
  #h = new Int32Array(8);
  #block = new Uint8Array(64);
  #fill = 0;
  #length = 0;

  constructor() {
    this.reset();
  }

  /** Starts over, as a new hash. */
  reset(): this {
    this.#h.set(IV);
    this.#fill = 0;
    this.#length = 0;
    return this;
  }

  /** Adds `data`; the hash keeps no reference to it. */
  update(data: Uint8Array): this {
    let i = 0;
    this.#length += data.length;
    if (this.#fill > 0) {
      i = Math.min(64 - this.#fill, data.length);
      this.#block.set(data.subarray(0, i), this.#fill);
      this.#fill += i;
      if (this.#fill < 64) return this;
      compress(this.#h, this.#block, 0, 64);
      this.#fill = 0;
    }
    const whole = i + ((data.length - i) & ~63);
    compress(this.#h, data, i, whole);
    if (whole < data.length) {
      this.#block.set(data.subarray(whole));
      this.#fill = data.length - whole;
    }
    return this;
  }

  /** The 32-byte digest of everything added; the hash is spent until {@linkcode reset}. */
  digest(): Uint8Array {
    const bits = this.#length * 8;
    const pad = new Uint8Array(((this.#fill + 9 + 63) & ~63) - this.#fill);
    pad[0] = 0x80;
    const tail = new DataView(pad.buffer);
    tail.setUint32(pad.length - 8, Math.floor(bits / 0x1_0000_0000));
    tail.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(32);
    const view = new DataView(out.buffer);
    for (let j = 0; j < 8; j++) view.setInt32(j * 4, this.#h[j]);
    return out;
  }

  /** {@linkcode digest} in lowercase hex. */
  hex(): string {
    return this.digest().toHex();
  }
}

/**
 * The SHA-256 of `data` in lowercase hex.
 *
 * @example
 * ```ts
 * sha256Hex(new Uint8Array()); // "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
 * ```
 */
export function sha256Hex(data: Uint8Array): string {
  return new Sha256().update(data).hex();
}
