// Publish end to end: real git repositories (bare and not) in the lab dir,
// the real primary (its rsync daemon with hosts allow and auth), the fanout
// binary run as a process, and the rendered post-receive hook under `git push`.
import assert from "node:assert/strict";
import { assertSameTree, type Lab, type Ran, sh, withLab, writeTree } from "./_helpers.ts";
import { changesBetween, parseLog } from "../lib/version/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MARKER = ".fanout-version";
const LOG = ".fanout-changes";

/** The primary's version log: [from seq, to seq, whole] per entry. */
async function logOf(lab: Lab) {
  return parseLog(await Deno.readTextFile(`${lab.hosts.rsync1.path}/${LOG}`));
}

/** A bare repository (`origin.git`) and a work clone of it, in the lab dir. */
class Repo {
  constructor(readonly bare: string, readonly work: string) {}

  static async create(lab: Lab, name = "origin"): Promise<Repo> {
    const repo = new Repo(`${lab.dir}/${name}.git`, `${lab.dir}/${name}-work`);
    await git(lab.dir, "init", "-q", "--bare", "-b", "main", repo.bare);
    await git(lab.dir, "clone", "-q", repo.bare, repo.work);
    await git(repo.work, "symbolic-ref", "HEAD", "refs/heads/main");
    return repo;
  }

  /** Writes (string), deletes (null) and renames files, commits; returns the commit id. */
  async commit(
    files: Record<string, string | null>,
    opts: { renames?: [string, string][]; executable?: string[]; msg?: string } = {},
  ): Promise<string> {
    for (const [from, to] of opts.renames ?? []) await git(this.work, "mv", from, to);
    for (const [p, content] of Object.entries(files)) {
      if (content === null) await git(this.work, "rm", "-q", "-r", p);
      else await writeTree(this.work, { [p]: content });
    }
    for (const p of opts.executable ?? []) await Deno.chmod(`${this.work}/${p}`, 0o755);
    await git(this.work, "add", "-A");
    await git(this.work, "commit", "-q", "--allow-empty", "-m", opts.msg ?? "change");
    return await git(this.work, "rev-parse", "HEAD");
  }

  /** `git push origin <ref>` from the work clone (the hook's output is in stderr). */
  push(ref = "main"): Promise<Ran> {
    return sh("git", ["push", "-q", "origin", ref], { cwd: this.work });
  }

  /** The tree of `commit`, as `git archive` writes it, in a fresh dir. */
  async archive(commit: string, dir: string): Promise<string> {
    await Deno.mkdir(dir, { recursive: true });
    const r = await sh("sh", ["-c", `git archive ${commit} | tar -x -C "${dir}"`], {
      cwd: this.work,
    });
    assert.equal(r.code, 0, r.stderr);
    return dir;
  }
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh("git", ["-c", "user.name=t", "-c", "user.email=t@lab", ...args], { cwd });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Runs `fanout --role publish -c <fleet> --repo <repo> …`. */
function publish(lab: Lab, repo: string, ...args: string[]): Promise<Ran> {
  return lab.run(["--role", "publish", "-c", lab.fleetFile, "--repo", repo, ...args]);
}

function ok(r: Ran, what = "publish"): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

async function marker(dir: string) {
  return JSON.parse(await Deno.readTextFile(`${dir}/${MARKER}`));
}

/** Asserts the primary holds exactly `commit`'s tree and a marker naming it. */
async function assertPublished(
  lab: Lab,
  repo: Repo,
  commit: string,
  seq: number,
  excludes: string[] = [],
) {
  const primary = lab.hosts.rsync1.path;
  const want = await repo.archive(commit, `${lab.dir}/archive-${commit.slice(0, 8)}-${seq}`);
  for (const x of excludes) {
    await sh("find", [want, "-name", x, "-delete"]);
  }
  await assertSameTree(want, primary, [MARKER, LOG]);
  const m = await marker(primary);
  assert.equal(m.commit, commit, "the marker names the commit");
  assert.equal(m.seq, seq);
  assert.ok(!Number.isNaN(Date.parse(m.published_at)));
}

/** Every entry under `dir` (relative paths), without the marker. */
async function entries(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory) out.push(...await entries(dir, rel));
  }
  return out;
}

