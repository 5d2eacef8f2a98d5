/**
 * Reading a small file that was checked by `lstat` first, and only that
 * file: one swapped for a symlink or another file since the check is not
 * read. Internal to lib/release.
 *
 * @module
 */

/**
 * The bytes of the regular file at `path` (kept state: a record, a
 * manifest), read as hostile: `lstat` first, never through a symlink, at
 * most `maxBytes`. Null when there is nothing there.
 *
 * @throws what `fail(message)` makes, for something else than a regular
 * file, one past `maxBytes`, or one that changed while it was read.
 *
 * @example
 * ```ts
 * const bytes = readKept(file, 64 << 20, (m) => new RecordError(m));
 * ```
 */
export function readKept(
  path: string,
  maxBytes: number,
  fail: (message: string) => Error,
): Uint8Array<ArrayBuffer> | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (!st.isFile) throw fail(`${path} is not a regular file`);
  const bytes = readChecked(path, st, maxBytes);
  if (bytes === "too big") throw fail(`${path} is more than ${maxBytes} bytes`);
  if (bytes === "changed") throw fail(`${path} changed while it was read`);
  return bytes;
}

/**
 * The bytes of the regular file at `path`, which `lstat` gave as `st`
 * (checked by the caller, and `st.size` at most `maxBytes`); "changed" when
 * what is opened is not that file or not of that size, "too big" past
 * `maxBytes`.
 *
 * @example
 * ```ts
 * const st = Deno.lstatSync(path);
 * if (st.isFile && st.size <= 4096) {
 *   const bytes = readChecked(path, st, 4096);
 * }
 * ```
 */
export function readChecked(
  path: string,
  st: Deno.FileInfo,
  maxBytes: number,
): Uint8Array<ArrayBuffer> | "changed" | "too big" {
  if (st.size > maxBytes) return "too big";
  using f = Deno.openSync(path, { read: true });
  const now = f.statSync();
  if (!now.isFile || now.ino !== st.ino || now.dev !== st.dev) return "changed";
  // One byte more than the size: a file that grew is seen.
  const buf = new Uint8Array(st.size + 1);
  let n = 0;
  while (n < buf.length) {
    const got = f.readSync(buf.subarray(n));
    if (!got) break;
    n += got;
  }
  return n === st.size ? buf.subarray(0, n) : "changed";
}
