// Bounded reads of HTTP bodies: a peer's request or answer is read up to a
// cap, never whole, so an endless or huge body costs at most the cap.

/** The most a fanout server's `/status` read by another host may hold. */
export const MAX_STATUS_BODY = 1024 * 1024;

/**
 * The body of `msg` (a request or a response) as text, or null when it is
 * longer than `max` bytes (what was read is dropped and the rest cancelled).
 *
 * @example
 * ```ts
 * const res = await fetch("http://127.0.0.1:9090/status");
 * const text = await readLimited(res, MAX_STATUS_BODY); // null past 1 MiB
 * ```
 */
export async function readLimited(msg: Request | Response, max: number): Promise<string | null> {
  const declared = Number(msg.headers.get("content-length") ?? "0");
  if (declared > max) {
    await msg.body?.cancel().catch(() => {});
    return null;
  }
  if (!msg.body) return "";
  const reader = msg.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}
