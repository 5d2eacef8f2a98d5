/**
 * Versions of the tree: the marker (`.fanout-version`), the version log
 * (`.fanout-changes`) that lets a client fetch just the changed paths, how
 * the marker is stamped, and change sets.
 *
 * @module
 */

export { type Change, ChangeSet, type Work } from "./changes.ts";
export { markerFromScan, stampMarker } from "./marker_stamp.ts";
export {
  describeVersion,
  formatMarker,
  MARKER_MAX_BYTES,
  markerComment,
  markerFromComment,
  parseMarker,
  parseVersionAnswer,
  readMarker,
  sameVersion,
  VERSION_ANSWER_MAX_BYTES,
  type VersionMarker,
} from "./version.ts";
export {
  appendEntry,
  type ChangeList,
  changesBetween,
  LOG_READ_MAX_BYTES,
  newEntry,
  parseLog,
} from "./version_log.ts";
