// Sockets from one chosen loopback address, for floods and slow clients that
// must come from a host other than the test's real clients (Deno.connect
// cannot bind a local address; the proxy's own FFI layer can).
import {
  AF_INET,
  EINPROGRESS,
  encodeSockAddr,
  errno,
  openLibc,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
} from "../lib/sys/mod.ts";

// Opened once, when the test file loads: a library opened inside a test is a leak to Deno's test sanitizer.
const libc = openLibc();

/** Raw sockets connected from one address; `close()` closes them all. */
export interface Flood {
  /** Sockets whose connect was started. */
  opened: number;
  /** Why the others could not be opened (first few). */
  errors: string[];
  close(): void;
}

/**
 * Opens up to `n` TCP connections from `from` (a local loopback address) to
 * `to`, without sending a byte. Non-blocking: the kernel completes each
 * handshake on its own.
 *
 * @example
 * ```ts
 * const flood = floodFrom("127.3.4.77", lab.hosts.proxy, 2000);
 * try { … } finally { flood.close(); }
 * ```
 */
export function floodFrom(from: string, to: { ip: string; port: number }, n: number): Flood {
  const c = libc;
  if (typeof c === "string") throw new Error(`no FFI sockets here: ${c}`);
  const local = encodeSockAddr(from, 0)!;
  const remote = encodeSockAddr(to.ip, to.port)!;
  const fds: number[] = [];
  const errors: string[] = [];
  for (let i = 0; i < n; i++) {
    const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      errors.push(`socket: errno ${errno(c)}`);
      break;
    }
    if (c.bind(fd, local.buf, local.len) < 0) {
      errors.push(`bind ${from}: errno ${errno(c)}`);
      c.close(fd);
      break;
    }
    if (c.connect(fd, remote.buf, remote.len) < 0 && errno(c) !== EINPROGRESS) {
      if (errors.length < 5) errors.push(`connect: errno ${errno(c)}`);
      c.close(fd);
      continue;
    }
    fds.push(fd);
  }
  return {
    opened: fds.length,
    errors,
    close: () => {
      for (const fd of fds.splice(0)) c.close(fd);
    },
  };
}
