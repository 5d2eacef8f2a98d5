/**
 * The push engine's say over deletions: the mass-delete guard over the
 * watcher's deletions (held, released, blocked until the files are back),
 * its lift by a publish or by --allow-mass-delete, and the limit a tree run
 * is held to. Kept apart from the engine so every rule about what a push
 * may delete reads in one place; the engine only asks and queues.
 *
 * @module
 */

import type { Change } from "../version/mod.ts";
import type { PushConfig } from "../config/mod.ts";
import { existsNow, type Logger } from "../core/mod.ts";
import { DeleteGuard, type GuardState, massDeleteReason } from "./delete_guard.ts";
import type { Scope } from "./plan.ts";
import type { TreeDeletes } from "./transfer.ts";

/**
 * The mass-delete guard, as `/status` shows it (`push_guard`).
 *
 * @example
 * ```ts
 * const g: GuardStatus = engine.guardStatus();
 * if (g.state === "blocked") console.log(g.reason);
 * ```
 */
export interface GuardStatus {
  /** pushing, holding (deletions wait for quiet) or blocked (a mass deletion is suspected). */
  state: GuardState;
  /** Deletions held now. */
  held: number;
  /** Net deletions within push.delete_window, the held ones included. */
  net_deletions: number;
  /** Net entries lost since the last publish (or start), the held ones included. */
  lost_since_publish: number;
  /** Entries of the tree at its last whole push, or null before one. */
  tree_entries: number | null;
  /** True while a publish or --allow-mass-delete lifts the limits. */
  lifted: boolean;
  /** Why deletions are blocked, or null. */
  reason: string | null;
}

/**
 * Options of {@linkcode Deletions}.
 *
 * @example
 * ```ts
 * const o: DeletionsOptions = { push: fleet.push, allowMassDelete: false, source, log,
 *   release: (changes, owed) => queueEverywhere(changes, owed) };
 * ```
 */
export interface DeletionsOptions {
  /** max_delete, max_delete_percent, delete_hold and delete_window. */
  push: PushConfig;
  /** Let pushes delete past max_delete until every replica has synced once. */
  allowMassDelete: boolean;
  /** The tree pushed from: a blocked guard looks there for the files put back. */
  source: string;
  log: Logger;
  /**
   * Held deletions go: queue them for every replica, with a whole push too
   * when `owed` (one ran without deleting while they were held), and kick.
   */
  release: (changes: Change[], owed: boolean) => void;
}

/**
 * What pushes may delete, and when.
 *
 * @example
 * ```ts
 * const deletions = new Deletions({ push, allowMassDelete: false, source, log, release });
 * deletions.see(0, [{ path: "a.txt", deep: true, gone: true }], Date.now()); // held a moment
 * const limit = deletions.limit(); // push.max_delete, or null while lifted
 * deletions.stop();
 * ```
 */
export class Deletions {
  #o: DeletionsOptions;
  #guard: DeleteGuard;
  #allowMassDelete: boolean;
  /** A publish's lift ends here (ms), even if a replica never gets its whole push. */
  #liftEnds: number | null = null;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  #restoreTimer: ReturnType<typeof setInterval> | undefined;
  /** A whole push ran without deleting while the guard held: one is owed once it lets go. */
  #deletesOwed = false;
  #stopped = false;

