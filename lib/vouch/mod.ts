/**
 * The version a server vouches for: in a signed fleet, the version its tree
 * verifiably holds (the signed manifest, path for path), checked where the
 * tree is, by difference from the version last vouched for or by a walk; a
 * server announces that version and no other, and repairs its tree from
 * its upstream when it holds none. A {@linkcode TreeGuard} decides when the
 * tree is checked, what is announced, and when it is repaired.
 *
 * @module
 */

export { QUIET_MS, type Vouch, Voucher, type VoucherOptions } from "./vouch.ts";
export { ensureTempDir, repairFrom, type RepairOptions, RepairPace } from "./repair.ts";
export {
  type GuardRepair,
  type GuardState,
  guardTree,
  REFUSED_RECHECK_MS,
  TICK_MS,
  TRANSITIONS,
  type TreeChecker,
  TreeGuard,
  type TreeGuardOptions,
  type TreeGuardSetup,
  watchMarker,
} from "./guard.ts";
