/**
 * The validated fleet of the last client run, kept so the next run can skip
 * validating the same file again.
 *
 * A cron client starts every minute on every host, and reading the fleet file
 * the full way (the YAML parser, the schema built and checked) is a large
 * share of a run that finds nothing to do (docs/benchmarks.md). The cache holds the fleet file's whole
 * text, the overrides from the command line, the role, the host name, the
 * working directory and fanout's own version, and is used only when all of
 * them are the same again: any edit to the file, any other flag, another
 * build, and the file is read and validated the full way (and the cache
 * rewritten).
 *
 * It lives in `$XDG_CACHE_HOME/fanout`, else `~/.cache/fanout` (next to
 * Deno's own code cache), one small file per fleet file, role and name;
 * deleting it is always safe. A cache that cannot be read or written is
 * skipped without a word: it only ever saves time.
 *
 * @module
 */

import type { Fleet } from "./config.ts";
import type { Override } from "./options.ts";
import { DEFAULTS, fnv1a, readTextUpTo, VERSION, writePrivate } from "../core/mod.ts";

/** Everything a validated fleet depends on. */
export interface FleetCacheKey {
  /** The fleet file as given, or null for a client set up by flags alone. */
  file: string | null;
  /** Its whole text (null without a file). */
  text: string | null;
  overrides: Override[];
  role: string;
  /** `--name`, else the machine's host name at the time. */
  name: string;
  cwd: string;
  version: string;
}

/**
 * The key of a fleet read from `file` (null for flags alone) with
 * `overrides`, for `role` named `name`; null when the file cannot be read
 * (the full path then reports why).
 */
export async function fleetCacheKey(
  file: string | null,
  overrides: Override[],
  role: string,
  name: string,
): Promise<FleetCacheKey | null> {
  let text: string | null = null;
  if (file !== null) {
    try {
      // Bounded: a huge file or a FIFO is for loadFleet to refuse, in words.
      text = await readTextUpTo(file, DEFAULTS.maxFleetBytes);
    } catch {
      return null;
    }
  }
  return { file, text, overrides, role, name, cwd: Deno.cwd(), version: VERSION };
}

/**
 * The fleet cached under `key`, or null (no cache, another key, unreadable).
 *
 * @example
 * ```ts
 * const key = await fleetCacheKey("/etc/fanout/fanout.yaml", [], "client", "web1");
 * const fleet = key && await readCachedFleet(key);
 * ```
 */
export async function readCachedFleet(key: FleetCacheKey): Promise<Fleet | null> {
  const path = cachePath(key);
  if (!path) return null;
  try {
    const entry = JSON.parse(await Deno.readTextFile(path));
    return entry?.key === JSON.stringify(key) ? entry.fleet as Fleet : null;
  } catch {
    return null;
  }
}

/**
 * Keeps `fleet` under `key`. A fleet that JSON cannot carry exactly (a value
 * that is not plain data) is not kept; failures are ignored.
 */
export async function cacheFleet(key: FleetCacheKey, fleet: Fleet): Promise<void> {
  const path = cachePath(key);
  if (!path || !plainData(fleet)) return;
  const dir = path.slice(0, path.lastIndexOf("/"));
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const text = JSON.stringify({ key: JSON.stringify(key), fleet }) + "\n";
    await writePrivate(path, new TextEncoder().encode(text));
  } catch { /* not kept: the next run reads the fleet file again */ }
}

function cachePath(key: FleetCacheKey): string | null {
  let base: string | undefined;
  try {
    base = Deno.env.get("XDG_CACHE_HOME") || undefined;
    if (!base) {
      const home = Deno.env.get("HOME");
      if (home) base = `${home}/.cache`;
    }
  } catch {
    return null; // no --allow-env
  }
  if (!base?.startsWith("/")) return null;
  const id = fnv1a(JSON.stringify([key.file, key.role, key.name, key.cwd])).toString(16)
    .padStart(8, "0");
  return `${base}/fanout/fleet-${key.role}-${id}.json`;
}

/** True for what JSON.parse(JSON.stringify(v)) gives back unchanged. */
function plainData(v: unknown): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(plainData);
  if (typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return false;
  return Object.values(v as Record<string, unknown>).every(plainData);
}
