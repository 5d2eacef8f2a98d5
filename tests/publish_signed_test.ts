// Signed publishes end to end: a real git repository, the real primary (its
// rsync daemon), the fanout binary run as a process. What lands on the
// primary is checked as a client would: the envelope against the fleet's
// public key, the manifest against the envelope, the tree against the
// manifest, the marker against the envelope.
import assert from "node:assert/strict";
import { type Lab, type Ran, waitFor, withLab } from "./_helpers.ts";
import { GitRepo, publishFrom as publish } from "./_fleet.ts";
import {
  buildManifest,
  diffManifests,
  generateKeyPair,
  manifestDigest,
  markerMismatch,
  parseManifest,
  type PublicKey,
  RELEASE_SKIP,
  type VerifiedRelease,
  verifyRelease,
  verifyTree,
  writePrivateKey,
} from "../lib/release/mod.ts";
import { parseMarker } from "../lib/version/mod.ts";

const UNSIGNED = "versions are not signed: add release.public_keys (fanout keygen)";

/** A new key pair: the private key written (mode 600) to `path`. */
async function newKey(path: string): Promise<PublicKey> {
  const pair = await generateKeyPair();
  await writePrivateKey(path, pair.privatePem);
  return pair.publicKey;
}

/** The fleet file's release section. */
function releaseYaml(keyFile: string, listed: PublicKey[]): string {
  return `release:\n  signing_key_file: ${keyFile}\n  public_keys: [${
    listed.map((k) => k.text).join(", ")
  }]`;
}

/** Writes the lab's fleet (no replicas, `*.tmp` never published), with `release` appended. */
function fleet(lab: Lab, release = ""): Promise<string> {
  return lab.fleet({ replicas: [], push: { exclude: '[.git, "*.tmp"]' }, extra: release });
}

/** Puts `release` in place of the fleet file's release section (the hosts' ports stay). */
async function setRelease(lab: Lab, release: string): Promise<void> {
  const text = await Deno.readTextFile(lab.fleetFile);
  const at = text.indexOf("\nrelease:\n");
  await Deno.writeTextFile(
    lab.fleetFile,
    `${at < 0 ? text.trimEnd() : text.slice(0, at)}\n${release}\n`,
  );
}

