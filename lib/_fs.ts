// Small file-system helpers shared by several modules.

/** True when something (a file, a directory, a link, even a dangling one) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * {@linkcode exists}, synchronously. For the client's few small files: each
 * async file-system call costs a thread hop (~0.3 ms), and a no-op cron run
 * makes a dozen of them in a run of ~30 ms.
 */
export function existsNow(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The text of `path`, or null when it cannot be read. */
export async function readTextOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

/** {@linkcode readTextOrNull}, synchronously (see {@linkcode existsNow}). */
export function readTextNow(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Thrown by {@linkcode readTextUpTo} when a file holds more than its bound. */
export class FileTooBigError extends Error {
  /** The size seen: at least `max + 1` bytes. */
  readonly size: number;
  constructor(path: string, size: number, max: number) {
    super(`${path} is ${size} bytes, more than ${max}`);
    this.name = "FileTooBigError";
    this.size = size;
  }
}

/**
 * The text of the regular file `path`, read without ever holding more than
 * `max + 1` bytes: a file that is (or grows) bigger throws
 * {@linkcode FileTooBigError} before it is parsed; a FIFO or a device is
 * refused instead of read.
 *
 * @throws {Deno.errors.NotFound} etc. as Deno.open does; {@linkcode FileTooBigError}; a
 * `Deno.errors.IsADirectory` for anything that is not a regular file.
 *
 * @example
 * ```ts
 * const text = await readTextUpTo("/etc/fanout/fanout.yaml", 1 << 20);
 * ```
 */
export async function readTextUpTo(path: string, max: number): Promise<string> {
  const st = await Deno.stat(path);
  if (!st.isFile) throw new Deno.errors.IsADirectory(`${path} is not a regular file`);
  if (st.size > max) throw new FileTooBigError(path, st.size, max);
  using f = await Deno.open(path);
  const buf = new Uint8Array(max + 1);
  let n = 0;
  while (n < buf.length) {
    const got = await f.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  if (n > max) throw new FileTooBigError(path, n, max);
  return new TextDecoder().decode(buf.subarray(0, n));
}
