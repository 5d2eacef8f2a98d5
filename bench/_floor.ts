// The floor a push is measured against: plain rsync of the changed paths
// (`--files-from`) to every replica's push module at once, from the primary's
// address, with TCP_NODELAY as fanout sets it: one connection per replica and
// nothing else.
import { type Lab, sh } from "../tests/_helpers.ts";

/**
 * Sends `paths` (relative to `src`) to the replicas `to` of `lab` at once,
 * with `extra` rsync options (none for the floor); resolves with the ms
 * until every rsync exited (the list file is written before the clock
 * starts).
 */
export async function floorPush(
  lab: Lab,
  src: string,
  paths: string[],
  to: string[] = ["rsync2", "rsync3"],
  extra: string[] = [],
): Promise<number> {
  const list = `${lab.dir}/floor.list`;
  await Deno.writeTextFile(list, paths.join("\n") + "\n");
  const t0 = performance.now();
  const runs = await Promise.all(to.map((r) =>
    sh("rsync", [
      "-a",
      "--sockopts=TCP_NODELAY",
      `--address=${lab.hosts.rsync1.ip}`,
      `--password-file=${lab.password}`,
      ...extra,
      `--files-from=${list}`,
      `${src}/`,
      `rsync://fanout@${lab.hosts[r].ip}:${lab.hosts[r].port}/plugins-push/`,
    ])
  ));
  const ms = performance.now() - t0;
  for (const r of runs) if (r.code !== 0) throw new Error(r.stderr);
  return ms;
}
