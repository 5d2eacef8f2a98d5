/**
 * The name a host goes by when `--name` is not given.
 *
 * @module
 */

/**
 * The machine's host name, or "localhost" when it cannot be read.
 *
 * @example
 * ```ts
 * const name = opts.name ?? hostname(); // "rsync2"
 * ```
 */
export function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}
