/**
 * The git plumbing publish needs: open a repository (bare or not), resolve a
 * ref to a commit, ask whether one commit is an ancestor of another, export
 * a commit's tree into a persistent staging directory (or bring it there
 * from the tree it holds, touching only what differs), and list the paths
 * that differ between two trees.
 *
 * The export goes through a private index file (`GIT_INDEX_FILE`) and
 * `git read-tree --reset -u`: git compares the staging dir against what it
 * last wrote there and rewrites only the files that differ, so unchanged
 * files keep their mtimes and rsync's quick check skips them. The
 * repository's own index, HEAD and work tree are never touched, and the
 * staging dir never holds `.git`.
 *
 * Every git runs with the caller's `GIT_*` variables removed: a hook runs
 * with `GIT_DIR` and friends set for its own repository, and they must not
 * redirect fanout's commands.
 *
 * @module
 */

import { EnvironmentError, exists, SafetyError, UsageError } from "../core/mod.ts";

/** An opened repository. */
export interface GitRepo {
  /** The path as given (`--repo` or `publisher.repo`). */
  path: string;
  /** Absolute path of its git directory (the repo itself when bare). */
  gitDir: string;
}

/** A resolved ref. */
export interface ResolvedRef {
  /** Full commit id. */
  commit: string;
  /** The commit's root tree id. */
  tree: string;
}

/** Output of one git command. */
interface GitOutput {
  code: number;
  stdout: string;
  /** stdout as git wrote it (names that are not UTF-8 stay as they are). */
  raw: Uint8Array;
  stderr: string;
}

const dec = new TextDecoder();

async function git(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<GitOutput> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("GIT_")) env[k] = v;
  }
  Object.assign(env, { LC_ALL: "C", GIT_TERMINAL_PROMPT: "0" }, opts.env);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("git", {
      args,
      cwd: opts.cwd,
      env,
      clearEnv: true,
      stdin: "null",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new EnvironmentError(
        'git is not installed (no "git" on PATH): install it with "apt-get install git"',
      );
    }
    throw new EnvironmentError(`cannot run git: ${(e as Error).message}`);
  }
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    raw: out.stdout,
    stderr: dec.decode(out.stderr),
  };
}

/** git's own most telling line, without its `fatal: ` prefix. */
function gitWords(out: GitOutput): string {
  const line = out.stderr.split("\n").map((l) => l.trim()).find(Boolean) ?? `exit ${out.code}`;
  return line.replace(/^(fatal|error): /, "");
}

/**
 * Opens the repository at `path`: a bare repository, or the top of a work
 * tree. A directory merely inside some other repository does not count.
 *
 * @throws {UsageError} when `path` does not exist or is not a git repository.
 * @throws {EnvironmentError} when git is not installed.
 *
 * @example
 * ```ts
 * const repo = await openRepo("/srv/git/plugins.git");
 * repo.gitDir; // "/srv/git/plugins.git"
 * ```
 */
export async function openRepo(path: string): Promise<GitRepo> {
  let real: string;
  try {
    real = await Deno.realPath(path);
    if (!(await Deno.stat(real)).isDirectory) {
      throw new UsageError(`repository ${path} is not a directory (--repo or publisher.repo)`);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`repository ${path} does not exist (--repo or publisher.repo)`);
  }
  // The ceiling stops git from walking up into a repository that merely contains `path`.
  const parent = real.slice(0, real.lastIndexOf("/")) || "/";
  const out = await git(["rev-parse", "--absolute-git-dir"], {
    cwd: real,
    env: { GIT_CEILING_DIRECTORIES: parent },
  });
  if (out.code !== 0) {
    throw new UsageError(
      `${path} is not a git repository (--repo or publisher.repo): git says "${gitWords(out)}"`,
    );
  }
  return { path, gitDir: out.stdout.trim() };
}

