/**
 * Verified releases, the building blocks: the publisher's Ed25519 key and
 * the public key clients trust, the manifest of a tree (every path with its
 * type, mode, size and SHA-256), the signed envelope that binds a manifest to
 * a version, the difference between two manifests and the check of a tree
 * against one, the stat record of a tree, and a manifest kept up to date
 * by it (only what changed is hashed again), or patched for a list of paths
 * known to have changed (nothing else read).
 *
 * @module
 */

export {
  generateKeyPair,
  KeyError,
  loadSigningKey,
  type NewKeyPair,
  parsePublicKey,
  PUBLIC_KEY_PREFIX,
  type PublicKey,
  type SigningKey,
  verifyingKey,
  writePrivateKey,
} from "./keys.ts";
export {
  buildManifest,
  type BuildOptions,
  type EntryType,
  formatEntry,
  formatManifest,
  type Manifest,
  MANIFEST_HEADER,
  MANIFEST_LIMITS,
  manifestDigest,
  type ManifestEntry,
  ManifestError,
  type ManifestLimits,
  parseManifest,
  pathProblem,
  RELEASE_SKIP,
  relistedPaths,
} from "./manifest.ts";
export {
  comparePaths,
  mergePaths,
  statEntry,
  type TreeEntry,
  TreeError,
  type TreeKind,
  type WalkOptions,
  walkTree,
} from "./tree.ts";
export {
  ENVELOPE_MAX_BYTES,
  markerMismatch,
  readEnvelope,
  type Release,
  RELEASE_DOMAIN,
  SignatureError,
  type SignatureFailure,
  signedBytes,
  signRelease,
  UNSIGNED_WARNING,
  type VerifiedRelease,
  verifyRelease,
} from "./sign.ts";
export {
  diffManifests,
  type ManifestDiff,
  type Offence,
  type PlannedFix,
  type PlanOptions,
  planTree,
  type TreeMismatch,
  type TreePlan,
  verifyTree,
} from "./diff.ts";
export {
  compareRecord,
  formatRecord,
  parseRecord,
  readRecord,
  RECORD_LIMITS,
  RECORD_MAGIC,
  type RecordChanges,
  type RecordEntry,
  RecordError,
  type RecordLimits,
  recordOf,
  type RecordSplice,
  recordTree,
  spliceRecord,
  type TreeRecord,
  writeRecord,
} from "./record.ts";
export {
  type ManifestState,
  readManifestState,
  type StateFiles,
  type UpdatedManifest,
  updateManifest,
  writeManifestState,
} from "./update.ts";
export {
  type PatchedManifest,
  patchManifestState,
  type PathChange,
  readKeptManifest,
} from "./patch.ts";
