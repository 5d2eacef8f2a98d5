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

/**
 * The command line of process `pid`, its arguments joined by spaces; "" once
 * it is gone. A pid read from a pid file is checked against it before a
 * signal: the file may be stale, and its pid another process's by now.
 *
 * @example
 * ```ts
 * if ((await commandLine(pid)).includes(confPath)) killGroup(pid, "SIGTERM");
 * ```
 */
export async function commandLine(pid: number): Promise<string> {
  if (!(pid > 1)) return "";
  try {
    return (await Deno.readTextFile(`/proc/${pid}/cmdline`)).replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** SIGKILLs every registered group: the last resort on exit. */
export function killAllGroups(): void {
  for (const pid of groups) killGroup(pid, "SIGKILL");
  groups.clear();
}

/**
 * The environment variable a supervisor (the test lab) sets to its own pid
 * when fanout must not outlive it: fanout checks every second that this pid
 * is still its parent, and stops as on SIGTERM (its rsync daemons with it)
 * when it is not. Children of `Deno.Command` survive their parent, and a
 * parent-death signal (PR_SET_PDEATHSIG) fires when the forking *thread*
 * exits, which in Deno may be any worker thread, so fanout watches instead.
 */
export const PARENT_PID_ENV = "FANOUT_PARENT_PID";

/**
 * Watches the parent named by {@linkcode PARENT_PID_ENV}, when it is set:
 * once it is gone (this process is re-parented), fanout sends itself SIGTERM,
 * the clean shutdown every role already has, and exits after `graceMs` if
 * that did not end it. The variable is removed, so processes fanout starts
 * (rsync, hooks) do not inherit a pid that is not their parent's. Returns a
 * function that stops watching.
 *
 * @example
 * ```ts
 * // FANOUT_PARENT_PID=$$ fanout --role primary -c fleet.yaml
 * const stop = exitWithParent();
 * stop();
 * ```
 */
export function exitWithParent(everyMs = 1000, graceMs = 10_000): () => void {
  let wanted: number;
  try {
    wanted = Number(Deno.env.get(PARENT_PID_ENV) ?? "");
    Deno.env.delete(PARENT_PID_ENV);
  } catch {
    return () => {}; // no --allow-env: nothing was asked
  }
  if (!Number.isInteger(wanted) || wanted <= 1) return () => {};
  const timer = setInterval(() => {
    if (Deno.ppid === wanted) return;
    clearInterval(timer);
    // The parent died (or died before this process looked): stop as asked to.
    Deno.kill(Deno.pid, "SIGTERM");
    Deno.unrefTimer(setTimeout(() => {
      killAllGroups();
      Deno.exit(143);
    }, graceMs));
  }, everyMs);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
