// The fleet file's shape as a zod schema, built from the key declarations
// of keys.ts: shape and value checks, and the plain defaults. Defaults
// derived from other keys, and checks across keys, are config.ts's.
import { z, type ZodError, type ZodTypeAny } from "zod";
import { type Decl, FLEET, type Keys, type RawFleet } from "./keys.ts";
import { type KeyType, Refused } from "./_key_types.ts";

function got(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  return `${typeof v} ${String(v)}`;
}

/** A value checked by its key type, with a message that says what was expected. */
function leaf<Out>(type: KeyType<unknown, Out>) {
  return z.unknown().transform((v, ctx): Out => {
    const out = v === undefined ? undefined : type.check(v);
    if (out === undefined || out instanceof Refused) {
      const message = v === undefined
        ? `missing: expected ${type.expected}`
        : out instanceof Refused
        ? `${got(v)} ${out.why}`
        : `expected ${type.expected}, got ${got(v)}`;
      ctx.addIssue({ code: "custom", message });
      return z.NEVER;
    }
    return out;
  });
}

// Zod checks only what the file holds; absent keys get their defaults in
// fillDefaults, a plain walk of the declarations. Defaults through zod cost a
// transform per key, about a millisecond of every cron run for nothing: a
// declared default is a valid value by construction (keys_test.ts checks it).
function schemaOf(d: Decl): ZodTypeAny {
  switch (d.kind) {
    case "key":
      return d.fill === "required" ? leaf(d.type) : leaf(d.type).optional();
    case "section":
      return d.absent === "required" ? mappingOf(d.keys) : mappingOf(d.keys).optional();
    case "list":
      return z.array(mappingOf(d.keys)).optional();
  }
}

function mappingOf(keys: Keys) {
  return z.object(Object.fromEntries(Object.entries(keys).map(([k, d]) => [k, schemaOf(d)])))
    .strict();
}

/** Fills the absent keys of a checked mapping `obj` from `keys`; returns it. */
function fillDefaults(keys: Keys, obj: Record<string, unknown>): Record<string, unknown> {
  for (const [name, d] of Object.entries(keys)) {
    const v = obj[name];
    if (d.kind === "key") {
      if (v === undefined && d.fill === "default") obj[name] = defaultOf(d.type, d.default);
    } else if (d.kind === "section") {
      if (v !== undefined) fillDefaults(d.keys, v as Record<string, unknown>);
      else if (d.absent === "defaults") obj[name] = fillDefaults(d.keys, {});
    } else {
      obj[name] = ((v ?? []) as Record<string, unknown>[]).map((e) => fillDefaults(d.keys, e));
    }
  }
  return obj;
}

/** A declared default as the key type reads it; a fresh list each time, never shared. */
function defaultOf(type: KeyType<unknown, unknown>, value: unknown): unknown {
  const out = type.check(Array.isArray(value) ? [...value] : value);
  if (out === undefined || out instanceof Refused) {
    throw new Error(`a declared default is not valid: ${JSON.stringify(value)}`);
  }
  return out;
}

let schema: ZodTypeAny | null = null;

/**
 * The fleet file's shape, without defaults: what {@linkcode checkFleet}
 * runs. Built on first use: `--version`, `--help` and a usage error never
 * pay for a hundred zod schemas.
 */
export function fleetSchema(): ZodTypeAny {
  return schema ??= mappingOf(FLEET);
}

/**
 * Checks the raw fleet file's shape and values, and fills in the plain
 * defaults. Its type is the one keys.ts derives from the same declarations.
 *
 * @example
 * ```ts
 * const r = checkFleet({ tree: "plugins", primary: { name: "a", path: "/t" } });
 * if (r.success) r.data.rsync.timeout; // 300000
 * ```
 */
export function checkFleet(
  raw: unknown,
): { success: true; data: RawFleet } | { success: false; error: ZodError } {
  const r = fleetSchema().safeParse(raw);
  if (!r.success) return { success: false, error: r.error };
  return { success: true, data: fillDefaults(FLEET, r.data) as unknown as RawFleet };
}

export type { RawFleet };
