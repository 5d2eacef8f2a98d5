/**
 * Writing a file of the publisher's state whole or not at all. Internal to
 * lib/publish.
 *
 * @module
 */

/**
 * Writes `data` to `file` through a temporary file renamed over it: a reader
 * (or a publish after a killed one) sees the old content or the new, never
 * half of it.
 *
 * @example
 * ```ts
 * await writeAtomic(`${stateDir}/publish.json`, formatMarker(marker));
 * ```
 */
export async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp`;
  if (typeof data === "string") await Deno.writeTextFile(tmp, data);
  else await Deno.writeFile(tmp, data);
  await Deno.rename(tmp, file);
}
