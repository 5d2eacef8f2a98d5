// Publishing by difference against publishing the whole tree: two labs
// publish the same series of commits from one repository, one by difference
// (each publish after the first), the other always whole (its record of the
// last publish removed before each). After every publish the primaries must
// hold the same tree, the same manifest, and the same version log entry;
// and the primary published by difference must be what a whole-tree
// transfer from its own staging would leave (mtimes of files and
// directories included).
import assert from "node:assert/strict";
import { type Lab, type Ran, sh, withLab } from "./_helpers.ts";
import { GitRepo, publishFrom } from "./_fleet.ts";
import { signingSection } from "./_signed.ts";
import { buildManifest, formatManifest, RELEASE_SKIP } from "../lib/release/mod.ts";
import { parseLog } from "../lib/version/mod.ts";

/** The root names no manifest lists. */
const MANIFEST_SKIP = [...RELEASE_SKIP, ".fanout-tmp"];

/** One step of the series: what a commit changes, in the developer's clone. */
interface Step {
  name: string;
  files?: Record<string, string | null>;
  /** Shell run in the clone before the commit (type changes, odd names). */
  script?: string;
  /** Publish this earlier step's commit instead, with --force (a rollback). */
  back?: string;
  /** Whether the publish by difference must fall back to the whole tree. */
  whole?: boolean;
}

const SERIES: Step[] = [
  {
    name: "first",
    files: {
      "a.txt": "a\n",
      "dir/b.txt": "b\n",
      "dir/sub/c.txt": "c\n",
      "old/x.txt": "x\n",
      "old/deep/y.txt": "y\n",
      "run.sh": "#!/bin/sh\n",
      "sp ace/file one.txt": "spaces\n",
      "notes.tmp": "never sent\n",
      "keep.tmp/inside.txt": "below an excluded directory\n",
      "todir": "a file, then a directory\n",
      "tofile/f.txt": "a directory, then a file\n",
      "tolink": "a file, then a symlink\n",
      "local.conf": "never sent either\n",
    },
    script: "ln -s a.txt link && ln -s dir dirlink",
  },
  {
    name: "edits, adds, a directory deleted, a mode",
    files: {
      "a.txt": "a, again\n",
      "new/n1.txt": "n1\n",
      "new/n2/deep.txt": "deep\n",
      "old": null,
      "sp ace/file two.txt": "two\n",
    },
    script: "chmod +x run.sh",
  },
  {
    name:
      "kinds change: file to directory and back, file to symlink, symlink to file and directory",
    script:
      "rm todir && mkdir todir && echo in > todir/in.txt && rm -r tofile && echo f > tofile && " +
      "rm tolink && ln -s run.sh tolink && rm link && echo was a link > link && " +
      "rm dirlink && mkdir dirlink && echo d > dirlink/f",
  },
  {
    name: "excluded paths change, with a sent one beside them",
    files: {
      "notes.tmp": "still never sent\n",
      "cache.tmp/z.txt": "excluded directory\n",
      "dir/y.tmp": "excluded file\n",
      "keep.tmp/inside.txt": null,
      "local.conf": "changed, never sent\n",
      "dir/b.txt": "b, again\n",
    },
  },
  { name: "a rollback to the second commit", back: "edits, adds, a directory deleted, a mode" },
  {
    name: "forward again, the last file of a directory deleted",
    files: { "dir/sub/c.txt": null, "new/n1.txt": "n1, again\n" },
  },
];

/** Names only an unsigned fleet can publish (a manifest refuses control characters). */
const ODD: Step[] = [
  {
    name: "a name with a newline",
    script: "printf 'nl\\n' > \"$(printf 'with\\nnewline.txt')\"",
  },
  {
    name: "a name that is not UTF-8",
    script: "printf 'latin1\\n' > \"$(printf 'caf\\351.txt')\"",
    whole: true,
  },
  { name: "after it, by difference again", files: { "a.txt": "a, third\n" } },
];

