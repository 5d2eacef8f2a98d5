// The fleet file's shape as a zod schema, built from the key declarations
// of keys.ts: shape and value checks, and the plain defaults. Defaults
// derived from other keys, and checks across keys, are config.ts's.
import { z, type ZodType, type ZodTypeAny } from "zod";
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

function schemaOf(d: Decl): ZodTypeAny {
  switch (d.kind) {
    case "key": {
      const value = leaf(d.type);
      if (d.fill === "required") return value;
      if (d.fill === "optional") return value.optional();
      // A fresh copy each time: a default list must not be shared between fleets.
      return value.default(() => structuredClone(d.default));
    }
    case "section": {
      const mapping = mappingOf(d.keys);
      if (d.absent === "required") return mapping;
      if (d.absent === "null") return mapping.optional();
      return mapping.default({});
    }
    case "list":
      return z.array(mappingOf(d.keys)).default([]);
  }
}

function mappingOf(keys: Keys) {
  return z.object(Object.fromEntries(Object.entries(keys).map(([k, d]) => [k, schemaOf(d)])))
    .strict();
}

/**
 * The fleet file, shape-checked, plain defaults filled in. Its type is the
 * one keys.ts derives from the same declarations.
 */
export const FleetSchema = mappingOf(FLEET) as unknown as ZodType<RawFleet, z.ZodTypeDef, unknown>;

export type { RawFleet };
