/**
 * Long-lived child processes (rsync daemons) run in their own process group,
 * so stopping one takes its forked per-connection children with it. This
 * module remembers every such group and kills them all if fanout exits
 * without stopping them (an uncaught error, `Deno.exit`), because children of
 * `Deno.Command` otherwise outlive their parent.
 *
 * @module
 */

const groups = new Set<number>();
let hooked = false;

/**
 * Registers the process group led by `pid`; returns a function that forgets it.
 *
 * @example
 * ```ts
 * const child = new Deno.Command("rsync", { args, detached: true }).spawn();
 * const forget = trackGroup(child.pid);
 * await child.status;
 * forget();
 * ```
 */
export function trackGroup(pid: number): () => void {
  if (!hooked) {
    hooked = true;
    globalThis.addEventListener("unload", killAllGroups);
  }
  groups.add(pid);
  return () => groups.delete(pid);
}

/**
 * Sends `signal` to the process group led by `pid`. Returns false when the
 * group no longer exists.
 */
export function killGroup(pid: number, signal: Deno.Signal = "SIGTERM"): boolean {
  try {
    Deno.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs every registered group: the last resort on exit. */
export function killAllGroups(): void {
  for (const pid of groups) killGroup(pid, "SIGKILL");
  groups.clear();
}