  constructor(opts: DeletionsOptions) {
    this.#o = opts;
    this.#allowMassDelete = opts.allowMassDelete;
    this.#guard = new DeleteGuard({
      maxDelete: opts.push.maxDelete,
      maxDeletePercent: opts.push.maxDeletePercent,
      hold: opts.push.deleteHold,
      window: opts.push.deleteWindow,
    });
    this.#guard.allowed = this.#allowMassDelete;
  }

  /** Notes the watcher's changes: `created` entries, and `deletions` held by the guard. */
  see(created: number, deletions: Change[], now: number): void {
    this.#guard.created(created, now);
    if (deletions.length) {
      this.lifted(); // a publish's lift may have run out
      this.#guard.hold(deletions, now);
      this.#step();
    }
  }

  /** The guard's state, for `/status`. */
  status(): GuardStatus {
    return {
      state: this.#guard.state,
      held: this.#guard.held,
      net_deletions: this.#guard.net(Date.now()),
      lost_since_publish: this.#guard.lost,
      tree_entries: this.#guard.entries,
      lifted: this.lifted(),
      reason: this.#guard.reason,
    };
  }

  /** Why deletions are blocked, or null. */
  get reason(): string | null {
    return this.#guard.reason;
  }

  /**
   * A publish: a deliberate change of the tree, which lifts the guard (held
   * deletions go to `queue`, pushes may delete past the limits until every
   * replica has the new version). `refused` says a replica's push was
   * refused: the block ends too.
   */
  publish(refused: boolean, queue: (held: Change[]) => void): void {
    const held = this.#guard.lift();
    const blocked = this.#restoreTimer !== undefined || refused;
    this.#allowMassDelete = true;
    this.#guard.allowed = true;
    this.#liftEnds = Date.now() + this.#o.push.deleteWindow;
    queue(held);
    if (blocked) this.#endBlock("publish");
    this.#deletesOwed = false;
    clearTimeout(this.#holdTimer);
  }

  /**
   * True while the limits are lifted: by the flag, until every replica has
   * had a whole push; by a publish, until every replica has had a whole push
   * or a version push of the new marker, for one delete_window at most
   * (a replica down for a day must not keep the guard off for a day).
   */
  lifted(): boolean {
    if (this.#allowMassDelete && this.#liftEnds !== null && Date.now() > this.#liftEnds) {
      this.#endLift();
    }
    return this.#allowMassDelete;
  }

  /** Every replica has had its whole push (or the new version's): the limits apply again. */
  allSynced(): void {
    if (this.#allowMassDelete) this.#endLift();
  }

  /** A version push landed its marker: the guard counts its loss from here. */
  rebase(): void {
    this.#guard.rebase();
  }

  /** The most a run may delete, net: push.max_delete, or null while the limits are lifted. */
  limit(): number | null {
    return this.lifted() ? null : this.#o.push.maxDelete;
  }

  /**
   * Why a run in scope `how` whose dry run would delete `net` entries more
   * than it creates must not go, or null; `files` is the dry run's file count
   * (a whole run's is the tree's).
   */
  refusal(how: Scope, net: number, files: number | undefined): string | null {
    // A whole run's file count is the tree's; a scoped one counts only its paths.
    const entries = how === "full" && files !== undefined ? files + net : this.#guard.entries;
    return massDeleteReason(net, this.#o.push.maxDelete, this.#o.push.maxDeletePercent, entries) ??
      this.#slowLoss(how, net, files);
  }

  /** A whole run landed: the tree has `files` entries. */
  measured(files: number): void {
    this.#guard.entries = files;
  }

  /** How a tree run in scope `how` may delete now (not a dry run: it may owe a whole push). */
  treeDeletes(how: Scope, dryRun: boolean): TreeDeletes {
    // While the guard holds deletions, a whole run deletes nothing (one is
    // owed once it lets go); a scoped run deletes only among its own paths.
    const deleting = how === "filter" || (how === "full" && this.#guard.state === "pushing");
    if (how === "full" && !deleting && !dryRun) this.#deletesOwed = true;
    // Collapsed rules would take a whole directory, held deletions with it.
    return { deleting, collapse: this.#guard.state === "pushing" };
  }

  /** Ends its timers for good. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#restoreTimer);
    clearTimeout(this.#holdTimer);
  }

  /** Releases held deletions when due, or waits, or reports a block (once). */
  #step(): void {
    clearTimeout(this.#holdTimer);
    if (this.#stopped) return;
    const step = this.#guard.step(Date.now());
    if (step.kind === "wait") {
      this.#holdTimer = setTimeout(() => this.#step(), step.ms);
    } else if (step.kind === "release") {
      const owed = this.#deletesOwed;
      this.#deletesOwed = false;
      this.#o.release(step.changes, owed);
    } else if (step.kind === "blocked" && this.#restoreTimer === undefined) {
      this.#o.log.error("mass deletion suspected: deletions held, not pushed", {
        reason: step.reason,
        held: this.#guard.held,
      });
      // Files put back lift the block by themselves; a publish or the flag lifts it too.
      this.#restoreTimer = setInterval(() => {
        const exists = (p: string) => existsNow(`${this.#o.source}/${p}`);
        if (!this.#guard.restored(exists, Date.now())) return;
        this.#endBlock("the files are back");
      }, 1000);
    }
  }

  #endBlock(why: string): void {
    clearInterval(this.#restoreTimer);
    this.#restoreTimer = undefined;
    this.#o.log.info("mass-delete guard lifted", { why });
    this.#step();
  }

  /**
   * Why a whole run that deletes would take the tree's loss since the last
   * publish past the limits (deletions the watcher never saw add up too), or null.
   */
  #slowLoss(how: Scope, net: number, files: number | undefined): string | null {
    if (how !== "full" || net <= 0 || files === undefined) return null;
    const why = massDeleteReason(
      this.#guard.lossAt(files),
      this.#o.push.maxDelete,
      this.#o.push.maxDeletePercent,
      this.#guard.baseline,
    );
    return why && `${why} since the last publish`;
  }

  /** The limits apply again. */
  #endLift(): void {
    this.#allowMassDelete = false;
    this.#guard.allowed = false;
    this.#liftEnds = null;
  }
}