/** Each entry's inode change time in ns, by relative path. */
async function ctimes(dir: string): Promise<Map<string, bigint>> {
  const r = await sh("find", [dir, "-mindepth", "1", "-printf", "%C@ %P\\n"]);
  assert.equal(r.code, 0, r.stderr);
  return new Map(
    r.stdout.trim().split("\n").map((line) => {
      const [at, ...p] = line.split(" ");
      const [s, frac = ""] = at.split(".");
      return [p.join(" "), BigInt(s + frac.padEnd(9, "0").slice(0, 9))];
    }),
  );
}

async function startPrimary(lab: Lab, spec: Parameters<Lab["fleet"]>[0] = {}) {
  await lab.fleet({ replicas: [], ...spec });
  return await lab.server("primary", "rsync1");
}

Deno.test("publish: adds, changes, deletes and renames land exactly; marker last; then only the delta", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab, { push: { exclude: '[.git, "*.tmp"]' } });
    const repo = await Repo.create(lab);
    const many: Record<string, string> = {};
    for (let i = 0; i < 200; i++) many[`many/d${i % 10}/f${i}.txt`] = `file ${i}\n`.repeat(20);
    const a = await repo.commit({
      ...many,
      "a.txt": "alpha\n",
      "dir/b.txt": "beta\n",
      "dir/sub/c.txt": "gamma\n",
      "old-name.txt": "renamed later\n".repeat(50),
      "bin/run.sh": "#!/bin/sh\necho hi\n",
      "notes.tmp": "never published (push.exclude)\n",
    }, { executable: ["bin/run.sh"] });

    // From the non-bare work clone.
    const first = ok(await publish(lab, repo.work));
    assert.match(
      first,
      new RegExp(
        `^published seq 1 \\(${
          a.slice(0, 8)
        } main\\) to rsync1 in [\\d.]+s: 205 files changed \\(205 sent, 0 deleted\\)$`,
      ),
    );
    await assertPublished(lab, repo, a, 1, ["notes.tmp"]);
    const primary = lab.hosts.rsync1.path;
    // The marker's mtime is its published_at: clients tell by it which
    // version a listing of the tree saw (lib/version/marker_stamp.ts).
    const published = JSON.parse(await Deno.readTextFile(`${primary}/.fanout-version`));
    assert.equal(
      (await Deno.stat(`${primary}/.fanout-version`)).mtime?.getTime(),
      Date.parse(published.published_at),
    );
    assert.ok((await Deno.stat(`${primary}/bin/run.sh`)).mode! & 0o100, "the exec bit lands");
    await assert.rejects(Deno.stat(`${primary}/notes.tmp`), "excluded files are not published");

    const b = await repo.commit({
      "a.txt": "alpha, changed\n",
      "new.txt": "new\n",
      "dir/sub/c.txt": null,
    }, { renames: [["old-name.txt", "new-name.txt"]] });
    const second = ok(await publish(lab, repo.work));
    // Sent: a.txt, new.txt, new-name.txt; deleted: dir/sub/c.txt, dir/sub, old-name.txt.
    assert.match(
      second,
      /^published seq 2 \(\w{8} main\) to rsync1 in [\d.]+s: 6 files changed \(3 sent, 3 deleted\)$/,
    );
    await assertPublished(lab, repo, b, 2, ["notes.tmp"]);
    assert.ok(!(await entries(primary)).some((p) => p.split("/").includes(".git")), "no .git");
    // The version log says what changed, for clients one version behind.
    const log = await logOf(lab);
    assert.deepEqual(log.map((e) => [e.from?.seq ?? null, e.to.seq, e.whole]), [
      [null, 1, false],
      [1, 2, false],
    ]);
    const list = changesBetween(log, log[0].to, log[1].to)!;
    assert.deepEqual(list.deleted, ["dir/sub", "dir/sub/c.txt", "old-name.txt"]);
    for (const p of ["a.txt", "new.txt", "new-name.txt"]) {
      assert.ok(list.paths.includes(p), `${p} in ${list.paths}`);
    }

    // The marker landed last: nothing in the tree changed after it (ctimes
    // in ns from find: Deno's stat rounds ctime to the second).
    const changed = await ctimes(primary);
    const markerAt = changed.get(MARKER)!;
    for (const [p, at] of changed) assert.ok(at <= markerAt, `${p} changed after the marker`);

    // One changed file among 205: only it is sent (the staging dir keeps the others' mtimes).
    const c = await repo.commit({ "many/d3/f13.txt": "only this one\n" });
    const index = await Deno.readFile(`${repo.work}/.git/index`);
    // A hook's GIT_* variables must not steer fanout's git (nor touch the repo's index).
    const third = ok(
      await lab.run(["--role", "publish", "-c", lab.fleetFile, "--repo", repo.work], {
        env: {
          GIT_DIR: `${lab.dir}/nowhere`,
          GIT_WORK_TREE: lab.dir,
          GIT_INDEX_FILE: `${repo.work}/.git/index`,
        },
      }),
    );
    assert.match(third, /: 1 file changed \(1 sent, 0 deleted\)$/);
    await assertPublished(lab, repo, c, 3, ["notes.tmp"]);
    assert.deepEqual(await Deno.readFile(`${repo.work}/.git/index`), index, "repo index untouched");
    assert.equal(await git(repo.work, "status", "--porcelain"), "", "work tree untouched");
    assert.equal(await git(repo.work, "rev-parse", "HEAD"), c, "HEAD untouched");

    // The same commit again: nothing to do, no new seq.
    assert.match(
      ok(await publish(lab, repo.work)),
      new RegExp(`^already published: seq 3 \\(${c.slice(0, 8)} main\\) is on rsync1`),
    );
    assert.equal((await marker(primary)).seq, 3);
  });
});

