/**
 * The rsync runs of a push to one replica: the tree run (a list, filter
 * rules or the whole tree), the marker with its release files, and the
 * read-back of a replica's marker. Kept apart from the engine so each run's
 * options are built in one place, with no say over when a run goes or what
 * it may delete.
 *
 * @module
 */

import { type Change, parseMarker, stampMarker } from "../version/mod.ts";
import {
  readSmallFile,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SERVER_TEMP_DIR,
  VERSION_FILES,
  VERSION_MARKER,
} from "../core/mod.ts";
import {
  rsyncArgs,
  type RsyncJob,
  type RsyncResult,
  runRsync,
  writeFileList,
} from "../rsync/mod.ts";
import { filterRules } from "./filter.ts";
import type { Scope } from "./plan.ts";
import type { PushTarget } from "./replica.ts";
import { MARKER_READ_MAX_BYTES, snapshotRelease } from "./source.ts";

/**
 * Options of {@linkcode Transfers}.
 *
 * @example
 * ```ts
 * const o: TransferOptions = { source, workDir, address, passwordFile, rsync: fleet.rsync,
 *   exclude: [], signal: abort.signal };
 * ```
 */
export interface TransferOptions {
  /** Absolute path of the tree pushed from. */
  source: string;
  /** Scratch space for lists, filter files and marker snapshots. */
  workDir: string;
  /** This host's address: runs leave from it (`--address`). */
  address: string;
  passwordFile: string;
  /** The rsync binary and its time limits (s). */
  rsync: { path: string; timeout: number; connectTimeout: number };
  /** push.exclude: never sent. */
  exclude: string[];
  /** Aborts every run in flight (the engine stops). */
  signal: AbortSignal;
}

/**
 * How a tree run may delete: `deleting` lets it delete (within its scope);
 * `collapse` lets filter rules take a whole directory.
 *
 * @example
 * ```ts
 * const may: TreeDeletes = { deleting: true, collapse: guard.state === "pushing" };
 * ```
 */
export interface TreeDeletes {
  deleting: boolean;
  collapse: boolean;
}

/**
 * Builds and runs the rsync runs of a push.
 *
 * @example
 * ```ts
 * const transfers = new Transfers({ source, workDir, address, passwordFile, rsync: fleet.rsync,
 *   exclude: [], signal });
 * const result = await transfers.tree(target, "list", changes, { deleting: false, collapse: true }, {});
 * ```
 */
export class Transfers {
  #o: TransferOptions;

  constructor(opts: TransferOptions) {
    this.#o = opts;
  }

  /** The tree run (or its dry run, by `extra`) in scope `how` for one replica. */
  tree(
    target: PushTarget,
    how: Scope,
    changes: Change[],
    { deleting, collapse }: TreeDeletes,
    extra: Partial<RsyncJob>,
  ): Promise<RsyncResult> {
    const job = this.#job(target, {
      // rsync refuses --delete without recursion, and a list has nothing to delete.
      delete: deleting,
      // A renamed file's old name goes only once the new one is in place.
      deleteDelay: true,
      delayUpdates: !extra.dryRun,
      // The marker and the release files that vouch for it travel together, last.
      excludes: [
        ...VERSION_FILES.map((f) => `/${f}`),
        ".~tmp~/",
        `/${SERVER_TEMP_DIR}/`,
        ...this.#o.exclude,
      ],
      ...extra,
    });
    return (async () => {
      if (how === "list") {
        const file = `${this.#o.workDir}/${target.name}.list`;
        const paths = new Set(changes.map((c) => c.path));
        await writeFileList(file, paths);
        job.filesFrom = file;
      } else if (how === "filter") {
        const file = `${this.#o.workDir}/${target.name}.filter`;
        await Deno.writeTextFile(file, filterRules(changes, { collapse }).join("\0") + "\0");
        // --from0 must come first: rsync reads the include file when it meets the option.
        job.extra = [...(extra.extra ?? []), "--from0", `--include-from=${file}`, "--exclude=*"];
      }
      return await runRsync(rsyncArgs(job), {
        rsync: this.#o.rsync.path,
        signal: this.#o.signal,
        keepItems: false,
      });
    })();
  }

  /**
   * Sends the marker snapshot taken when the push began, with the release
   * files (manifest and signed envelope) of that same version, so a replica
   * never holds a marker and an envelope that disagree; where the source has
   * none (an unsigned fleet) the replica's go too. "unsettled" when the
   * source's release files are already of another version: nothing is sent.
   */
  async marker(target: PushTarget, text: string): Promise<RsyncResult | "unsettled"> {
    const dir = `${this.#o.workDir}/${target.name}.marker`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const release = await snapshotRelease(this.#o.source, dir, parseMarker(text));
    if (release === "unsettled") return "unsettled";
    await Deno.writeTextFile(`${dir}/${VERSION_MARKER}`, text);
    // The publisher's stamp, kept: clients read a scan's version from it.
    stampMarker(`${dir}/${VERSION_MARKER}`);
    const job = this.#job(target, {
      source: `${dir}/`,
      // Only these names are in scope, so --delete removes just a stale
      // envelope or manifest the source no longer has.
      delete: true,
      extra: [
        `--include=/${VERSION_MARKER}`,
        `--include=/${RELEASE_MANIFEST}`,
        `--include=/${RELEASE_ENVELOPE}`,
        "--exclude=*",
      ],
    });
    return await runRsync(rsyncArgs(job), {
      rsync: this.#o.rsync.path,
      signal: this.#o.signal,
    });
  }

  /** The marker the replica's tree holds now, read through its write module; null when none. */
  async replicaMarker(target: PushTarget): Promise<string | null> {
    const dir = `${this.#o.workDir}/${target.name}.held`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    const job = this.#job(target, {
      source: `${target.url}${VERSION_MARKER}`,
      dest: `${dir}/`,
      tempDir: undefined,
      sparse: false,
      extra: [`--max-size=${MARKER_READ_MAX_BYTES}`],
    });
    const got = await runRsync(rsyncArgs(job), {
      rsync: this.#o.rsync.path,
      signal: this.#o.signal,
    });
    return got.code === 0 ? readSmallFile(`${dir}/${VERSION_MARKER}`, MARKER_READ_MAX_BYTES) : null;
  }

  #job(target: PushTarget, over: Partial<RsyncJob>): RsyncJob {
    return {
      source: `${this.#o.source}/`,
      dest: target.url,
      address: this.#o.address,
      passwordFile: this.#o.passwordFile,
      // The replica receives into its temp dir, which its clients never see.
      tempDir: SERVER_TEMP_DIR,
      sparse: true,
      timeout: this.#o.rsync.timeout,
      connectTimeout: this.#o.rsync.connectTimeout,
      ...over,
    };
  }
}
