/**
 * What the tests of lib/release share: a temporary directory that is always
 * removed, and a shell line that must succeed. For tests only.
 *
 * @module
 */

/**
 * Runs `fn` with a new temporary directory, removed afterwards whatever happens.
 *
 * @example
 * ```ts
 * await withDir(async (dir) => await Deno.writeTextFile(`${dir}/a`, "x"));
 * ```
 */
export async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs `script` with `sh -c` in `cwd`; throws with its stderr when it fails.
 *
 * @example
 * ```ts
 * sh(dir, "mkdir -p t/a && ln -s a t/l");
 * ```
 */
export function sh(cwd: string, script: string): void {
  const out = new Deno.Command("sh", { args: ["-c", script], cwd }).outputSync();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
}