Deno.test("publish: a stale commit is refused; --force rolls back with a higher seq; seq survives lost state", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab);
    const repo = await Repo.create(lab);
    const a = await repo.commit({ "app.txt": "version A\n", "only-in-a.txt": "a\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo.bare));
    const b = await repo.commit({ "app.txt": "version B\n", "only-in-a.txt": null });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo.bare));
    await assertPublished(lab, repo, b, 2);

    const stale = await publish(lab, repo.bare, "--ref", a);
    assert.equal(stale.code, 4, stale.stderr);
    assert.match(
      stale.stderr,
      new RegExp(
        `refusing to publish ${a.slice(0, 8)} .*older than ${b.slice(0, 8)}.*seq 2.*--force`,
      ),
    );
    await assertPublished(lab, repo, b, 2);

    // A commit the published one cannot be compared with (another repository).
    const other = await Repo.create(lab, "other");
    const x = await other.commit({ "app.txt": "unrelated\n" });
    const foreign = await publish(lab, other.work);
    assert.equal(foreign.code, 4, foreign.stderr);
    assert.match(
      foreign.stderr,
      new RegExp(
        `refusing to publish ${x.slice(0, 8)} \\(main\\): the published commit ${
          b.slice(0, 8)
        } \\(seq 2 on rsync1\\) is not in .*other-work.*add --force`,
      ),
    );
    await assertPublished(lab, repo, b, 2);

    const back = ok(await publish(lab, repo.bare, "--ref", a, "--force", "--verbose")).split("\n");
    // --verbose lists rsync's changes before the summary line.
    assert.ok(back.includes("<f+++++++++ only-in-a.txt"), back.join("\n"));
    assert.ok(back.some((l) => /^<f\S* app\.txt$/.test(l)), back.join("\n"));
    assert.match(
      back.at(-1)!,
      new RegExp(
        `^published seq 3 \\(${a.slice(0, 8)} ${a.slice(0, 8)}\\) .*rolled back from seq 2 \\(${
          b.slice(0, 8)
        } main\\)$`,
      ),
    );
    await assertPublished(lab, repo, a, 3);

    // Forward again, after losing the publisher's state (and its staging): seq
    // continues from the primary's marker.
    await Deno.remove(`${lab.dir}/state/git1`, { recursive: true });
    await Deno.remove(`${lab.dir}/staging`, { recursive: true });
    ok(await publish(lab, repo.bare));
    await assertPublished(lab, repo, b, 4);
    // Without its record the publisher cannot vouch that the primary held
    // exactly seq 3 before: the entry says "walk the tree".
    assert.deepEqual((await logOf(lab)).map((e) => [e.from?.seq, e.to.seq, e.whole]), [
      [3, 4, true],
    ]);
    // And after the primary lost its marker: from the publisher's own record.
    await Deno.remove(`${lab.hosts.rsync1.path}/${MARKER}`);
    const c = await repo.commit({ "app.txt": "version C\n" });
    assert.equal((await repo.push()).code, 0);
    ok(await publish(lab, repo.bare));
    await assertPublished(lab, repo, c, 5);
  });
});

