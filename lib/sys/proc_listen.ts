/**
 * Which process listens on a TCP port, from Linux's /proc: a greeting on an
 * address proves only that something answers there. An old rsync daemon
 * listening on every address (0.0.0.0) answers on 127.0.0.2 too, while the
 * daemon just started for 127.0.0.2 fails to bind and exits.
 *
 * @module
 */

/**
 * True when process `pid` holds a listening TCP socket (IPv4 or IPv6) on
 * `port`; false when it holds none, or its fds cannot be read (it exited);
 * null when this system has no /proc/net to tell.
 *
 * @example
 * ```ts
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * await holdsListener(Deno.pid, (l.addr as Deno.NetAddr).port); // true
 * ```
 */
export async function holdsListener(pid: number, port: number): Promise<boolean | null> {
  const inodes = new Set<string>();
  let readable = false;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    try {
      for (const inode of listeningInodes(await Deno.readTextFile(table), port)) inodes.add(inode);
      readable = true;
    } catch { /* no IPv6, or no /proc */ }
  }
  if (!readable) return null;
  if (inodes.size === 0) return false;
  try {
    for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
      const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1])) return true;
    }
  } catch { /* gone, or a zombie: it holds nothing */ }
  return false;
}

/**
 * The socket inodes of a /proc/net/tcp{,6} table in state LISTEN (0A) whose
 * local port is `port`.
 *
 * @example
 * ```ts
 * listeningInodes(await Deno.readTextFile("/proc/net/tcp"), 873); // ["123456"]
 * ```
 */
export function listeningInodes(table: string, port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const out: string[] = [];
  for (const line of table.split("\n").slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== "0A") continue;
    if (f[1].slice(f[1].lastIndexOf(":") + 1) === hexPort) out.push(f[9]);
  }
  return out;
}
