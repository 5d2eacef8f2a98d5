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
