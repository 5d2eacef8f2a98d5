// What a fleet-file value may be: each key type's check, the words a
// message uses for what was expected, and how a flag's text becomes such a
// value. lib/config/keys.ts gives every key one of these; _schema.ts runs
// the checks.
import {
  durationTooLong,
  globProblem,
  type HostPort,
  isIp,
  parseDuration,
  parseHostPort,
  parseRsyncUrl,
  quoted,
  UsageError,
} from "../core/mod.ts";
import { rsyncdValueProblem } from "./rsyncd_value.ts";

/** A value of the right kind refused for a reason of its own. */
export class Refused {
  constructor(readonly why: string) {}
}

/** How a flag sets a key of this type. */
export type FlagReading<In> =
  /** The flag takes no value and sets the key to true. */
  | "switch"
  | {
    /** The value's name in the help, e.g. "DUR". */
    placeholder: string;
    /** The file value the flag's text stands for; throws UsageError naming `flag`. */
    read(text: string, flag: string): In;
  };

/**
 * What a key's value must be: `In` is how the fleet file writes it (and how
 * a default is declared), `Out` what fanout reads it as.
 */
export interface KeyType<In, Out> {
  /** What a value must be, for messages and the docs: "an absolute path". */
  expected: string;
  /** The value read from `v`; undefined when `v` is not of this type; a Refused saying why not. */
  check(v: unknown): Out | Refused | undefined;
  /** How a flag sets a key of this type; absent: no flag can. */
  flag?: FlagReading<In>;
}

/** A type whose file value is a string read as it is, `check` deciding. */
function text<Out>(
  expected: string,
  placeholder: string,
  check: (v: string) => Out | Refused | undefined,
): KeyType<string, Out> {
  return {
    expected,
    check: (v) => (typeof v === "string" ? check(v) : undefined),
    flag: { placeholder, read: (t) => t },
  };
}

/** rsyncd.conf's reading of `v` (where paths, uid and gid land), as a refusal. */
function rsyncdProblem(v: string): Refused | undefined {
  const why = rsyncdValueProblem(v);
  return why ? new Refused(why) : undefined;
}

/** A non-empty string. */
export const str: KeyType<string, string> = text(
  "a string",
  "TEXT",
  (v) => v.length > 0 ? v : undefined,
);

/** A string rsyncd.conf gets as a value: uid, gid. */
export const rsyncdStr: KeyType<string, string> = text(
  "a user or group name or number",
  "NAME",
  (v) => v.length > 0 ? rsyncdProblem(v) ?? v : undefined,
);

/** A host, module or user name. */
export const name: KeyType<string, string> = text(
  "a name of letters, digits, '.', '_' or '-'",
  "NAME",
  (v) => /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v) ? v : undefined,
);

/** An absolute path; a flag's relative path is taken from the working directory. */
export const absPath: KeyType<string, string> = {
  expected: "an absolute path",
  check: (v) => {
    if (typeof v !== "string" || !v.startsWith("/")) return undefined;
    // rsyncd splits a path at "/./" into chroot and module dir.
    if (/\/\.\.?(\/|$)/.test(v)) return new Refused("has a . or .. part: write the path it means");
    return rsyncdProblem(v) ?? v;
  },
  flag: { placeholder: "DIR", read: (t) => absolute(t) },
};

/** A duration with a unit, read as milliseconds; one longer than a timer can wait is refused. */
export const duration: KeyType<string, number> = text(
  'a duration with a unit, like "200ms", "2s" or "5m"',
  "DUR",
  (v) => {
    const tooLong = durationTooLong(v);
    return tooLong ? new Refused(tooLong) : parseDuration(v) ?? undefined;
  },
);

/** An IP address and a port. */
export const hostPort: KeyType<string, HostPort> = text(
  "host:port with an IP address",
  "IP:PORT",
  (v) => parseHostPort(v) ?? undefined,
);

/** An IP address and a port, or `off`. */
export const hostPortOrOff: KeyType<string, HostPort | "off"> = text(
  "host:port with an IP address, or off",
  "IP:PORT|off",
  (v) => v === "off" ? "off" : parseHostPort(v) ?? undefined,
);

/** An IP address (never a host name). */
export const ip: KeyType<string, string> = text(
  "an IP address (rsync --address and hosts allow need one)",
  "IP",
  (v) => isIp(v) ? v : undefined,
);

/** An rsync URL of a module. */
export const rsyncUrl: KeyType<string, string> = text(
  "an rsync URL like rsync://host:873/module/",
  "URL",
  (v) => parseRsyncUrl(v) ? v : undefined,
);

/** An integer from `min` to `max`. */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): KeyType<number, number> {
  return {
    expected: max === Number.MAX_SAFE_INTEGER
      ? `an integer >= ${min}`
      : `an integer from ${min} to ${max}`,
    check: (v) =>
      typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : undefined,
    flag: {
      placeholder: "N",
      read: (t, flag) => {
        if (!/^\d+$/.test(t)) throw new UsageError(`${flag}: expected a whole number, got "${t}"`);
        return Number(t);
      },
    },
  };
}

/** true or false; its flag sets true. */
export const bool: KeyType<boolean, boolean> = {
  expected: "true or false",
  check: (v) => (typeof v === "boolean" ? v : undefined),
  flag: "switch",
};

/** One of `choices`. */
export function oneOf<const T extends string>(...choices: T[]): KeyType<T, T> {
  return {
    expected: choices.map((c) => `"${c}"`).join(", ").replace(/, ([^,]*)$/, " or $1"),
    check: (v) => (choices.includes(v as T) ? v as T : undefined),
  };
}

/**
 * A list of non-empty one-line patterns; one the watcher's matcher would
 * misread (a backwards range, an overlong pattern) is refused by name here,
 * before any role starts.
 */
export const patterns: KeyType<string[], string[]> = {
  expected: "a list of patterns",
  check: (v) => {
    if (
      !Array.isArray(v) ||
      !v.every((p) => typeof p === "string" && p.length > 0 && !p.includes("\n"))
    ) return undefined;
    for (const p of v as string[]) {
      const why = globProblem(p);
      if (why) return new Refused(`holds the pattern ${quoted(p)}: ${why}`);
    }
    return v as string[];
  },
};

/** A list of host names; its flag takes them comma-separated. */
export const names: KeyType<string[], string[]> = {
  expected: "a list of host names",
  check: (v) =>
    Array.isArray(v) && v.every((p) => typeof p === "string") ? v as string[] : undefined,
  flag: {
    placeholder: "A,B",
    read: (t) => t.split(",").map((s) => s.trim()).filter(Boolean),
  },
};

/** The text of an Ed25519 public key: `ed25519:` and 32 bytes in base64. */
const PUBLIC_KEY = /^ed25519:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A list of release public keys; a client accepts a version signed by any of them. */
export const publicKeys: KeyType<string[], string[]> = {
  expected: "a list of public keys like ed25519:<44 base64 characters> (fanout keygen prints one)",
  check: (v) =>
    Array.isArray(v) && v.every((p) => typeof p === "string" && PUBLIC_KEY.test(p))
      ? v as string[]
      : undefined,
};

/** `p` made absolute from the working directory, `.` and `..` resolved. */
function absolute(p: string): string {
  if (p.startsWith("/")) return p;
  const parts: string[] = [];
  for (const part of `${Deno.cwd()}/${p}`.split("/")) {
    if (part === "..") parts.pop();
    else if (part && part !== ".") parts.push(part);
  }
  return "/" + parts.join("/");
}
