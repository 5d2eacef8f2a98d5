/**
 * Every default of fanout, in one place. The fleet file, the flags and the
 * key table of docs/configuration.md all take their defaults from here.
 *
 * Durations are in milliseconds.
 *
 * @module
 */

/** Defaults for every optional fleet-file key. */
export const DEFAULTS = {
  auth: {
    user: "fanout",
    secretsFile: "/etc/fanout/rsyncd.secrets",
    passwordFile: "/etc/fanout/push.password",
    reportTokenFile: "/etc/fanout/report.token",
  },
  stateDir: "/var/lib/fanout",
  /**
   * The biggest fleet file read, in bytes: a fleet of thousands of hosts fits
   * in a fraction of it, and anything bigger is refused before it is parsed.
   */
  maxFleetBytes: 1 << 20,
  binary: "/usr/local/bin/fanout",
  rsync: { path: "rsync", timeout: 300_000, connectTimeout: 10_000 },
  server: { port: 873, healthPort: 8873 },
  primary: { maxConnections: 1000 },
  replica: { maxConnections: 200 },
  /** Concurrent pushes a write module accepts (upstream plus publisher). */
  writeModuleMaxConnections: 50,
  /** A publish waits this long for another to finish before giving up (exit 5). */
  publisher: { name: "publisher", ref: "main", lockTimeout: 300_000 },
  proxy: {
    name: "proxy",
    listen: "0.0.0.0:873",
    healthPort: 8874,
    interval: 2_000,
    checkTimeout: 1_000,
    fall: 2,
    rise: 2,
    maxConnections: 1000,
    /**
     * Connections one source address may hold: a tenth of the slots, so one
     * host cannot lock the others out, and far more than a NAT in front of a
     * few hundred cron clients holds at once (a no-op pull lasts a second).
     */
    maxConnectionsPerSource: 100,
    /** A client must send its rsync greeting and module request within this. */
    handshakeTimeout: 10_000,
    idleTimeout: 300_000,
    drainTimeout: 30_000,
    versionGrace: 10_000,
    /**
     * How many seqs past the primary's a backend may claim before it is
     * distrusted: 1 covers a publish read mid-way (replica already at N+1,
     * primary read at N); a marker forged further ahead is not believed.
     */
    versionMaxLead: 1,
    proxyProtocol: false,
    /** Native sockets copying through a buffer where FFI works, Deno's sockets elsewhere. */
    engine: "auto" as const,
  },
  client: {
    splay: 30_000,
    timeout: 300_000,
    connectTimeout: 10_000,
    retries: 3,
    maxDelete: 500,
    verifyEvery: 0,
    atomic: false,
    keep: 3,
    keepOwners: false,
    watchInterval: 2_000,
    user: "root",
  },
  push: {
    debounce: 0,
    maxDelay: 1_000,
    reconcile: 300_000,
    concurrency: 8,
    maxDelete: 1000,
    /** A push, or the deletions of a window, taking more than half the tree is held. */
    maxDeletePercent: 50,
    /** Deletions go once no other deletion came for this long (at most 10× it after the first). */
    deleteHold: 2_000,
    /** Deletions sent within this window count together against max_delete and the percent. */
    deleteWindow: 600_000,
    exclude: [".git"],
    maxPaths: 1000,
    stormEvents: 200,
    /** Full push this often when the watcher cannot run (out of inotify watches). */
    pollInterval: 10_000,
    retryMin: 1_000,
    retryMax: 60_000,
  },
  fleet: {
    /** Reports older than this are deleted from the primary's database. */
    retention: 7 * 86_400_000,
    /** A client whose last report is older than this is "silent". */
    silentAfter: 300_000,
    /** Reports accepted per client host per minute; more get 429. */
    reportRate: 12,
    /** Reports accepted from all clients together per minute; more get 429. */
    reportRateTotal: 6000,
    /** Distinct client hosts the fleet view keeps; a report from one more gets 403. */
    maxClients: 5000,
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
 * V8 flags every fanout process starts with (compile.sh, the bundle's
 * shebang, the demo, the tests). They only take effect on the command line,
 * not set later at run time.
 *
 * - 1 MB semi-spaces: V8 lets the young generation grow to 16 MB per
 *   semi-space and keeps it, so a primary itemizing a large push would hold
 *   that memory long after the push.
 * - Lite mode (no optimizing compilers, feedback allocated lazily): fanout's
 *   JavaScript is glue around rsync, sockets and files, never the bottleneck,
 *   so the optimizers cost memory and start-up time without making anything
 *   faster.
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
