/**
 * The manifest of a tree: every path below its root with its type, mode,
 * size and SHA-256, in one canonical text that the release's signature
 * covers.
 *
 * ```
 * fanout-manifest v1
 * d 0755 0 - lib
 * f 0644 1234 <sha256 hex> lib/a.ts
 * l 0777 4 <sha256 hex of "a.ts"> lib/b.ts
 * ```
 *
 * One line a path, sorted by code point (the order of the names' UTF-8
 * bytes), each field in one spelling only: a directory has size 0 and no
 * hash, a symlink the length and hash of its target, every mode four octal
 * digits (a symlink's is always 0777). Names are taken as they are, never
 * normalized (NFC and NFD spellings of one name are two paths). The parser
 * takes nothing else: a manifest comes from a server and is hostile until
 * its signature is checked, and a manifest that parses is byte for byte the
 * one {@linkcode formatManifest} writes, so its hash is well defined.
 *
 * @module
 */

import {
  CONTROL_CHARS,
  quoted,
  RELEASE_ENVELOPE,
  RELEASE_MANIFEST,
  SafetyError,
  VERSION_LOG,
  VERSION_MARKER,
} from "../core/mod.ts";
import { type Hashers, hashers } from "./_hash.ts";
import { comparePaths, type TreeEntry, walkTree } from "./tree.ts";

/** A manifest's first line. */
export const MANIFEST_HEADER = "fanout-manifest v1";

/**
 * The paths at a tree's root that no manifest lists: fanout's own files
 * beside the version (the marker, the version log, the manifest and the
 * envelope), which the envelope and the marker vouch for themselves.
 */
export const RELEASE_SKIP: readonly string[] = [
  VERSION_MARKER,
  VERSION_LOG,
  RELEASE_MANIFEST,
  RELEASE_ENVELOPE,
];

/** What a manifest lists. */
export type EntryType = "file" | "dir" | "symlink";

/** One path of a manifest. */
export interface ManifestEntry {
  /** Relative, `/`-separated. */
  path: string;
  type: EntryType;
  /** Permission bits, 0 to 0o7777 (0o777 for a symlink). */
  mode: number;
  /** Bytes of content (a symlink: of its target; a directory: 0). */
  size: number;
  /** SHA-256 in lowercase hex of the content or the target; null for a directory. */
  sha256: string | null;
}

/** A tree as a manifest lists it, its entries sorted by {@linkcode comparePaths}. */
export interface Manifest {
  entries: readonly ManifestEntry[];
}

/** Bounds of a manifest, parsed or built. */
export interface ManifestLimits {
  /** The most bytes of manifest text. */
  maxBytes: number;
  /** The most paths. */
  maxPaths: number;
}

/**
 * The default bounds: a million paths, and text for as many of typical
 * length. A client may pass smaller ones to {@linkcode parseManifest}.
 */
export const MANIFEST_LIMITS: Readonly<ManifestLimits> = {
  maxBytes: 128 << 20,
  maxPaths: 1_000_000,
};

/** The longest path (in UTF-16 units, never more than its UTF-8 bytes) and name Linux takes. */
const MAX_PATH = 4096;
const MAX_NAME = 255;

/**
 * A manifest that cannot be built or read: a tree holding what a manifest
 * cannot list, or text that is not a canonical manifest (exit 4).
 *
 * @example
 * ```ts
 * try {
 *   parseManifest(bytes);
 * } catch (e) {
 *   if (e instanceof ManifestError) console.error(e.message); // "manifest line 3: ..."
 * }
 * ```
 */
export class ManifestError extends SafetyError {
  /** The 1-based line of the text, when parsing. */
  readonly line: number | null;
  /** The path concerned, when there is one. */
  readonly path: string | null;
  constructor(message: string, where: { line?: number; path?: string } = {}) {
    super(where.line ? `manifest line ${where.line}: ${message}` : message);
    this.name = "ManifestError";
    this.line = where.line ?? null;
    this.path = where.path ?? null;
  }
}

/**
 * Why `path` cannot be a manifest's path, or null: empty, absolute, a `.`,
 * `..` or empty component, a control character, or longer than Linux takes.
 *
 * @example
 * ```ts
 * pathProblem("lib/a.ts"); // null
 * pathProblem("lib/../etc"); // "has a \"..\" component"
 * ```
 */
export function pathProblem(path: string): string | null {
  if (path === "") return "is empty";
  if (path.length > MAX_PATH) return `is longer than ${MAX_PATH}`;
  if (CONTROL_CHARS.test(path)) return "holds a control character";
  if (path.startsWith("/")) return "is absolute";
  for (const name of path.split("/")) {
    if (name === "") return "has an empty component";
    if (name === "." || name === "..") return `has a "${name}" component`;
    if (name.length > MAX_NAME) return `has a name longer than ${MAX_NAME}`;
  }
  return null;
}

const enc = new TextEncoder();