/**
 * Resolves `ref` (a branch, tag, `refs/…` name or commit id) to its commit
 * and that commit's tree.
 *
 * @throws {UsageError} when the ref does not name a commit in the repository;
 * the message lists some branches.
 *
 * @example
 * ```ts
 * const { commit, tree } = await resolveRef(repo, "main");
 * ```
 */
export async function resolveRef(repo: GitRepo, ref: string): Promise<ResolvedRef> {
  if (!ref || ref.startsWith("-") || /[\s\0]/.test(ref)) {
    throw new UsageError(`bad ref ${JSON.stringify(ref)}: expected a branch, tag or commit id`);
  }
  // One git for both ids: the commit, and its tree.
  const both = await git([
    `--git-dir=${repo.gitDir}`,
    "rev-parse",
    `${ref}^{commit}`,
    `${ref}^{tree}`,
  ]);
  const ids = both.stdout.split("\n").filter(Boolean);
  if (both.code !== 0 || ids.length !== 2 || !ids.every((id) => OBJECT_ID.test(id))) {
    const heads = await git([
      `--git-dir=${repo.gitDir}`,
      "for-each-ref",
      "--count=8",
      "--sort=-committerdate",
      "--format=%(refname:short)",
      "refs/heads/",
    ]);
    const names = heads.stdout.split("\n").filter(Boolean);
    throw new UsageError(
      `unknown ref "${ref}" in ${repo.path}: ` +
        (names.length ? `branches: ${names.join(", ")}` : "the repository has no branches yet"),
    );
  }
  return { commit: ids[0], tree: ids[1] };
}

/** A full object id: SHA-1 or SHA-256, in hex. */
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/**
 * Whether commit `a` is an ancestor of commit `b` (or the same commit).
 * Returns null when git cannot tell, because one of them is not in the
 * repository (history rewritten, or published from another repository).
 *
 * @example
 * ```ts
 * if (await isAncestor(repo, next.commit, published.commit)) console.log("rollback");
 * ```
 */
export async function isAncestor(repo: GitRepo, a: string, b: string): Promise<boolean | null> {
  const out = await git([`--git-dir=${repo.gitDir}`, "merge-base", "--is-ancestor", a, b]);
  return out.code === 0 ? true : out.code === 1 ? false : null;
}

/** The ids of the tree with no entries, in SHA-1 and SHA-256 repositories. */
const EMPTY_TREES = new Set([
  "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
  "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
]);

/**
 * True when `tree` has no entries at all: an object id is the hash of its
 * content, so the empty tree has one id in each hash git uses.
 *
 * @example
 * ```ts
 * if (isEmptyTree(tree)) throw new SafetyError("empty tree");
 * ```
 */
export function isEmptyTree(tree: string): boolean {
  return EMPTY_TREES.has(tree);
}

/** Where an export keeps its bookkeeping (outside the staging dir). */
export interface ExportPaths {
  /** The staging directory: exactly the tree, nothing else. */
  staging: string;
  /** The private index describing what was last written to `staging`. */
  indexFile: string;
  /** Records which staging dir the index belongs to, and the tree in it. */
  stampFile: string;
}

/** What {@linkcode exportTree} did. */
export interface ExportResult {
  /** True when the staging dir was (re)built from nothing. */
  fresh: boolean;
  /** Paths removed from staging that the index did not know (tampering, a killed run). */
  strays: number;
  /** Wall time in ms. */
  ms: number;
}

interface Stamp {
  staging: string;
  tree: string | null;
}

/**
 * Makes `paths.staging` hold exactly `tree`: changed files rewritten,
 * removed ones deleted, unchanged ones left alone (same mtime), anything
 * else in the directory removed. Never writes `.git` there.
 *
 * Call it under the publish lock: two exports into one staging dir at once
 * would interleave.
 *
 * @throws {SafetyError} when the staging dir is not empty and was not made by
 * fanout (so a mistyped `publisher.staging` never wipes someone's files).
 * @throws {UsageError} when git cannot check the tree out.
 *
 * @example
 * ```ts
 * await exportTree(repo, tree, {
 *   staging: "/var/lib/fanout/git1/staging",
 *   indexFile: "/var/lib/fanout/git1/staging.index",
 *   stampFile: "/var/lib/fanout/git1/staging.json",
 * });
 * ```
 */
