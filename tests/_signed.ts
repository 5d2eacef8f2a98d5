// Signed versions served to clients: trees signed here (lib/release) as a
// publisher signs them, served by a plain rsync daemon to clients whose
// fleet file trusts the key. Used by tests/client_verified_test.ts and
// tests/client_killed_test.ts; the release section of a signed fleet, by
// tests that publish with the real publisher.
import {
  buildManifest,
  formatManifest,
  generateKeyPair,
  loadSigningKey,
  manifestDigest,
  type SigningKey,
  signRelease,
  writePrivateKey,
} from "../lib/release/mod.ts";
import { formatMarker, stampMarker, type VersionMarker } from "../lib/version/mod.ts";
import { hostToken } from "../lib/report/mod.ts";
import { type Lab, type Proc, sh, withLab, writeTree } from "./_helpers.ts";
import { plainDaemon } from "./_plain_daemon.ts";

/** What a publisher leaves out of a manifest. */
export const RELEASE_SKIP = [
  ".fanout-version",
  ".fanout-changes",
  ".fanout-manifest",
  ".fanout-release",
];

/** What dest holds beside the tree: never compared with the source. */
export const OURS = [".fanout-dest", ".fanout-changes"];

/** A first version: files, a symlink ("-> target"), an executable. */
export const V1: Record<string, string> = {
  "a.txt": "alpha v1\n",
  "lib/b.txt": "bravo v1\n",
  "lib/keep.txt": "the same in every version\n",
  "bin/run": "#!/bin/sh\necho v1\n",
  "gone.txt": "only in v1\n",
  "lib/link": "-> ../a.txt",
};

/** The next: changed files, one added (in a new directory), one removed, a symlink retargeted. */
export const V2: Record<string, string> = {
  "a.txt": "alpha v2\n",
  "lib/b.txt": "bravo v2\n",
  "lib/keep.txt": "the same in every version\n",
  "bin/run": "#!/bin/sh\necho v2\n",
  "new/c.txt": "charlie, new in v2\n",
  "lib/link": "-> ../new/c.txt",
};

/** The marker of version `seq` (a fixed commit and publish time of its own). */
export function markerOf(seq: number): VersionMarker {
  return {
    seq,
    commit: `c0ffee${seq}`,
    ref: "main",
    published_at: new Date(Date.UTC(2026, 10, 25, 0, 0, seq)).toISOString(),
  };
}

/**
 * Writes `files` as the whole served tree (a content "-> target" makes a
 * symlink; `bin/run` is made executable), signed as version `seq` with
 * `key`, as the publisher writes one: tree, manifest, envelope, a version
 * log, the marker last.
 *
 * @example
 * ```ts
 * await publish(s.src, 2, V2, s.key);
 * ```
 */
export async function publish(
  src: string,
  seq: number,
  files: Record<string, string>,
  key: SigningKey,
): Promise<VersionMarker> {
  await Deno.remove(src, { recursive: true }).catch(() => {});
  const links = Object.entries(files).filter(([, v]) => v.startsWith("-> "));
  await writeTree(
    src,
    Object.fromEntries(Object.entries(files).filter(([, v]) => !v.startsWith("-> "))),
  );
  for (const [path, v] of links) await Deno.symlink(v.slice(3), `${src}/${path}`);
  await Deno.chmod(`${src}/bin/run`, 0o755);
  const m = markerOf(seq);
  const manifest = formatManifest(await buildManifest(src, { skip: RELEASE_SKIP }));
  await Deno.writeFile(`${src}/.fanout-manifest`, manifest);
  const envelope = await signRelease(
    { ...m, manifest_sha256: await manifestDigest(manifest) },
    key,
  );
  await Deno.writeFile(`${src}/.fanout-release`, envelope);
  await Deno.writeTextFile(`${src}/.fanout-changes`, "not signed, never kept\n");
  await Deno.writeTextFile(`${src}/.fanout-version`, formatMarker(m));
  stampMarker(`${src}/.fanout-version`);
  return m;
}

/**
 * The release section of a signed fleet (for `lab.fleet`'s `extra`): a new
 * key pair, its private key written into the lab as the signing key, its
 * public key the one the fleet trusts.
 *
 * @example
 * ```ts
 * await lab.fleet({ replicas: [], extra: await signingSection(lab) });
 * ```
 */
export async function signingSection(lab: Lab): Promise<string> {
  const pair = await generateKeyPair();
  await writePrivateKey(`${lab.dir}/release.key`, pair.privatePem);
  return `release:\n  signing_key_file: ${lab.dir}/release.key\n  public_keys: [${pair.publicKey.text}]`;
}

/** A signed lab: see {@linkcode signedLab}. */
export interface Signed {
  src: string;
  /** A shell script the server runs before each request (`pre-xfer exec`). */
  hook: string;
  key: SigningKey;
  /** A key of the same kind the fleet does not list. */
  stranger: SigningKey;
  /** `host:port` of the daemon. */
  server: string;
  /** The arguments of a client run of `name` into `dest` (in place, or --atomic). */
  args: (name: string, dest: string, args?: string[]) => Promise<string[]>;
  /** Runs a client of `name` into `dest` (in place, or --atomic). */
  client: (
    name: string,
    dest: string,
    args?: string[],
  ) => Promise<{ code: number; stdout: string; stderr: string }>;
  /** The state dir of client `name`. */
  stateDir: (name: string) => string;
  status: (name: string) => Promise<Record<string, unknown>>;
  /** The connections the daemon has served so far, by its log (`log: true`). */
  connections: () => Promise<number>;
}

