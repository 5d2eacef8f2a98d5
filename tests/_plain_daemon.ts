/**
 * A plain rsync daemon, as a hostile or hand-made server would run one: no
 * chroot, symlinks served as they are, files read as root. For tests that
 * craft the served tree themselves.
 *
 * @module
 */

import { canConnect, type Lab, Proc, waitFor } from "./_helpers.ts";

/** A running plain daemon. */
export interface PlainDaemon {
  /** `rsync://<ip>:<port>/plugins/`: the served tree. */
  url: string;
  /** `<ip>:<port>`, as a client names its server. */
  server: string;
  /** Stops it. */
  proc: Proc;
}

/**
 * Starts a plain rsync daemon on the lab's .9 serving `path` as module
 * `plugins`, and waits until it takes connections. `preXfer` is a command
 * the daemon runs before each transfer (`pre-xfer exec`): a server that
 * changes what it serves from one request to the next. `log` is the file
 * the daemon logs each connection to.
 *
 * @example
 * ```ts
 * const d = await plainDaemon(lab, `${lab.dir}/src`);
 * try { … } finally { await d.proc.stop("SIGTERM", 3_000); }
 * ```
 */
export async function plainDaemon(
  lab: Lab,
  path: string,
  opts: { preXfer?: string; log?: string } = {},
): Promise<PlainDaemon> {
  const ip = lab.ip(9);
  const port = lab.port(ip);
  const conf = `${lab.dir}/plain-rsyncd.conf`;
  await Deno.writeTextFile(
    conf,
    [
      "use chroot = no",
      "munge symlinks = no",
      "uid = root",
      "gid = root",
      `pid file = ${lab.dir}/plain-rsyncd.pid`,
      "[plugins]",
      `path = ${path}`,
      "read only = yes",
      ...(opts.preXfer ? [`pre-xfer exec = ${opts.preXfer}`] : []),
      ...(opts.log ? [`log file = ${opts.log}`] : []),
      "",
    ].join("\n"),
  );
  const proc = new Proc(
    new Deno.Command("rsync", {
      args: ["--daemon", "--no-detach", `--config=${conf}`, `--address=${ip}`, `--port=${port}`],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn(),
  );
  await waitFor("the plain daemon", () => canConnect(ip, port), 10_000, 20);
  return { url: `rsync://${ip}:${port}/plugins/`, server: `${ip}:${port}`, proc };
}
