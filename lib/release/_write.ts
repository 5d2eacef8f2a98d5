/**
 * Writing a file of kept state whole or not at all, readable by its owner
 * only. Internal to lib/release.
 *
 * @module
 */

/**
 * Writes `bytes` to `path` through a temporary file renamed over it (mode
 * 600): a reader sees the old content or the new, never half of it.
 *
 * @example
 * ```ts
 * await writePrivate("/var/lib/fanout/git1/staging.record", bytes);
 * ```
 */
export async function writePrivate(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