/**
 * A new release key pair in the lab: the private key's file written (mode
 * 600) and loaded, the public key's fleet-file text.
 *
 * @example
 * ```ts
 * const { key, text } = await newKey(lab, "release");
 * ```
 */
export async function newKey(lab: Lab, name: string): Promise<{ key: SigningKey; text: string }> {
  const pair = await generateKeyPair();
  const path = `${lab.dir}/${name}.key`;
  await writePrivateKey(path, pair.privatePem);
  return { key: await loadSigningKey(path), text: pair.publicKey.text };
}

/**
 * A lab whose fleet file trusts one release key (none with `keys: false`),
 * a plain rsync daemon serving `<lab>/src` (logging each request in the lab
 * with `log: true`), and clients that report to the
 * primary as themselves. Run it within {@linkcode withSigned}, which stops
 * the daemon.
 *
 * @example
 * ```ts
 * await withSigned(async (lab) => {
 *   const s = await signedLab(lab);
 *   await publish(s.src, 1, V1, s.key);
 *   assert.equal((await s.client("web1", `${lab.dir}/apps/plugins`)).code, 0);
 * });
 * ```
 */
export async function signedLab(
  lab: Lab,
  opts: { keys?: boolean; log?: boolean } = {},
): Promise<Signed> {
  const trusted = await newKey(lab, "release");
  const stranger = await newKey(lab, "stranger");
  const src = `${lab.dir}/src`;
  await Deno.mkdir(src, { recursive: true });
  await lab.fleet({
    replicas: [],
    publisher: false,
    client: { retries: 0 },
    extra: opts.keys === false ? "" : `release:\n  public_keys: ["${trusted.text}"]`,
  });
  // What the server does before each request: nothing, unless a test writes
  // a script here.
  const hook = `${lab.dir}/pre-xfer`;
  await Deno.writeTextFile(hook, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  await Deno.chmod(hook, 0o755);
  // The daemon's log, when asked for: a file in the lab, written by every request.
  const log = opts.log ? `${lab.dir}/plain-rsyncd.log` : undefined;
  const daemon = await plainDaemon(lab, src, { preXfer: hook, log });
  daemons.set(lab, daemon.proc);
  // Each host's fleet file, written once: a run writes nothing outside its
  // dest and state dir, and tests may check that.
  const fleets = new Map<string, string>();
  const fleetOf = async (name: string) => {
    const known = fleets.get(name);
    if (known) return known;
    const token = `${lab.dir}/${name}.token`;
    const secret = (await Deno.readTextFile(lab.reportToken)).trim();
    await Deno.writeTextFile(token, `${await hostToken(secret, name)}\n`, { mode: 0o600 });
    await Deno.chmod(token, 0o600);
    const file = `${lab.dir}/fanout-${name}.yaml`;
    const text = await Deno.readTextFile(lab.fleetFile);
    await Deno.writeTextFile(file, text.replace(lab.reportToken, token));
    fleets.set(name, file);
    return file;
  };
  const args = async (name: string, dest: string, extra: string[] = []) => [
    "--role",
    "client",
    "-c",
    await fleetOf(name),
    "--name",
    name,
    "--no-splay",
    "--source",
    daemon.url,
    "--dest",
    dest,
    ...extra,
  ];
  const stateDir = (name: string) => `${lab.dir}/state/${name}`;
  return {
    src,
    hook,
    key: trusted.key,
    stranger: stranger.key,
    server: daemon.server,
    args,
    client: async (name, dest, extra = []) => await lab.run(await args(name, dest, extra)),
    stateDir,
    status: async (name) =>
      JSON.parse(await Deno.readTextFile(`${stateDir(name)}/client-status.json`)),
    connections: async () => {
      // Each connection is a child of its own: its pid starts its lines.
      if (!log) throw new Error("signedLab(lab, { log: true }) counts connections");
      const text = await Deno.readTextFile(log).catch(() => "");
      const pids = text.split("\n").filter((l) => !/ rsyncd version /.test(l))
        .map((l) => /^\S+ \S+ \[(\d+)\]/.exec(l)?.[1]).filter((p) => p !== undefined);
      return new Set(pids).size;
    },
  };
}

const daemons = new Map<Lab, Proc>();

/**
 * Runs `body` with a fresh lab (see withLab in tests/_helpers.ts), the plain
 * daemon of {@linkcode signedLab} stopped at the end.
 *
 * @example
 * ```ts
 * Deno.test("…", () => withSigned(async (lab) => { const s = await signedLab(lab); }));
 * ```
 */
export function withSigned(body: (lab: Lab) => Promise<void>): Promise<void> {
  return withLab(async (lab) => {
    try {
      await body(lab);
    } finally {
      await daemons.get(lab)?.stop("SIGTERM", 3_000);
      daemons.delete(lab);
    }
  });
}

/**
 * Every path of the tree dest shows, with type, size, mode, mtime, inode and
 * contents' hash, and where dest points (--atomic) and which trees are kept.
 *
 * @example
 * ```ts
 * const before = await snapshot(dest);
 * assert.equal(await snapshot(dest), before, "dest as it was");
 * ```
 */
export async function snapshot(dest: string): Promise<string> {
  const r = await sh("sh", [
    "-c",
    `cd "${dest}/" && readlink "${dest}"; ls -a "$(dirname "${dest}")/.$(basename "${dest}").trees" 2>/dev/null; ` +
    `find . -mindepth 1 -printf '%p %y %s %m %T@ %i\\n' | sort && find . -type f -exec sha256sum {} + | sort`,
  ]);
  return r.stdout;
}

/** The two tree layouts of a client: name and flags. */
export const LAYOUTS: [string, string[]][] = [["in place", []], ["--atomic", ["--atomic"]]];
