/**
 * Checks of the files that hold fanout's shared secrets: the daemons'
 * secrets file (`user:password` lines), the pushers' password file, and the
 * report token clients sign their run reports with. rsync refuses the first
 * two when other users can read them, but says so late and vaguely; fanout
 * refuses before anything starts and says which file and what to run.
 *
 * @module
 */

import { ConfigError, type ConfigProblem } from "../core/mod.ts";
import type { Fleet } from "./config.ts";

/** What a role does with the shared secret. */
export interface SecretNeeds {
  /** Runs a daemon with a write module: needs `auth.secrets_file`. */
  daemon: boolean;
  /** Pushes to a write module: needs `auth.password_file`. */
  pusher: boolean;
}

/**
 * Checks the files `needs` calls for: present, a regular file, mode 600 or 400
 * (no group or other bits), and holding what rsync expects. Never reads a
 * secret into a message.
 *
 * @throws {ConfigError} listing each problem with its key path.
 *
 * @example
 * ```ts
 * await checkSecretFiles(fleet, { daemon: true, pusher: false });
 * ```
 */
export async function checkSecretFiles(fleet: Fleet, needs: SecretNeeds): Promise<void> {
  const problems: ConfigProblem[] = [];
  if (needs.daemon) {
    const p = secretFileProblem(fleet.auth.secretsFile, "auth.secrets_file", "rsync daemon");
    if (p) problems.push(p);
    else {
      const text = await Deno.readTextFile(fleet.auth.secretsFile);
      const users = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split(":")[0]);
      if (!users.includes(fleet.auth.user)) {
        problems.push({
          path: "auth.secrets_file",
          message:
            `${fleet.auth.secretsFile} has no "${fleet.auth.user}:PASSWORD" line for auth.user "${fleet.auth.user}"`,
        });
      }
    }
  }
  if (needs.pusher) {
    const p = secretFileProblem(fleet.auth.passwordFile, "auth.password_file", "push");
    if (p) problems.push(p);
    else if ((await Deno.readTextFile(fleet.auth.passwordFile)).trim() === "") {
      problems.push({ path: "auth.password_file", message: `${fleet.auth.passwordFile} is empty` });
    }
  }
  if (problems.length) throw new ConfigError(fleet.file ?? "flags", problems);
}

/**
 * Reads the report token (`auth.report_token_file`), the secret clients sign
 * their run reports with and the primary checks them with. It is not the push
 * password: a client holding that could write to the write modules.
 *
 * Returns null when the file does not exist (the primary then refuses
 * reports, and clients send none).
 *
 * @throws {ConfigError} when it exists but is not a regular file, is readable
 * by group or others, cannot be read, or is empty.
 *
 * @example
 * ```ts
 * const token = await readReportToken(fleet); // null: reports off
 * ```
 */
export async function readReportToken(fleet: Fleet): Promise<string | null> {
  const path = fleet.auth.reportTokenFile;
  const key = "auth.report_token_file";
  try {
    await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
  }
  const p = secretFileProblem(path, key, "fleet view");
  if (p) throw new ConfigError(fleet.file ?? "flags", [p]);
  const token = (await Deno.readTextFile(path)).trim();
  if (token === "") {
    throw new ConfigError(fleet.file ?? "flags", [{ path: key, message: `${path} is empty` }]);
  }
  return token;
}

/**
 * What is wrong with a secret file at `path` (set by fleet-file key `key`,
 * needed by `use`), or null: missing, not a regular file, readable by group
 * or others, or unreadable by this user. Never reads the secret into a message.
 *
 * @example
 * ```ts
 * const p = secretFileProblem("/etc/fanout/report.token", "auth.report_token_file", "report");
 * if (p) console.error(p.message);
 * ```
 */
export function secretFileProblem(
  path: string,
  key: string,
  use: string,
): ConfigProblem | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path); // sync: read on every cron run (see existsNow in lib/core/fs.ts)
  } catch (e) {
    const why = e instanceof Deno.errors.PermissionDenied
      ? "cannot be read (permission denied)"
      : "does not exist";
    return { path: key, message: `${path} ${why}; the ${use} needs it` };
  }
  if (!st.isFile) return { path: key, message: `${path} is not a regular file` };
  const mode = (st.mode ?? 0) & 0o777;
  if (mode & 0o077) {
    return {
      path: key,
      message: `${path} has mode ${mode.toString(8)}, ${
        openTo(mode)
      }; expected 600 or 400 (chmod 600 ${path})`,
    };
  }
  try {
    Deno.openSync(path).close();
  } catch {
    return { path: key, message: `${path} cannot be read by this user` };
  }
  return null;
}

/**
 * What mode bits give group and others, in words.
 *
 * @example
 * ```ts
 * openTo(0o640); // "readable by group"
 * openTo(0o644); // "readable by group and others"
 * openTo(0o664); // "readable and writable by group, readable by others"
 * ```
 */
export function openTo(mode: number): string {
  const words = (bits: number) =>
    [[4, "readable"], [2, "writable"], [1, "executable"]]
      .filter(([b]) => bits & (b as number)).map(([, w]) => w).join(" and ");
  const group = (mode >> 3) & 7, others = mode & 7;
  if (group === others) return `${words(group)} by group and others`;
  return [[group, "group"], [others, "others"]]
    .filter(([bits]) => bits)
    .map(([bits, who]) => `${words(bits as number)} by ${who}`)
    .join(", ");
}