export async function exportTree(
  repo: GitRepo,
  tree: string,
  paths: ExportPaths,
): Promise<ExportResult> {
  const started = performance.now();
  const stamp = await readStamp(paths.stampFile);
  const ours = stamp?.staging === paths.staging;
  if (!ours && !(await isEmptyOrMissing(paths.staging))) {
    throw new SafetyError(
      `staging dir ${paths.staging} is not empty and fanout did not make it: ` +
        `empty it, or point publisher.staging at an empty or new directory`,
    );
  }
  await Deno.mkdir(paths.staging, { recursive: true });
  if (!ours) {
    await Deno.remove(paths.indexFile).catch(() => {});
    // Claim the directory before writing into it, so a killed run can resume.
    await writeStamp(paths.stampFile, { staging: paths.staging, tree: null });
  }
  // Only a killed git leaves this; we hold the publish lock, so it is stale.
  await Deno.remove(`${paths.indexFile}.lock`).catch(() => {});
  const fresh = !ours || !(await exists(paths.indexFile));

  const env = { GIT_INDEX_FILE: paths.indexFile };
  const base = [`--git-dir=${repo.gitDir}`, `--work-tree=${paths.staging}`];
  const read = await git([...base, "read-tree", "--reset", "-u", tree], {
    cwd: paths.staging,
    env,
  });
  if (read.code !== 0) {
    throw new UsageError(`cannot export tree ${tree} into ${paths.staging}: ${gitWords(read)}`);
  }
  // Whatever git does not track there (a run killed mid-way, a stray edit) goes.
  const others = await git([...base, "ls-files", "-z", "--others", "--directory"], {
    cwd: paths.staging,
    env,
  });
  if (others.code !== 0) {
    throw new UsageError(`cannot list ${paths.staging}: ${gitWords(others)}`);
  }
  const strays = others.stdout.split("\0").filter(Boolean);
  for (const p of strays) {
    await Deno.remove(`${paths.staging}/${p.replace(/\/$/, "")}`, { recursive: true });
  }
  await writeStamp(paths.stampFile, { staging: paths.staging, tree });
  return { fresh, strays: strays.length, ms: performance.now() - started };
}

/**
 * Brings staging from the tree its private index holds to `tree`, touching
 * only the paths that differ between the two (a one-tree `read-tree -m -u`:
 * unchanged files are not even stat'ed, and nothing else in the directory is
 * looked at). False, with nothing changed, when that cannot be done: no
 * export of this staging dir to start from, or git refuses (a changed path
 * in staging is not what the index says, an untracked file is in the way);
 * {@linkcode exportTree} is then the way.
 *
 * Call it under the publish lock, like {@linkcode exportTree}.
 *
 * @example
 * ```ts
 * if (!(await updateTree(repo, tree, paths))) await exportTree(repo, tree, paths);
 * ```
 */
export async function updateTree(
  repo: GitRepo,
  tree: string,
  paths: ExportPaths,
): Promise<boolean> {
  const stamp = await readStamp(paths.stampFile);
  const ours = stamp?.staging === paths.staging && stamp.tree !== null;
  if (!ours || !(await exists(paths.indexFile)) || !(await exists(paths.staging))) return false;
  const read = await git(
    [`--git-dir=${repo.gitDir}`, `--work-tree=${paths.staging}`, "read-tree", "-m", "-u", tree],
    { cwd: paths.staging, env: { GIT_INDEX_FILE: paths.indexFile } },
  );
  if (read.code !== 0) return false;
  await writeStamp(paths.stampFile, { staging: paths.staging, tree });
  return true;
}

