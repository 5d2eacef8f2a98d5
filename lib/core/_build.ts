// What a build stamps into fanout. compile.sh swaps this module for a
// generated one (through an import map), so a binary or bundle knows the
// commit it was built from; running from source, nothing is stamped.

/** Build facts: `commit` is a short git commit (`.dirty` when the tree had changes), or null. */
export const BUILD: { commit: string | null } = { commit: null };
