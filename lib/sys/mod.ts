/**
 * The system layer: libc through FFI (sockets, epoll, inotify, splice
 * holders), child process groups that stop with fanout, signals, file locks
 * and the kernel's listening sockets. Only lib/core beneath it.
 *
 * @module
 */

export {
  commandLine,
  exitWithParent,
  killAllGroups,
  killGroup,
  PARENT_PID_ENV,
  trackGroup,
} from "./children.ts";
export { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, Reactor } from "./epoll.ts";
export { acquireLock, type FileLock } from "./file_lock.ts";
export { type Holder, type HolderPool, holderPool, type Mover } from "./holders.ts";
export { InotifySource, type RawEvent } from "./inotify.ts";
export {
  AF_INET,
  decodeSockAddr,
  EADDRINUSE,
  EADDRNOTAVAIL,
  EAGAIN,
  ECONNREFUSED,
  EINPROGRESS,
  EINTR,
  encodeSockAddr,
  errno,
  IPPROTO_TCP,
  type Libc,
  openLibc,
  resolveSockAddrs,
  SHUT_WR,
  SO_ERROR,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  type SockAddr,
  SOL_SOCKET,
  strerror,
  TCP_NODELAY,
} from "./libc.ts";
export { holdsListener, listeningInodes } from "./proc_listen.ts";
export { aborted, shutdownSignal } from "./signals.ts";
