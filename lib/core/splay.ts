/**
 * Deterministic per-host start delays, so hundreds of cron clients started at
 * the same second reach the servers spread over the splay window, and each
 * host keeps the same slot run after run (predictable, unlike a random sleep).
 *
 * @module
 */

/**
 * 32-bit FNV-1a of `text` (UTF-8).
 *
 * @example
 * ```ts
 * fnv1a("web1"); // the same number on every machine, every run
 * ```
 */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // FNV's low bits mix poorly for short keys; fold in a final avalanche.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/**
 * The delay in ms, in `[0, splayMs)`, for host `name`: 0 when `splayMs` is 0.
 *
 * @example
 * ```ts
 * splayDelay("web1", 30_000); // e.g. 17_342, always the same for web1
 * ```
 */
export function splayDelay(name: string, splayMs: number): number {
  if (splayMs <= 0) return 0;
  return Math.floor((fnv1a(name) / 0x1_0000_0000) * splayMs);
}

/**
 * Sleeps `ms`; resolves early (with false) when `signal` aborts.
 *
 * @example
 * ```ts
 * if (!(await sleep(splayDelay(host, 30_000), signal))) return; // interrupted
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(!signal?.aborted);
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(t);
      signal?.removeEventListener("abort", onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    const t = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
