/**
 * fanout's fixed limits: what no fleet-file key sets. The keys' defaults are
 * declared with the keys, in lib/config/keys.ts.
 *
 * Durations are in milliseconds.
 *
 * @module
 */

/** Limits every host keeps, whatever the fleet file says. */
export const DEFAULTS = {
  /**
   * The biggest fleet file read, in bytes: a fleet of thousands of hosts fits
   * in a fraction of it, and anything bigger is refused before it is parsed.
   */
  maxFleetBytes: 1 << 20,
  /** Concurrent pushes a write module accepts (upstream plus publisher). */
  writeModuleMaxConnections: 50,
  fleet: {
    /** Largest report body the primary reads (bytes); larger gets 413. */
    maxReportBytes: 8192,
    /** A signed report's time may differ from the primary's clock by this much (ms). */
    maxClockSkew: 300_000,
    /** How long a client waits for the primary to take its report (ms). */
    reportTimeout: 1_000,
  },
} as const;

/** Name of the version marker at the root of every tree. */
export const VERSION_MARKER = ".fanout-version";

/**
 * Name of the version log at the root of every tree, next to the marker: what
 * each recent publish changed, so a client one or a few versions behind
 * fetches just those paths (lib/version/version_log.ts).
 */
export const VERSION_LOG = ".fanout-changes";

/**
 * Name of a signed tree's manifest at its root, next to the marker: every
 * path of the version with its type, mode, size and SHA-256
 * (lib/release/manifest.ts).
 */
export const RELEASE_MANIFEST = ".fanout-manifest";

/**
 * Name of a signed tree's release envelope at its root, next to the marker:
 * the publisher's signature over the version and its manifest's SHA-256
 * (lib/release/sign.ts).
 */
export const RELEASE_ENVELOPE = ".fanout-release";

/**
 * The files that name and vouch for a version, at the root of a tree: a
 * push, a publish or a repair moves them last, together, so a tree never
 * holds a marker and an envelope that disagree.
 */
export const VERSION_FILES: readonly string[] = [
  VERSION_MARKER,
  RELEASE_MANIFEST,
  RELEASE_ENVELOPE,
];

/**
 * V8 flags every fanout process starts with (compile.sh, the bundle's
 * shebang, the demo, the tests). They only take effect on the command line,
 * not set later at run time.
 *
 * - 1 MB semi-spaces: V8 lets the young generation grow to 16 MB per
 *   semi-space and keeps it, so a primary itemizing a large push would hold
 *   that memory long after the push.
 * - Lite mode (no optimizing compilers, feedback allocated lazily): most of
 *   fanout's JavaScript is glue around rsync, sockets and files, and a
 *   primary keeps a large tree's state in less memory. The optimizers would
 *   make a signed client's manifest and walk work faster, but the flags are
 *   one set for every role, and the servers' memory decides.
 *
 * What each flag saves is in docs/benchmarks.md.
 */
export const V8_FLAGS = "--max-semi-space-size=1,--lite-mode";

/**
 * Where rsync writes the files it is receiving on a server (`--temp-dir`),
 * at the tree's root: never served, never pushed, never deleted by a push.
 * Without it rsync writes `.name.XXXXXX` next to each file, where a client
 * pulling at that moment would copy a half-written file.
 */
export const SERVER_TEMP_DIR = ".fanout-tmp";

/** Name of the marker fanout leaves in a client destination it manages. */
export const DEST_MARKER = ".fanout-dest";
