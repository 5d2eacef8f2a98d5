/**
 * Shutdown on SIGTERM/SIGINT: long-running roles get an AbortSignal that fires
 * on the first signal, so they can stop their daemons and drain. A second
 * signal means the operator is impatient: every child group is killed and the
 * process exits at once.
 *
 * @module
 */

import { killAllGroups } from "./children.ts";

/**
 * Returns a signal aborted by the first SIGTERM or SIGINT (its reason is the
 * signal's name), and a function that removes the handlers again.
 *
 * @example
 * ```ts
 * const { signal, dispose } = shutdownSignal();
 * await new Promise((r) => signal.addEventListener("abort", r));
 * dispose();
 * ```
 */
export function shutdownSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const handlers: [Deno.Signal, () => void][] = [];
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    const h = () => {
      if (ac.signal.aborted) {
        killAllGroups();
        Deno.exit(130);
      }
      ac.abort(sig);
    };
    Deno.addSignalListener(sig, h);
    handlers.push([sig, h]);
  }
  return {
    signal: ac.signal,
    dispose: () => {
      for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    },
  };
}

/** Resolves when `signal` aborts (at once if it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((r) => signal.addEventListener("abort", () => r(), { once: true }));
}
