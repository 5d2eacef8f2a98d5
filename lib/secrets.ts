/**
 * Checks of the files that hold fanout's one shared secret: the daemons'
 * secrets file (`user:password` lines) and the pushers' password file. rsync
 * refuses either when other users can read it, but says so late and vaguely;
 * fanout refuses before anything starts and says which file and what to run.
 *
 * @module
 */

import { ConfigError, type ConfigProblem } from "./errors.ts";
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
    const p = await checkFile(fleet.auth.secretsFile, "auth.secrets_file", "rsync daemon");
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
    const p = await checkFile(fleet.auth.passwordFile, "auth.password_file", "push");
    if (p) problems.push(p);
    else if ((await Deno.readTextFile(fleet.auth.passwordFile)).trim() === "") {
      problems.push({ path: "auth.password_file", message: `${fleet.auth.passwordFile} is empty` });
    }
  }
  if (problems.length) throw new ConfigError(fleet.file ?? "flags", problems);
}

async function checkFile(path: string, key: string, use: string): Promise<ConfigProblem | null> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
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
      message: `${path} has mode ${
        mode.toString(8)
      }, readable by others; expected 600 or 400 (chmod 600 ${path})`,
    };
  }
  try {
    (await Deno.open(path)).close();
  } catch {
    return { path: key, message: `${path} cannot be read by this user` };
  }
  return null;
}
