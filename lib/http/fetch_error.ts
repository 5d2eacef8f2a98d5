// fetch() fails with "fetch failed" and hides the reason in `cause`
// ("error sending request for url (…): client error (Connect): tcp connect
// error: Connection refused (os error 111)"): keep only the reason.

/**
 * Why a fetch failed, in a few words ("connection refused", "timed out").
 * A sentence's capital goes ("Connection refused"); an acronym's stays
 * ("HTTP 500", "I/O error").
 *
 * @example
 * ```ts
 * fetchFailure(new Error("HTTP 500")); // "HTTP 500"
 * fetchFailure(new Error("Connection refused")); // "connection refused"
 * ```
 */
export function fetchFailure(e: unknown): string {
  const err = e as (Error & { cause?: unknown }) | undefined;
  if (err?.name === "AbortError" || err?.name === "TimeoutError") return "timed out";
  const inner = err?.cause instanceof Error ? err.cause.message : err?.message ?? String(e);
  const last = inner.replace(/ \(os error \d+\)/g, "").split(": ").pop()!.trim();
  return /^\p{Lu}\p{Ll}/u.test(last) ? last.charAt(0).toLowerCase() + last.slice(1) : last;
}