/** What a path is in a git tree: a submodule is none of these. */
export type GitKind = "file" | "dir" | "symlink";

/** One path that differs between two trees. */
export interface TreeChange {
  /** Relative, `/`-separated, exactly as git names it. */
  path: string;
  /** What it was; null when it is new. */
  before: GitKind | null;
  /** What it is; null when it is gone. */
  after: GitKind | null;
}

/** The paths that differ between two trees, or why they cannot be trusted. */
export type TreeDiff = { changes: TreeChange[] } | { doubt: string };

/**
 * Every path that differs between trees `from` and `to`, directories
 * included (a directory with a change below it is itself changed): added,
 * removed, edited, with another mode, or of another kind. A doubt instead
 * when the answer is not one to act on: a tree git cannot read (gone from the
 * repository), more than `maxPaths` paths, a name that is not UTF-8, a
 * submodule.
 *
 * @example
 * ```ts
 * const diff = await treeChanges(repo, publishedTree, tree, 10_000);
 * if ("doubt" in diff) console.log(`sending the whole tree: ${diff.doubt}`);
 * ```
 */
export async function treeChanges(
  repo: GitRepo,
  from: string,
  to: string,
  maxPaths: number,
): Promise<TreeDiff> {
  const out = await git([
    `--git-dir=${repo.gitDir}`,
    "diff-tree",
    "-r",
    "-t",
    "-z",
    "--no-renames",
    from,
    to,
  ]);
  if (out.code !== 0) return { doubt: `git cannot compare the trees: ${gitWords(out)}` };
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(out.raw);
  } catch {
    return { doubt: "a changed name is not UTF-8" };
  }
  return parseRawDiff(text, maxPaths);
}

/** Git's modes, as the kinds they give. */
const KIND_OF_MODE: Record<string, GitKind | null> = {
  "000000": null,
  "040000": "dir",
  "100644": "file",
  "100755": "file",
  "120000": "symlink",
};

/**
 * Reads `diff-tree -z` raw output: per change `:<mode> <mode> <id> <id>
 * <status>` and the path, each ended by a NUL. A path whose kind changes
 * between a directory and anything else comes twice (removed, added): one
 * change.
 */
function parseRawDiff(text: string, maxPaths: number): TreeDiff {
  const fields = text.split("\0");
  const byPath = new Map<string, TreeChange>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [before, after] = fields[i].slice(1).split(" ");
    const path = fields[i + 1];
    if (!(before in KIND_OF_MODE) || !(after in KIND_OF_MODE)) {
      return { doubt: `${JSON.stringify(path)} is neither a file, a symlink nor a directory` };
    }
    const seen = byPath.get(path);
    byPath.set(path, {
      path,
      before: seen?.before ?? KIND_OF_MODE[before],
      after: seen?.after ?? KIND_OF_MODE[after],
    });
    if (byPath.size > maxPaths) return { doubt: `more than ${maxPaths} paths changed` };
  }
  return { changes: [...byPath.values()] };
}

async function readStamp(file: string): Promise<Stamp | null> {
  try {
    const v = JSON.parse(await Deno.readTextFile(file));
    return typeof v?.staging === "string" ? v as Stamp : null;
  } catch {
    return null;
  }
}

async function writeStamp(file: string, stamp: Stamp): Promise<void> {
  await Deno.mkdir(file.slice(0, file.lastIndexOf("/")) || "/", { recursive: true });
  const tmp = `${file}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(stamp) + "\n");
  await Deno.rename(tmp, file);
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw new UsageError(`staging dir ${dir} cannot be read: ${(e as Error).message}`);
  }
  if (!st.isDirectory) {
    throw new SafetyError(`staging dir ${dir} is not a directory: fix publisher.staging`);
  }
  for await (const _ of Deno.readDir(dir)) return false;
  return true;
}
