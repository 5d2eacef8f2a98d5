/**
 * The core every other folder stands on: typed errors and exit codes, the
 * logger, durations, host:port addresses and rsync:// URLs, control-character
 * stripping, the fleet defaults and fanout's own file names, bounded file
 * reads, small concurrency helpers. Imports nothing of fanout's.
 *
 * @module
 */

export { deadline } from "./deadline.ts";
export {
  detour,
  exists,
  existsNow,
  FileTooBigError,
  readSmallBytes,
  readSmallFile,
  readTextNow,
  readTextOrNull,
  readTextUpTo,
  receivingSince,
  sweepTemps,
  tempFor,
  writePrivate,
} from "./fs.ts";
export { compileExcludes, type ExcludeMatcher, GLOB_MAX, globProblem } from "./glob.ts";
export { Nudge } from "./nudge.ts";
export { Semaphore } from "./semaphore.ts";
export { CONTROL_CHARS, quoted } from "./visible.ts";
export {
  dialable,
  formatHostPort,
  type HostPort,
  isIp,
  isWildcard,
  parseHostPort,
} from "./address.ts";
export { printableLine, stripControl, stripControlDeep } from "./control_chars.ts";
export {
  formatRsyncUrl,
  parseRsyncUrl,
  RSYNC_PORT,
  RSYNC_URL_MAX,
  type RsyncUrl,
} from "./rsync_url.ts";
export {
  DEFAULTS,
  DEST_MARKER,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  V8_FLAGS,
  VERSION_FILES,
  VERSION_LOG,
  VERSION_MARKER,
} from "./defaults.ts";
export { DURATION_MAX, durationTooLong, formatDuration, parseDuration } from "./duration.ts";
export {
  ConfigError,
  type ConfigProblem,
  EnvironmentError,
  ExitCode,
  FanoutError,
  LockedError,
  SafetyError,
  TransferError,
  UsageError,
} from "./errors.ts";
export { hostname } from "./host_name.ts";
export { formatLogfmt, log, Logger, setLogger } from "./log.ts";
export { VERSION } from "./meta.ts";
export { fnv1a, sleep, splayDelay } from "./splay.ts";
export { renderTemplate, UnsafeValueError, type ValueFilter } from "./template.ts";