Deno.test("publish: a tree sent without its marker is published again whole in the version log", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab);
    const repo = await Repo.create(lab);
    await repo.commit({ "app.txt": "version A\n" });
    ok(await publish(lab, repo.work));
    // The connection fails when the marker goes out: the tree of B is on the
    // primary under A's marker.
    const wrapper = `${lab.dir}/rsync-no-marker`;
    await Deno.writeTextFile(
      wrapper,
      `#!/bin/sh\ncase "$*" in *marker.list*) echo "connection reset" >&2; exit 12 ;; esac\nexec rsync "$@"\n`,
      { mode: 0o755 },
    );
    await repo.commit({ "app.txt": "version B\n", "b.txt": "b\n" });
    const failed = await publish(lab, repo.work, "--set", `rsync.path=${wrapper}`);
    assert.equal(failed.code, 3, failed.stderr);
    assert.match(failed.stderr, /sent the tree of \w{8} to rsync1 but not its version marker/);
    assert.equal((await marker(lab.hosts.rsync1.path)).seq, 1);
    // Again: nothing left to send, yet the change from seq 1 is not nothing.
    const c = await repo.commit({ "c.txt": "c\n" });
    ok(await publish(lab, repo.work));
    await assertPublished(lab, repo, c, 3);
    assert.deepEqual((await logOf(lab)).map((e) => [e.from?.seq ?? null, e.to.seq, e.whole]), [
      [null, 1, false],
      [1, 3, true],
    ]);
  });
});

Deno.test("publish: names rsync prints escaped are listed exactly; bytes that are not UTF-8 make a whole entry", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab);
    const repo = await Repo.create(lab);
    await repo.commit({ "app.txt": "a\n" });
    ok(await publish(lab, repo.work));
    // rsync itemizes é as \#303\#251 without a UTF-8 locale, and a backslash
    // before '#' as \#134: decoded, the names are exact.
    await repo.commit({ "tab\there.txt": "t\n", "café.txt": "c\n", "a\\#101b": "b\n" });
    ok(await publish(lab, repo.work));
    // A name that is not UTF-8 cannot travel in the JSON log.
    const raw = await sh("python3", [
      "-c",
      `open(b"${repo.work}/\\xff.bin".decode("unicode_escape").encode("latin-1"), "w").write("x")`,
    ]);
    assert.equal(raw.code, 0, raw.stderr);
    await repo.commit({});
    ok(await publish(lab, repo.work));
    const log = await logOf(lab);
    assert.deepEqual(log.map((e) => [e.to.seq, e.whole]), [[1, false], [2, false], [3, true]]);
    assert.deepEqual(log[1].paths, ["a\\#101b", "café.txt", "tab\there.txt"]);
  });
});

Deno.test("publish: concurrent publishes wait for each other; past the lock timeout, exit 5", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab);
    const repo = await Repo.create(lab);
    await repo.commit({ "f.txt": "one\n" });
    ok(await publish(lab, repo.work));
    const b = await repo.commit({ "f.txt": "two\n", "g.txt": "new\n" });

    // Hold the lock, start two publishes, let them queue, then let go.
    const lockPath = `${lab.dir}/state/git1/publish.lock`;
    const held = await Deno.open(lockPath, { read: true, write: true });
    await held.lock(true);
    let released = false;
    try {
      // As a holder writes it: the file still holds the last publish's pid.
      await held.truncate(0);
      await held.write(new TextEncoder().encode(`${Deno.pid}\n`));
      const args = ["--role", "publish", "-c", lab.fleetFile, "--repo", repo.work];
      const p1 = lab.spawn(args);
      const p2 = lab.spawn(args);
      await p1.waitFor(/waiting for another publish/);
      await p2.waitFor(/waiting for another publish/);

      const late = await publish(lab, repo.work, "--set", "publisher.lock_timeout=300ms");
      assert.equal(late.code, 5, late.stderr);
      assert.match(
        late.stderr,
        new RegExp(`another publish holds ${lockPath} \\(pid ${Deno.pid}\\); gave up after 300ms`),
      );

      await held.unlock();
      released = true;
      const [s1, s2] = await Promise.all([p1.status(), p2.status()]);
      assert.equal(s1.code, 0, p1.stderr);
      assert.equal(s2.code, 0, p2.stderr);
      const lines = [p1.stdout.trim(), p2.stdout.trim()].sort();
      // One sent version 2; the other, run after it, found it already there.
      assert.match(lines[0], new RegExp(`^already published: seq 2 \\(${b.slice(0, 8)} main\\)`));
      assert.match(lines[1], new RegExp(`^published seq 2 \\(${b.slice(0, 8)} main\\)`));
      await assertPublished(lab, repo, b, 2);
    } finally {
      if (!released) await held.unlock().catch(() => {});
      held.close();
    }
  });
});