function ok(r: Ran): string {
  assert.equal(r.code, 0, `publish failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** The `manifest built` log line's fields. */
function manifestLine(r: Ran): { paths: number; hashed: number; kept: boolean } {
  const line = r.stderr.split("\n").find((l) => l.includes('msg="manifest built"'));
  assert.ok(line, `no manifest line:\n${r.stderr}`);
  const field = (k: string) => new RegExp(`\\b${k}=(\\S+)`).exec(line)![1];
  return {
    paths: Number(field("paths")),
    hashed: Number(field("hashed")),
    kept: field("kept") === "true",
  };
}

/**
 * Checks the primary as a client would: the envelope verifies with `key`,
 * the manifest is the one it signs, the marker is the envelope's, the tree
 * is the manifest's, and the manifest lists `commit`'s tree (what
 * `git archive` gives, but `*.tmp`). Returns the verified release and the
 * manifest's bytes.
 */
async function assertSigned(
  lab: Lab,
  repo: GitRepo,
  key: PublicKey,
  commit: string,
  seq: number,
): Promise<{ release: VerifiedRelease; bytes: Uint8Array<ArrayBuffer> }> {
  const primary = lab.hosts.rsync1.path;
  const release = await verifyRelease(await Deno.readFile(`${primary}/.fanout-release`), [key]);
  const bytes = await Deno.readFile(`${primary}/.fanout-manifest`);
  assert.equal(await manifestDigest(bytes), release.manifest_sha256, "the manifest signed");
  const marker = parseMarker(await Deno.readTextFile(`${primary}/.fanout-version`))!;
  assert.equal(markerMismatch(release, marker), null, "the marker is the envelope's");
  assert.deepEqual([release.seq, release.commit, release.keyId], [seq, commit, key.id]);
  const manifest = parseManifest(bytes);
  assert.equal(
    await verifyTree(primary, manifest, { skip: [...RELEASE_SKIP, ".fanout-tmp"] }),
    null,
    "the primary's tree is the manifest's",
  );
  // Modes aside (git archive's umask is not the export's), it is the commit's tree.
  const archive = await repo.archive(commit, `${lab.dir}/archive-${seq}`);
  const want = (await buildManifest(archive, { filter: (p) => !p.endsWith(".tmp") })).entries;
  const strip = (m: typeof want) => m.map((e) => [e.path, e.type, e.size, e.sha256]);
  assert.deepEqual(strip(manifest.entries), strip(want));
  return { release, bytes };
}

Deno.test("publish signed: manifest and envelope verify and match the tree and the marker; a one-file change hashes one file; a rollback is signed with a higher seq", async () => {
  await withLab(async (lab) => {
    const key = await newKey(`${lab.dir}/release.key`);
    await fleet(lab, releaseYaml(`${lab.dir}/release.key`, [key]));
    const server = await lab.server("primary", "rsync1");
    assert.ok(!server.stderr.includes(UNSIGNED), server.stderr);
    const repo = await GitRepo.create(lab.dir);
    const many: Record<string, string> = {};
    for (let i = 0; i < 200; i++) many[`many/d${i % 10}/f${i}.txt`] = `file ${i}\n`.repeat(i % 7);
    const a = await repo.commit({
      ...many,
      "bin/run.sh": "#!/bin/sh\necho hi\n",
      "notes.tmp": "never published (push.exclude), so never in the manifest\n",
      "lib/keep.tmp/inside.txt": "below an excluded directory\n",
      "café.txt": "a name rsync prints escaped\n",
    }, { executable: ["bin/run.sh"], symlinks: { "lib/current": "../bin/run.sh" } });
    assert.equal((await repo.push()).code, 0);

    const first = await publish(lab, repo);
    const id = key.id;
    assert.match(ok(first), new RegExp(`^published seq 1 \\(.*; signed by key ${id}$`));
    assert.ok(!first.stderr.includes(UNSIGNED), first.stderr);
    // 200 files, run.sh, café.txt and the symlink; nothing below *.tmp.
    assert.deepEqual(manifestLine(first), { paths: 216, hashed: 203, kept: false });
    const v1 = await assertSigned(lab, repo, key, a, 1);

    // One file changed among 203: only it is hashed again.
    const b = await repo.commit({ "many/d3/f13.txt": "only this one\n" });
    assert.equal((await repo.push()).code, 0);
    const second = await publish(lab, repo);
    assert.match(ok(second), /^published seq 2 .*: 1 file changed .*; signed by key/);
    assert.deepEqual(manifestLine(second), { paths: 216, hashed: 1, kept: true });
    const v2 = await assertSigned(lab, repo, key, b, 2);
    assert.deepEqual(diffManifests(parseManifest(v1.bytes), parseManifest(v2.bytes)), {
      added: [],
      removed: [],
      changed: ["many/d3/f13.txt"],
      typeChanged: [],
    });

    // The same commit again: its signed release is on the primary, nothing to do.
    const same = await publish(lab, repo);
    assert.match(ok(same), /^already published: seq 2 /);
    assert.equal(manifestLine(same).hashed, 0);

    // Back to A on purpose: a new, higher seq, signed; the manifest is A's again.
    const back = await publish(lab, repo, "--ref", a, "--force");
    assert.match(ok(back), /^published seq 3 .*rolled back from seq 2 .*; signed by key/);
    const v3 = await assertSigned(lab, repo, key, a, 3);
    assert.ok(v3.release.seq > v2.release.seq);
    assert.equal(v3.release.manifest_sha256, v1.release.manifest_sha256);

    // The kept state lost, then damaged: the whole tree is hashed, the result the same.
    const state = `${lab.dir}/state/git1`;
    await Deno.remove(`${state}/staging.record`);
    const c = await repo.commit({ "new.txt": "new\n" });
    assert.equal((await repo.push()).code, 0);
    const lost = await publish(lab, repo);
    ok(lost);
    assert.deepEqual(manifestLine(lost), { paths: 217, hashed: 204, kept: false });
    await assertSigned(lab, repo, key, c, 4);
    await Deno.writeTextFile(`${state}/staging.manifest`, "fanout-manifest v1\nnot a line\n");
    const d = await repo.commit({ "new.txt": "newer\n" });
    assert.equal((await repo.push()).code, 0);
    const damaged = await publish(lab, repo);
    ok(damaged);
    assert.match(damaged.stderr, /level=warn msg="the kept manifest cannot be used; hashing/);
    assert.equal(manifestLine(damaged).hashed, 204);
    await assertSigned(lab, repo, key, d, 5);
  });
});

Deno.test("publish signed: a missing, unlisted or open signing key is refused in one line, exit 2, nothing sent; a listed one signs the published commit again", async () => {
  await withLab(async (lab) => {
    await fleet(lab);
    // Unsigned: the server says so once at its start, check-config in the plan.
    const server = await lab.server("primary", "rsync1");
    assert.equal(server.stderr.split(UNSIGNED).length, 2, server.stderr);
    const plan = await lab.run(["check-config", "-c", lab.fleetFile]);
    assert.match(
      plan.stdout,
      new RegExp(`\\n  release +\\(all\\) +warning: versions are not signed`),
    );
    const repo = await GitRepo.create(lab.dir);
    const a = await repo.commit({ "app.txt": "version A\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo));
    const b = await repo.commit({ "app.txt": "version B\n" });
    assert.equal((await repo.push()).code, 0);
    const primary = lab.hosts.rsync1.path;
    const untouched = async (what: string) => {
      assert.equal(await Deno.readTextFile(`${primary}/app.txt`), "version A\n", what);
      assert.equal(parseMarker(await Deno.readTextFile(`${primary}/.fanout-version`))?.seq, 1);
      await assert.rejects(Deno.lstat(`${primary}/.fanout-release`), Deno.errors.NotFound);
    };

    const listed = await newKey(`${lab.dir}/listed.key`);
    const other = await newKey(`${lab.dir}/other.key`);
    const open = `${lab.dir}/open.key`;
    await Deno.copyFile(`${lab.dir}/listed.key`, open);
    await Deno.chmod(open, 0o644);
    const cases: [string, string, RegExp][] = [
      [
        "missing",
        `${lab.dir}/nowhere.key`,
        /release\.signing_key_file: .*nowhere\.key does not exist, and release\.public_keys asks for signed versions: make a key pair with "fanout keygen -c /,
      ],
      [
        "unlisted",
        `${lab.dir}/other.key`,
        new RegExp(
          `other\\.key holds key ${
            other.text.replace(/[+/]/g, "\\$&")
          } \\(id ${other.id}\\), which release\\.public_keys does not list \\(it lists ${listed.id}\\)`,
        ),
      ],
      ["open to others", open, /open\.key has mode 644, readable by group and others/],
    ];
    for (const [name, file, re] of cases) {
      await setRelease(lab, releaseYaml(file, [listed]));
      const r = await publish(lab, repo);
      assert.equal(r.code, 2, `${name}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re, name);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${name}: one line\n${r.stderr}`);
      assert.equal(r.stdout, "", name);
      await untouched(name);
      // check-config says the same.
      const check = await lab.run([
        "check-config",
        "-c",
        lab.fleetFile,
        "--role",
        "publish",
        "--repo",
        repo.bare,
      ]);
      assert.equal(check.code, 2, `${name}: check-config ${check.stderr}`);
      assert.match(check.stderr, re, `${name}: check-config`);
    }

    // With a listed key, check-config names the keys and vouches for the file.
    await setRelease(lab, releaseYaml(`${lab.dir}/listed.key`, [listed, other]));
    const check = await lab.run(
      ["check-config", "-c", lab.fleetFile, "--role", "publish", "--repo", repo.bare],
    );
    assert.equal(check.code, 0, check.stderr);
    assert.ok(
      check.stdout.includes(
        `versions are signed: clients accept keys ${listed.id}, ${other.id}; ` +
          `the publisher signs with ${lab.dir}/listed.key`,
      ),
      check.stdout,
    );
    assert.ok(
      check.stdout.includes(
        `signing key ${lab.dir}/listed.key: key ${listed.id}, listed in release.public_keys`,
      ),
      check.stdout,
    );
    assert.doesNotMatch(check.stdout + check.stderr, /not signed/);
    // The commit already on the primary unsigned is signed as a new version; then B.
    assert.match(ok(await publish(lab, repo, "--ref", a)), /^published seq 2 .*signed by key/);
    await assertSigned(lab, repo, listed, a, 2);
    ok(await publish(lab, repo));
    await assertSigned(lab, repo, listed, b, 3);
  });
});

Deno.test("publish unsigned: publishes, warns once, and removes a manifest and envelope left from a signed past", async () => {
  await withLab(async (lab) => {
    const key = await newKey(`${lab.dir}/release.key`);
    await fleet(lab, releaseYaml(`${lab.dir}/release.key`, [key]));
    await lab.server("primary", "rsync1");
    const repo = await GitRepo.create(lab.dir);
    await repo.commit({ "app.txt": "version A\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo));
    const primary = lab.hosts.rsync1.path;
    assert.ok((await Deno.lstat(`${primary}/.fanout-release`)).isFile);

    await setRelease(lab, "");
    const b = await repo.commit({ "app.txt": "version B\n" });
    assert.equal((await repo.push()).code, 0);
    const r = await lab.run(["--role", "publish", "-c", lab.fleetFile, "--repo", repo.bare]);
    assert.match(ok(r), /^published seq 2 \(\w{8} main\) to rsync1 in [\d.]+s: [^;]*$/);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`level=warn msg="${UNSIGNED.replace(/[()]/g, "\\$&")}"`));
    for (const f of [".fanout-manifest", ".fanout-release"]) {
      await assert.rejects(Deno.lstat(`${primary}/${f}`), Deno.errors.NotFound, f);
    }
    assert.equal(parseMarker(await Deno.readTextFile(`${primary}/.fanout-version`))?.commit, b);
  });
});

Deno.test("publish signed: a replica gets the manifest and envelope with the marker, the same bytes; an unsigned publish takes them away there too", async () => {
  await withLab(async (lab) => {
    const key = await newKey(`${lab.dir}/release.key`);
    await lab.fleet({
      replicas: [{ name: "rsync2" }],
      push: { exclude: "[.git]" },
      extra: releaseYaml(`${lab.dir}/release.key`, [key]),
    });
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    const repo = await GitRepo.create(lab.dir);
    await repo.commit({ "a.txt": "a\n", "lib/b.txt": "b\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo));
    const primary = lab.hosts.rsync1.path;
    const replica = lab.hosts.rsync2.path;
    const seqOf = async (dir: string) =>
      parseMarker(await Deno.readTextFile(`${dir}/.fanout-version`).catch(() => ""))?.seq;
    await waitFor("the replica at seq 1", async () => (await seqOf(replica)) === 1 || null);
    for (const f of [".fanout-release", ".fanout-manifest", ".fanout-version"]) {
      assert.deepEqual(
        await Deno.readFile(`${replica}/${f}`),
        await Deno.readFile(`${primary}/${f}`),
        f,
      );
    }
    const release = await verifyRelease(await Deno.readFile(`${replica}/.fanout-release`), [key]);
    assert.equal(release.seq, 1);

    await setRelease(lab, "");
    await repo.commit({ "a.txt": "a, unsigned\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo));
    await waitFor("the replica at seq 2", async () => (await seqOf(replica)) === 2 || null);
    for (const f of [".fanout-release", ".fanout-manifest"]) {
      await assert.rejects(Deno.lstat(`${primary}/${f}`), Deno.errors.NotFound, `primary ${f}`);
      await assert.rejects(Deno.lstat(`${replica}/${f}`), Deno.errors.NotFound, `replica ${f}`);
    }
    assert.equal(await Deno.readTextFile(`${replica}/a.txt`), "a, unsigned\n");
  });
});
