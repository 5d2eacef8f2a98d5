// git as the benchmarks run it: a fixed author, the output trimmed, a failure thrown.
import { sh } from "../tests/_helpers.ts";

/** Runs `git args…` in `cwd`; returns its trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh("git", ["-c", "user.name=b", "-c", "user.email=b@lab", ...args], { cwd });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}