Deno.test("post-receive: git push to a bare repo publishes the branch; a failed publish keeps the push", async () => {
  await withLab(async (lab) => {
    const bin = `${lab.dir}/fanout`;
    await Deno.writeTextFile(
      bin,
      `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet --config "${ROOT}deno.json" "${ROOT}main.ts" "$@"\n`,
      { mode: 0o755 },
    );
    // Without a publisher there is no hook to render; nor for another role.
    await lab.fleet({ replicas: [], publisher: false });
    const none = await lab.run(["render", "post-receive", "-c", lab.fleetFile]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /fanout: .*fanout\.yaml: publisher: missing: the post-receive hook/);
    const role = await lab.run([
      "render",
      "post-receive",
      "--role",
      "replica",
      "-c",
      lab.fleetFile,
    ]);
    assert.equal(role.code, 2);
    assert.match(role.stderr, /render post-receive is the publisher's hook/);

    await lab.fleet({ replicas: [], extra: `binary: ${bin}` });
    const repo = await Repo.create(lab);
    const hook = await lab.run(["render", "post-receive", "-c", lab.fleetFile]);
    assert.equal(hook.code, 0, hook.stderr);
    assert.match(hook.stdout, /^#!\/bin\/sh\n# Rendered by fanout /);
    assert.ok(hook.stdout.includes(`fanout=${bin}\n`));
    assert.ok(hook.stdout.includes("want=refs/heads/main\n"));
    await Deno.writeTextFile(`${repo.bare}/hooks/post-receive`, hook.stdout, { mode: 0o755 });

    // The primary is not up yet: the push goes through, the hook says why nothing was published.
    const a = await repo.commit({ "index.php": "<?php echo 1;\n" });
    const down = await repo.push();
    assert.equal(down.code, 0, down.stderr);
    assert.match(
      down.stderr,
      /remote: fanout: not published \(exit 3\): cannot reach the primary rsync1 .*Connection refused.*; the push is kept, the next publish catches up/,
    );
    assert.equal(await git(repo.bare, "rev-parse", "main"), a, "the push is kept");

    await lab.server("primary", "rsync1");
    const b = await repo.commit({ "index.php": "<?php echo 2;\n", "lib/x.php": "<?php\n" });
    const up = await repo.push();
    assert.equal(up.code, 0, up.stderr);
    const said = up.stderr.split("\n").filter((l) => l.startsWith("remote:"));
    // One line, after the warning of this unsigned fleet.
    assert.equal(said.length, 2, `the warning and one line to the pusher:\n${up.stderr}`);
    assert.match(said[0], /level=warn msg="versions are not signed: add release\.public_keys/);
    assert.match(
      said[1],
      new RegExp(`^remote: published seq 1 \\(${b.slice(0, 8)} main\\) to rsync1 in [\\d.]+s: `),
    );
    await assertPublished(lab, repo, b, 1);

    // Another branch moving publishes nothing.
    await git(repo.work, "checkout", "-q", "-b", "feature");
    await repo.commit({ "index.php": "<?php echo 'wip';\n" });
    const other = await repo.push("feature");
    assert.equal(other.code, 0, other.stderr);
    assert.ok(!other.stderr.includes("fanout"), other.stderr);
    await assertPublished(lab, repo, b, 1);
  });
});

Deno.test("publish: every bad input is a clear error with its exit code, and nothing on the primary changes", async () => {
  await withLab(async (lab) => {
    await startPrimary(lab);
    const repo = await Repo.create(lab);
    const a = await repo.commit({ "keep.txt": "keep me\n", "d/e.txt": "e\n" });
    ok(await publish(lab, repo.work));
    await assertPublished(lab, repo, a, 1);
    const wrongPw = `${lab.dir}/wrong.password`;
    await Deno.writeTextFile(wrongPw, "not-the-password\n", { mode: 0o600 });
    await Deno.chmod(wrongPw, 0o600);
    const notRepo = `${lab.dir}/not-a-repo`;
    await Deno.mkdir(notRepo);
    const foreign = `${lab.dir}/someones-files`;
    await writeTree(foreign, { "precious.txt": "do not wipe\n" });
    const closed = lab.port(lab.hosts.rsync1.ip);
    const empty = await repo.commit({ "keep.txt": null, "d": null }, { msg: "delete all" });

    const cases: { name: string; args: string[]; repo?: string; code: number; re: RegExp }[] = [
      {
        name: "not a git repository",
        repo: notRepo,
        args: [],
        code: 2,
        re: /fanout: .*not-a-repo is not a git repository \(--repo or publisher\.repo\)/,
      },
      {
        name: "no such directory",
        repo: `${lab.dir}/nowhere`,
        args: [],
        code: 2,
        re: /fanout: repository .*nowhere does not exist/,
      },
      {
        name: "unknown ref",
        args: ["--ref", "nope"],
        code: 2,
        re: /fanout: unknown ref "nope" in .*work: branches: main/,
      },
      {
        name: "primary unreachable",
        args: ["--ref", a, "--set", `primary.listen=${lab.hosts.rsync1.ip}:${closed}`],
        code: 3,
        re:
          /fanout: cannot reach the primary rsync1 at .*: rsync exit 10 \(error in socket I\/O\): .*Connection refused/,
      },
      {
        name: "wrong password",
        args: ["--ref", a, "--set", `auth.password_file=${wrongPw}`],
        code: 3,
        re:
          /fanout: cannot send the tree to rsync1 .*rsync exit 5 .*@ERROR: auth failed on module plugins-push; nothing was sent/,
      },
      {
        name: "not the publisher's address",
        args: ["--ref", a, "--address", lab.ip(9)],
        code: 3,
        re: new RegExp(
          `fanout: cannot send the tree .*rsync exit 5 .*@ERROR: Unknown module 'plugins-push' \\(rsync1 lets only the publisher's address write to plugins-push; this came from ${
            lab.ip(9).replaceAll(".", "\\.")
          }: is that publisher.address`,
        ),
      },
      {
        name: "an address this host does not have",
        args: ["--ref", a, "--address", "192.0.2.1"],
        code: 2,
        re:
          /fanout: .*fanout\.yaml: publisher\.address: 192\.0\.2\.1 is not an address of this host/,
      },
      {
        name: "empty tree",
        args: [],
        code: 4,
        re: new RegExp(
          `fanout: refusing to publish ${empty.slice(0, 8)} \\(main\\): its tree is empty`,
        ),
      },
      {
        name: "a staging dir fanout did not make",
        args: ["--ref", a, "--set", `publisher.staging=${foreign}`],
        code: 4,
        re: /fanout: staging dir .*someones-files is not empty and fanout did not make it/,
      },
      {
        name: "no repository at all",
        repo: "",
        args: [],
        code: 2,
        re: /fanout: no repository to publish from: pass --repo PATH or set publisher\.repo/,
      },
    ];
    for (const c of cases) {
      const args = ["--role", "publish", "-c", lab.fleetFile];
      if (c.repo !== "") args.push("--repo", c.repo ?? repo.work);
      const r = await lab.run([...args, ...c.args]);
      assert.equal(r.code, c.code, `${c.name}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, c.re, `${c.name}:\n${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${c.name}: one line\n${r.stderr}`);
      assert.equal(r.stdout, "", c.name);
      await assertPublished(lab, repo, a, 1);
    }
    assert.equal(await Deno.readTextFile(`${foreign}/precious.txt`), "do not wipe\n");
  });
});