/** Options of {@linkcode buildManifest}. */
export interface BuildOptions {
  /** Relative paths left out: the marker, the manifest and the signature files themselves. */
  skip?: Iterable<string>;
  /**
   * Called with each path before its `lstat`: false leaves it out, with what
   * is below it (the publisher's `push.exclude`, which never leaves it).
   */
  filter?: (path: string) => boolean;
  /** Bounds the manifest must keep to ({@linkcode MANIFEST_LIMITS} by default). */
  limits?: ManifestLimits;
}

/**
 * The manifest of the tree at `root`, walked by `lstat` (symlinks listed,
 * never followed), each file hashed in pieces of a fixed buffer.
 *
 * @throws {ManifestError} for a path no manifest can hold (a control
 * character in a name, a FIFO or device, a symlink target that is not valid
 * UTF-8), or past the limits.
 * @throws {TreeError} for a name that is not valid UTF-8, or a file that
 * changes while it is read.
 *
 * @example
 * ```ts
 * const m = await buildManifest("/srv/export", { skip: [".fanout-version", ".fanout-manifest"] });
 * await Deno.writeFile("/srv/export/.fanout-manifest", formatManifest(m));
 * ```
 */
export async function buildManifest(root: string, opts: BuildOptions = {}): Promise<Manifest> {
  const limits = opts.limits ?? MANIFEST_LIMITS;
  const tree = await walkTree(root, {
    skip: opts.skip,
    filter: opts.filter,
    maxPaths: limits.maxPaths,
  });
  const hash = await hashers();
  return { entries: tree.map((e) => manifestEntry(root, e, hash)) };
}

/**
 * The manifest's entry for `e`, a path of the tree at `root` as its walk
 * found it: a file hashed (it must still be the file walked), a symlink's
 * target read and hashed.
 *
 * @throws {ManifestError} for a path no manifest can hold, a FIFO, socket or
 * device, a symlink target that is not valid UTF-8.
 * @throws {TreeError} for a file replaced or resized since the walk.
 *
 * @example
 * ```ts
 * const hash = await hashers();
 * const entries = (await walkTree(root)).map((e) => manifestEntry(root, e, hash));
 * ```
 */
export function manifestEntry(root: string, e: TreeEntry, hash: Hashers): ManifestEntry {
  const why = pathProblem(e.path);
  if (why) throw new ManifestError(`${quoted(e.path, 200)} ${why}`, { path: e.path });
  if (e.kind === "other") {
    throw new ManifestError(
      `${quoted(e.path, 200)} is not a file, a directory or a symlink (a FIFO, socket or device)`,
      { path: e.path },
    );
  }
  const mode = e.mode;
  if (e.kind === "dir") return { path: e.path, type: "dir", mode, size: 0, sha256: null };
  if (e.kind === "symlink") return symlinkEntry(root, e.path, hash);
  return { path: e.path, type: "file", mode, size: e.size, sha256: hash.file(root, e) };
}

function symlinkEntry(root: string, path: string, hash: Hashers): ManifestEntry {
  let target: string;
  try {
    target = Deno.readLinkSync(`${root}/${path}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.InvalidData)) throw e;
    throw new ManifestError(`${quoted(path, 200)} is a symlink whose target is not valid UTF-8`, {
      path,
    });
  }
  const bytes = enc.encode(target);
  return { path, type: "symlink", mode: 0o777, size: bytes.length, sha256: hash.bytes(bytes) };
}

const TYPE_CHAR: Record<EntryType, string> = { file: "f", dir: "d", symlink: "l" };
const CHAR_TYPE: Record<string, EntryType> = { f: "file", d: "dir", l: "symlink" };

/**
 * The canonical text of `m`, as bytes: what is hashed, signed and sent.
 *
 * @example
 * ```ts
 * const bytes = formatManifest(await buildManifest(root));
 * parseManifest(bytes); // the same manifest again
 * ```
 */
export function formatManifest(m: Manifest): Uint8Array<ArrayBuffer> {
  const lines = [MANIFEST_HEADER];
  for (const e of m.entries) lines.push(formatEntry(e));
  lines.push("");
  return enc.encode(lines.join("\n"));
}

/**
 * The line of `e` in a manifest's text, without its newline.
 *
 * @example
 * ```ts
 * formatEntry({ path: "lib", type: "dir", mode: 0o755, size: 0, sha256: null }); // "d 0755 0 - lib"
 * ```
 */
export function formatEntry(e: ManifestEntry): string {
  return `${TYPE_CHAR[e.type]} ${e.mode.toString(8).padStart(4, "0")} ${e.size} ${
    e.sha256 ?? "-"
  } ${e.path}`;
}

const LINE = /^([fdl]) ([0-7]{4}) (0|[1-9][0-9]{0,15}) ([0-9a-f]{64}|-) (.+)$/s;

/**
 * Parses manifest bytes, refusing anything {@linkcode formatManifest} would
 * not write: more than `limits` allow, invalid UTF-8, another header, a
 * line of another shape, a path that is absolute, has `.`, `..` or empty
 * components or control characters, a path out of order or twice, a path
 * below something that is not a directory listed before it.
 *
 * @throws {ManifestError} with the line and what is wrong with it.
 *
 * @example
 * ```ts
 * const m = parseManifest(bytes, { maxBytes: 16 << 20, maxPaths: 200_000 });
 * console.log(`${m.entries.length} paths`);
 * ```
 */
export function parseManifest(
  bytes: Uint8Array,
  limits: ManifestLimits = MANIFEST_LIMITS,
): Manifest {
  if (bytes.length > limits.maxBytes) {
    throw new ManifestError(`manifest is ${bytes.length} bytes, more than ${limits.maxBytes}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ManifestError("manifest is not valid UTF-8");
  }
  if (!text.endsWith("\n")) throw new ManifestError("manifest does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== MANIFEST_HEADER) {
    throw new ManifestError(`expected ${quoted(MANIFEST_HEADER)}, got ${quoted(lines[0])}`, {
      line: 1,
    });
  }
  if (lines.length - 1 > limits.maxPaths) {
    throw new ManifestError(
      `manifest lists ${lines.length - 1} paths, more than ${limits.maxPaths}`,
    );
  }
  const entries: ManifestEntry[] = [];
  const dirs = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    const e = parseLine(lines[i], i + 1);
    const prev = entries.at(-1)?.path;
    if (prev !== undefined && comparePaths(prev, e.path) >= 0) {
      const what = prev === e.path ? "is listed twice" : `comes after ${quoted(prev, 200)}`;
      throw new ManifestError(`${quoted(e.path, 200)} ${what}: paths must be sorted and unique`, {
        line: i + 1,
        path: e.path,
      });
    }
    const slash = e.path.lastIndexOf("/");
    if (slash > 0 && !dirs.has(e.path.slice(0, slash))) {
      throw new ManifestError(
        `${quoted(e.path, 200)} is below ${
          quoted(e.path.slice(0, slash), 200)
        }, which is not a directory listed before it`,
        { line: i + 1, path: e.path },
      );
    }
    if (e.type === "dir") dirs.add(e.path);
    entries.push(e);
  }
  return { entries };
}

