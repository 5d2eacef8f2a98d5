/**
 * The few libc calls the proxy's native engines and the inotify watcher need (Linux, glibc, x86-64 or
 * arm64), opened once through Deno's FFI, with socket-address helpers.
 *
 * Internal to lib/proxy/net/ffi.ts, lib/sys/holders.ts, lib/sys/inotify.ts and lib/sys/epoll.ts.
 *
 * @module
 */

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  splice: {
    parameters: ["i32", "pointer", "i32", "pointer", "usize", "u32"],
    result: "isize",
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /** The same call on a worker thread: the reactor's idle wait. */
  epoll_wait_blocking: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  getaddrinfo: {
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  gai_strerror: { parameters: ["i32"], result: "pointer" },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The opened symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Libc | null = null;
let unavailable: string | null = null;

/**
 * Opens libc, once. Returns why it cannot be used instead (not Linux, FFI not
 * permitted, no glibc), so a caller can fall back and say why.
 */
export function openLibc(): Libc | string {
  if (lib) return lib;
  if (unavailable) return unavailable;
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    return unavailable = `splice needs Linux on x86-64 or arm64 (this is ${Deno.build.target})`;
  }
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    return lib;
  } catch (e) {
    return unavailable = e instanceof Deno.errors.NotCapable
      ? "FFI is not permitted (run with --allow-ffi)"
      : `cannot open libc.so.6: ${(e as Error).message}`;
  }
}

let errnoView: Deno.UnsafePointerView | null = null;

/**
 * errno, read right after a failed call. Synchronous FFI calls all run on the
 * JavaScript thread, so its thread-local errno stays at one address.
 */
export function errno(c: Libc): number {
  errnoView ??= new Deno.UnsafePointerView(c.__errno_location()!);
  return errnoView.getInt32();
}

/** The system's text for an errno, e.g. "Connection refused". */
export function strerror(c: Libc, code: number): string {
  const p = c.strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

export const EAGAIN = 11;
export const EINTR = 4;
export const EINPROGRESS = 115;
export const ECONNREFUSED = 111;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const EMFILE = 24;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SHUT_WR = 1;
export const F_SETPIPE_SZ = 1031;
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;

/** A socket address as the kernel takes it, with its length. */
export interface SockAddr {
  buf: Uint8Array<ArrayBuffer>;
  len: number;
}

/**
 * Encodes a numeric IPv4 or IPv6 address; null for anything else (a name).
 * `[::1]` brackets are accepted.
 */
export function encodeSockAddr(host: string, port: number): SockAddr | null {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const v4 = parseV4(h);
  if (v4) {
    const buf = new Uint8Array(16);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET, true);
    dv.setUint16(2, port, false);
    buf.set(v4, 4);
    return { buf, len: 16 };
  }
  const v6 = parseV6(h);
  if (v6) {
    const buf = new Uint8Array(28);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET6, true);
    dv.setUint16(2, port, false);
    buf.set(v6, 8);
    return { buf, len: 28 };
  }
  return null;
}

/** Decodes a `sockaddr_in`/`sockaddr_in6` into a Deno address. */
export function decodeSockAddr(buf: Uint8Array): Deno.NetAddr {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = dv.getUint16(0, true);
  const port = dv.getUint16(2, false);
  if (family === AF_INET) {
    return { transport: "tcp", hostname: buf.subarray(4, 8).join("."), port };
  }
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(dv.getUint16(8 + i * 2, false).toString(16));
  const mapped = words.slice(0, 5).every((w) => w === "0") && words[5] === "ffff";
  const hostname = mapped ? `::ffff:${buf.subarray(20, 24).join(".")}` : compressV6(words);
  return { transport: "tcp", hostname, port };
}

/**
 * Resolves a host name the way the rest of the system does (getaddrinfo:
 * /etc/hosts, then DNS), on a worker thread. Numeric addresses need no call.
 *
 * @throws {Deno.errors.NotFound} when the name does not resolve.
 */
export async function resolveSockAddrs(c: Libc, host: string, port: number): Promise<SockAddr[]> {
  const numeric = encodeSockAddr(host, port);
  if (numeric) return [numeric];
  const hints = new Uint8Array(48);
  new DataView(hints.buffer).setInt32(8, SOCK_STREAM, true);
  const out = new BigUint64Array(1);
  const rc = await c.getaddrinfo(cstr(host), cstr(String(port)), hints, out);
  if (rc !== 0) {
    const p = c.gai_strerror(rc);
    const why = p ? Deno.UnsafePointerView.getCString(p) : `error ${rc}`;
    throw new Deno.errors.NotFound(`cannot resolve ${host}: ${why}`);
  }
  const first = Deno.UnsafePointer.create(out[0]);
  const found: SockAddr[] = [];
  try {
    for (let ai = first; ai;) {
      const v = new Deno.UnsafePointerView(ai);
      const family = v.getInt32(4);
      const len = v.getUint32(16);
      const addr = v.getPointer(24);
      if ((family === AF_INET || family === AF_INET6) && addr) {
        const buf = new Uint8Array(len);
        Deno.UnsafePointerView.copyInto(addr, buf);
        found.push({ buf, len });
      }
      ai = v.getPointer(40);
    }
  } finally {
    c.freeaddrinfo(first);
  }
  if (found.length === 0) throw new Deno.errors.NotFound(`cannot resolve ${host}: no address`);
  return found;
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(s + "\0");
  return new Uint8Array(b.buffer as ArrayBuffer);
}

function parseV4(h: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : null;
}

function parseV6(h: string): Uint8Array | null {
  if (!h.includes(":") || h.includes("%")) return null;
  let tail: number[] = [];
  let s = h;
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const p = parseV4(v4[1]);
    if (!p) return null;
    tail = [(p[0] << 8) | p[1], (p[2] << 8) | p[3]];
    s = s.slice(0, v4.index + 1) + "0:0";
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const words = (x: string) => (x === "" ? [] : x.split(":"));
  const head = words(halves[0]);
  const rest = halves.length === 2 ? words(halves[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
  const all = [...head, ...Array(halves.length === 2 ? fill : 0).fill("0"), ...rest];
  if (!all.every((w) => /^[0-9a-f]{1,4}$/i.test(w))) return null;
  const nums = all.map((w) => parseInt(w, 16));
  if (tail.length) nums.splice(6, 2, ...tail);
  const out = new Uint8Array(16);
  nums.forEach((n, i) => {
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

function compressV6(words: string[]): string {
  // The longest run of zero words becomes "::", as inet_ntop writes it.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}