/** Publishes `ref` (a rollback allowed) at debug level; fails the test on an error. */
async function publish(lab: Lab, repo: GitRepo, ref: string, force = true): Promise<Ran> {
  const r = await publishFrom(lab, repo, "--ref", ref, ...(force ? ["--force"] : []));
  assert.equal(r.code, 0, `publish failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r;
}

/** Which way a publish went, from its debug lines. */
function way(r: Ran): "difference" | "whole" {
  return r.stderr.includes('msg="publishing by difference"') ? "difference" : "whole";
}

/**
 * What differs between the two primaries: content, kinds, modes, symlink
 * targets, paths on one side only (rsync's own comparison, by checksum; the
 * mtimes of two stagings differ). Empty when they are the same.
 */
async function primariesDiffer(a: string, b: string): Promise<string[]> {
  const r = await sh("rsync", [
    "-rlpcn",
    "--delete",
    "--itemize-changes",
    "--exclude=/.fanout-tmp/",
    "--exclude=/.fanout-version",
    "--exclude=/.fanout-changes",
    "--exclude=/.fanout-manifest",
    "--exclude=/.fanout-release",
    `${a}/`,
    `${b}/`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter((l) => l && !l.startsWith(".d"));
}

/**
 * What a whole-tree transfer from staging to the primary would still change
 * (a dry run with the publish's own flags and patterns): nothing but the
 * root's mtime, which the marker's landing moves.
 */
async function wholeWouldChange(lab: Lab, excludes: string[], signed: boolean): Promise<string[]> {
  const own = [
    ".fanout-version",
    ".fanout-changes",
    ...(signed ? [".fanout-manifest", ".fanout-release"] : []),
  ];
  const r = await sh("rsync", [
    "-a",
    "--no-D",
    "--dry-run",
    "--delete",
    "--modify-window=-1",
    "--itemize-changes",
    ...own.map((f) => `--exclude=/${f}`),
    "--exclude=/.fanout-tmp/",
    ...excludes.map((x) => `--exclude=${x}`),
    `${lab.dir}/staging/`,
    `${lab.hosts.rsync1.path}/`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter((l) => l && !/^\.d\.\.t\.+ \.\/$/.test(l));
}

/** The primary's last version log entry, its lists sorted. */
async function lastEntry(lab: Lab) {
  const e = parseLog(await Deno.readTextFile(`${lab.hosts.rsync1.path}/.fanout-changes`)).at(-1)!;
  return { paths: [...e.paths].sort(), deleted: [...e.deleted].sort(), whole: e.whole };
}

/**
 * Publishes `steps` by difference in one lab and whole in another, and
 * compares them after each (see the file's head).
 */
async function compareSeries(steps: Step[], opts: { signed: boolean; exclude: string[] }) {
  await withLab(async (byDiff) => {
    await withLab(async (whole) => {
      await Promise.all([byDiff, whole].map(async (lab) => {
        await lab.fleet({
          replicas: [],
          push: { exclude: `[${opts.exclude.map((x) => JSON.stringify(x)).join(", ")}]` },
          extra: opts.signed ? await signingSection(lab) : "",
        });
        await lab.server("primary", "rsync1");
      }));
      const repo = await GitRepo.create(byDiff.dir);
      const commits = new Map<string, string>();
      for (const [i, step] of steps.entries()) {
        const commit = step.back ? commits.get(step.back)! : await commitStep(repo, step);
        commits.set(step.name, commit);
        // The two labs share nothing but the bare repository, which both
        // only read: they publish at the same time.
        const [d, w] = await Promise.all([
          publish(byDiff, repo, commit),
          Deno.remove(`${whole.dir}/state/git1/published.json`).catch(() => {})
            .then(() => publish(whole, repo, commit)),
        ]);
        const what = `${step.name}:\n${d.stderr}`;
        assert.equal(way(d), i === 0 || step.whole ? "whole" : "difference", what);
        assert.equal(way(w), "whole", step.name);
        const [a, b] = [byDiff.hosts.rsync1.path, whole.hosts.rsync1.path];
        const [differ, wouldChange, entryD, entryW] = await Promise.all([
          primariesDiffer(a, b),
          wholeWouldChange(byDiff, opts.exclude, opts.signed),
          lastEntry(byDiff),
          lastEntry(whole),
        ]);
        assert.deepEqual(differ, [], what);
        assert.deepEqual(wouldChange, [], what);
        assert.deepEqual(entryD, entryW, what);
        if (opts.signed) {
          const manifest = async (p: string) => await Deno.readTextFile(`${p}/.fanout-manifest`);
          assert.equal(await manifest(a), await manifest(b), what);
        }
      }
      // The next whole-tree publish (the same tree again) agrees with the
      // kept state: nothing to send, nothing to hash.
      const again = await publish(byDiff, repo, commits.get(steps.at(-1)!.name)!, false);
      assert.match(again.stdout, /^already published/, again.stderr);
      if (opts.signed) assert.match(again.stderr, /msg="manifest built" .*hashed=0 /, again.stderr);
    });
  });
}

/** Makes `step`'s commit in the clone, pushed to the bare repository. */
async function commitStep(repo: GitRepo, step: Step): Promise<string> {
  if (step.script) {
    const r = await sh("sh", ["-c", step.script], { cwd: repo.work });
    assert.equal(r.code, 0, r.stderr);
  }
  const commit = await repo.commit(step.files ?? {}, { msg: step.name });
  assert.equal((await repo.push()).code, 0);
  return commit;
}

Deno.test("publish by difference, signed, push.exclude by rsync: tree, manifest and log as the whole tree's after every commit", async () => {
  await compareSeries(SERIES, { signed: true, exclude: [".git", "*.tmp", "/local.conf"] });
});

Deno.test("publish by difference, unsigned, push.exclude of root names: tree and log as the whole tree's; odd names, and one that is not UTF-8 sent whole", async () => {
  await compareSeries([...SERIES, ...ODD], { signed: false, exclude: [".git", "/local.conf"] });
});

/** The reason a publish gave for sending the whole tree, or null (it went by difference). */
function because(r: Ran): string | null {
  const m = /msg="sending the whole tree" .*because=("(?:[^"\\]|\\.)*")/.exec(r.stderr);
  return m ? JSON.parse(m[1]) : null;
}

Deno.test("publish by difference falls back to the whole tree, and says why: another version on the primary, push.exclude changed, staging not git's", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [], push: { exclude: "[.git]" } });
    await lab.server("primary", "rsync1");
    const repo = await GitRepo.create(lab.dir);
    const step = async (files: Record<string, string | null>, script = "") => {
      if (script) assert.equal((await sh("sh", ["-c", script], { cwd: lab.dir })).code, 0);
      const commit = await repo.commit(files);
      assert.equal((await repo.push()).code, 0);
      const r = await publish(lab, repo, commit, false);
      assert.deepEqual(await wholeWouldChange(lab, [".git"], false), [], r.stderr);
      return r;
    };
    assert.equal(
      because(await step({ "a.txt": "a\n", "old/o.txt": "o\n" })),
      "no record of a publish that landed whole",
    );
    assert.equal(because(await step({ "a.txt": "a2\n" })), null);

    // Another publisher published the same commit: the primary's marker is not ours.
    const primary = lab.hosts.rsync1.path;
    const theirs = JSON.parse(await Deno.readTextFile(`${primary}/.fanout-version`));
    await Deno.writeTextFile(
      `${primary}/.fanout-version`,
      JSON.stringify({ ...theirs, seq: 40, published_at: "2026-01-01T00:00:00.000Z" }) + "\n",
    );
    const other = await step({ "a.txt": "a3\n" });
    assert.match(
      because(other)!,
      /^the primary holds seq 40 .*, not seq 2 .* published from here$/,
    );
    const entry = await lastEntry(lab);
    assert.equal(entry.whole, true, "the publisher cannot vouch for what the primary held");
    assert.equal(because(await step({ "a.txt": "a4\n" })), null);
    assert.equal((await lastEntry(lab)).whole, false);

    // A publish that stopped while it sent (part of its tree may be on the
    // primary, no marker): the next entry cannot vouch for the change either.
    await Deno.writeTextFile(`${lab.dir}/state/git1/publish-sending`, "4242\n");
    await step({ "a.txt": "a4, after a stop\n" });
    assert.equal((await lastEntry(lab)).whole, true, "part of a stopped publish may have landed");
    await assert.rejects(Deno.lstat(`${lab.dir}/state/git1/publish-sending`), Deno.errors.NotFound);
    await step({ "a.txt": "a4, once more\n" });
    assert.equal((await lastEntry(lab)).whole, false);

    // push.exclude changed: what the primary holds is not what the patterns would send.
    await Deno.writeTextFile(
      lab.fleetFile,
      (await Deno.readTextFile(lab.fleetFile)).replace(
        "exclude: [.git]",
        "exclude: [.git, /b.txt]",
      ),
    );
    const excluded = await step({ "a.txt": "a5\n" });
    assert.equal(because(excluded), "push.exclude, or signing, changed since the last publish");

    // A stray in staging where git adds a file; one in a directory git deletes.
    const staging = `${lab.dir}/staging`;
    const stray = await step({ "new.txt": "new\n" }, `echo stray > ${staging}/new.txt`);
    assert.equal(because(stray), "git cannot bring staging to the tree by what differs");
    const kept = await step({ "old/o.txt": null }, `echo stray > ${staging}/old/stray.txt`);
    assert.equal(because(kept), 'staging still holds "old"');
    assert.equal(because(await step({ "a.txt": "a6\n" })), null);
  });
});

Deno.test("publish by difference, signed: no envelope of ours on the primary sends the whole tree; a kept record that cannot be patched walks staging for the same manifest", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: [],
      push: { exclude: "[.git]" },
      extra: await signingSection(lab),
    });
    await lab.server("primary", "rsync1");
    const repo = await GitRepo.create(lab.dir);
    const primary = lab.hosts.rsync1.path;
    const step = async (files: Record<string, string | null>) => {
      const commit = await repo.commit(files);
      assert.equal((await repo.push()).code, 0);
      const r = await publish(lab, repo, commit, false);
      assert.deepEqual(await wholeWouldChange(lab, [".git"], true), [], r.stderr);
      const staging = await buildManifest(`${lab.dir}/staging`, { skip: MANIFEST_SKIP });
      const sent = await Deno.readFile(`${primary}/.fanout-manifest`);
      assert.deepEqual(sent, formatManifest(staging), "the manifest of staging");
      return r;
    };
    await step({ "a.txt": "a\n", "lib/b.txt": "b\n" });
    assert.equal(way(await step({ "a.txt": "a2\n" })), "difference");

    await Deno.remove(`${primary}/.fanout-release`);
    const unsigned = await step({ "a.txt": "a3\n" });
    assert.equal(
      because(unsigned),
      "the primary's envelope does not sign the version published from here",
    );

    await Deno.writeTextFile(`${lab.dir}/state/git1/staging.record`, "not a record");
    const walked = await step({ "lib/c.txt": "c\n" });
    assert.equal(way(walked), "difference");
    assert.match(walked.stderr, /msg="walking staging for the manifest" .*because=/);
    const patched = await step({ "a.txt": "a4\n" });
    assert.match(patched.stderr, /msg="manifest built" .*hashed=1 .*patched=true/);
  });
});