function parseLine(line: string, n: number): ManifestEntry {
  const m = LINE.exec(line);
  if (!m) {
    throw new ManifestError(
      `expected "<f|d|l> <mode> <size> <sha256|-> <path>", got ${quoted(line, 200)}`,
      { line: n },
    );
  }
  const [, t, modeText, sizeText, hash, path] = m;
  const type = CHAR_TYPE[t];
  const why = pathProblem(path);
  if (why) throw new ManifestError(`path ${quoted(path, 200)} ${why}`, { line: n, path });
  const mode = parseInt(modeText, 8), size = Number(sizeText);
  if (!Number.isSafeInteger(size)) {
    throw new ManifestError(`size ${sizeText} is too big`, { line: n });
  }
  if (type === "dir" ? size !== 0 || hash !== "-" : hash === "-") {
    throw new ManifestError(
      type === "dir"
        ? `directory ${quoted(path, 200)} must have size 0 and hash "-"`
        : `${type} ${quoted(path, 200)} has no hash`,
      { line: n, path },
    );
  }
  if (type === "symlink" && mode !== 0o777) {
    throw new ManifestError(`symlink ${quoted(path, 200)} must have mode 0777`, { line: n, path });
  }
  return { path, type, mode, size, sha256: type === "dir" ? null : hash };
}

/**
 * The paths manifest `to` lists by a line that manifest `from` does not
 * hold byte for byte: every path `from` lists otherwise (another type, mode,
 * size or hash) or not at all. `to` must be a manifest that parses
 * ({@linkcode parseManifest}); `from` is only compared with, never parsed,
 * so a path missing from the answer is one `to` lists exactly as `from`
 * does. Null when `from` is not UTF-8 text (nothing can be said of it).
 * A version that changes a few paths costs two splits and a set, not a
 * second parse of thousands of lines.
 *
 * @example
 * ```ts
 * const relisted = relistedPaths(keptBytes, newBytes); // Set { "lib/a.ts" }
 * const unchanged = (path: string) => relisted !== null && !relisted.has(path);
 * ```
 */
export function relistedPaths(from: Uint8Array, to: Uint8Array): Set<string> | null {
  let was: Set<string>;
  const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  try {
    was = new Set(dec.decode(from).split("\n"));
  } catch {
    return null;
  }
  const lines = dec.decode(to).split("\n");
  const out = new Set<string>();
  // Line 0 is the header, and the last is empty (the text ends with a newline).
  for (let i = 1; i < lines.length - 1; i++) {
    if (!was.has(lines[i])) out.add(pathOfLine(lines[i]));
  }
  return out;
}

/** The path of a manifest line that parses: what follows its fourth space. */
function pathOfLine(line: string): string {
  let at = -1;
  for (let k = 0; k < 4; k++) at = line.indexOf(" ", at + 1);
  return line.slice(at + 1);
}

/**
 * The SHA-256 of manifest bytes in lowercase hex: what a release's
 * signature binds.
 *
 * @example
 * ```ts
 * const digest = await manifestDigest(formatManifest(m));
 * ```
 */
export async function manifestDigest(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}
