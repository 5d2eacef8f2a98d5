// The command-line tokenizer behind lib/cli/cli.ts: node:util's parseArgs in
// strict mode, minus its cost. Importing any node: module starts Deno's Node
// compatibility layer, a cost of every start (a cron client starts every
// minute on every host; docs/benchmarks.md), and a bundle hoists that import
// to its top.
import { UsageError } from "../core/mod.ts";

/** How one flag is read. */
export interface ArgSpec {
  type: "string" | "boolean";
  short?: string;
  /** Repeats collect into an array (else the last one wins). */
  multiple?: boolean;
}

/** What {@linkcode tokenize} found. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[]>;
  positionals: string[];
}

/**
 * Splits `argv` into flag values and positionals: `--name value`,
 * `--name=value`, `-n value`, `-nvalue`, grouped short booleans (`-hv`), and
 * `--` ending the flags.
 *
 * @throws {UsageError} for an unknown flag (the message is completed by
 * `unknown`), a missing value, or a value given to a boolean flag.
 *
 * @example
 * ```ts
 * tokenize(["-c", "f.yaml", "render", "--verbose"], {
 *   config: { type: "string", short: "c" },
 *   verbose: { type: "boolean" },
 * }, (f) => `unknown flag "${f}"`);
 * // { values: { config: "f.yaml", verbose: true }, positionals: ["render"] }
 * ```
 */
export function tokenize(
  argv: readonly string[],
  specs: Record<string, ArgSpec>,
  unknown: (flag: string) => string,
): ParsedArgs {
  const shorts = new Map<string, string>();
  for (const [name, s] of Object.entries(specs)) if (s.short) shorts.set(s.short, name);
  const values: ParsedArgs["values"] = {};
  const positionals: string[] = [];
  const set = (name: string, value: string | boolean) => {
    if (!specs[name].multiple) values[name] = value;
    else ((values[name] ??= []) as string[]).push(value as string);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
      if (!spec) throw new UsageError(unknown(`--${name}`));
      if (spec.type === "boolean") {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`);
        set(name, true);
      } else if (eq >= 0) set(name, arg.slice(eq + 1));
      else if (i + 1 < argv.length && !isFlag(argv[i + 1])) set(name, argv[++i]);
      else throw missingValue(name, argv[i + 1]);
      continue;
    }
    if (arg.length < 2 || arg[0] !== "-") {
      positionals.push(arg);
      continue;
    }
    // One or more short flags: -h, -hv, -c FILE, -cFILE.
    for (let j = 1; j < arg.length; j++) {
      const name = shorts.get(arg[j]);
      if (!name) throw new UsageError(unknown(`-${arg[j]}`));
      if (specs[name].type === "boolean") {
        set(name, true);
        continue;
      }
      if (j + 1 < arg.length) set(name, arg.slice(j + 1));
      else if (i + 1 < argv.length && !isFlag(argv[i + 1])) set(name, argv[++i]);
      else throw missingValue(name, argv[i + 1]);
      break;
    }
  }
  return { values, positionals };
}

function missingValue(name: string, next: string | undefined): UsageError {
  return new UsageError(
    `--${name} needs a value` +
      (next === undefined
        ? ""
        : ` (got the flag "${next}"; a value starting with - goes as --${name}=VALUE)`),
  );
}

/** A value that looks like a flag is taken for a forgotten value (`--name --dest x`). */
function isFlag(arg: string): boolean {
  return arg.length > 1 && arg[0] === "-";
}
