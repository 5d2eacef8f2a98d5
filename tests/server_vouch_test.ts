// Servers announce only the version their tree verifiably holds: in a
// signed fleet a tree that is not its marker's signed manifest announces no
// version (module comment, /status, /version, /healthz 503), and a replica
// repairs it from its upstream's read module.
import assert from "node:assert/strict";
import {
  canLowerInotify,
  http,
  type Lab,
  primaryWithWatches,
  rsync,
  waitFor,
  withLab,
} from "./_helpers.ts";
import { newKey, publish, signingSection, V1 } from "./_signed.ts";
import { GitRepo, publishFrom } from "./_fleet.ts";

interface Tree {
  version: { seq: number } | null;
  check: { state: string; path?: string | null; why?: string };
}

async function treeOf(lab: Lab, name: string): Promise<Tree> {
  const h = lab.hosts[name];
  return JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body).tree;
}

/** The read module's line in the daemon's listing: its comment names the version. */
async function listing(lab: Lab, name: string): Promise<string> {
  const h = lab.hosts[name];
  const r = await rsync([`rsync://${h.ip}:${h.port}/`]);
  return r.stdout.split("\n").find((l) => l.startsWith("plugins ")) ?? "";
}

/** A signed fleet, version 1 in the primary's tree as a publish leaves it. */
async function signedFleet(lab: Lab, replicas: string[]) {
  const { key, text } = await newKey(lab, "release");
  await lab.fleet({
    replicas,
    publisher: false,
    extra: `release:\n  public_keys: ["${text}"]`,
  });
  await publish(lab.hosts.rsync1.path, 1, V1, key);
}

/** Rewrites `path` below `root` with other bytes of the same size and the old mtime. */
async function damage(root: string, path: string): Promise<void> {
  const file = `${root}/${path}`;
  const st = await Deno.stat(file);
  const text = await Deno.readTextFile(file);
  await Deno.writeTextFile(file, text.toUpperCase());
  await Deno.utime(file, st.atime!, st.mtime!);
}

Deno.test("vouch: a primary whose tree is not its signed version announces none until it is", async () => {
  await withLab(async (lab) => {
    await signedFleet(lab, []);
    const p = lab.hosts.rsync1;
    await damage(p.path, "lib/b.txt");
    const primary = await lab.server("primary", "rsync1");
    const refused = await waitFor("the primary to refuse its tree", async () => {
      const t = await treeOf(lab, "rsync1");
      return t.check.state === "refused" ? t : null;
    }, 20_000);
    assert.equal(refused.version, null, "no version announced");
    assert.equal(refused.check.path, "lib/b.txt");
    const health = await http(`http://${p.ip}:${p.health}/healthz`);
    assert.equal(health.status, 503);
    assert.match(health.body, /announcing no version: .*lib\/b\.txt/);
    assert.doesNotMatch(await listing(lab, "rsync1"), /seq/);
    const version = await http(`http://${p.ip}:${p.health}/version`);
    assert.doesNotMatch(version.body, /"seq":1/);
    assert.match(primary.stderr + primary.stdout, /announcing no version/);
    // The file as signed again: the next check announces the version.
    await Deno.writeTextFile(`${p.path}/lib/b.txt`, V1["lib/b.txt"]);
    await waitFor(
      "version 1 announced",
      async () => (await treeOf(lab, "rsync1")).version?.seq === 1,
      20_000,
    );
    assert.equal((await treeOf(lab, "rsync1")).check.state, "verified");
    assert.equal((await http(`http://${p.ip}:${p.health}/healthz`)).status, 200);
    assert.match(await listing(lab, "rsync1"), /seq/);
  });
});

Deno.test("vouch: a replica whose tree was damaged under an intact marker repairs it from upstream before announcing", async () => {
  await withLab(async (lab) => {
    await signedFleet(lab, ["rsync2"]);
    const r2 = lab.hosts.rsync2;
    await lab.server("primary", "rsync1");
    let replica = await lab.server("replica", "rsync2");
    await waitFor(
      "the replica at version 1",
      async () => (await treeOf(lab, "rsync2")).version?.seq === 1,
      30_000,
    );
    assert.equal((await treeOf(lab, "rsync2")).check.state, "verified");
    await replica.stop();
    // Same size, same mtime: no quick check sees it; and a file gone.
    await damage(r2.path, "lib/b.txt");
    await Deno.remove(`${r2.path}/a.txt`);
    replica = await lab.server("replica", "rsync2");
    await waitFor("the replica repaired", async () => {
      const t = await treeOf(lab, "rsync2");
      return t.version?.seq === 1 && t.check.state === "verified";
    }, 30_000);
    assert.equal(await Deno.readTextFile(`${r2.path}/lib/b.txt`), V1["lib/b.txt"]);
    assert.equal(await Deno.readTextFile(`${r2.path}/a.txt`), V1["a.txt"]);
    const said = replica.stderr + replica.stdout;
    assert.match(said, /announcing no version/);
    assert.match(said, /repairing the tree from upstream/);
    // Repaired files belong to the tree's owner, as pushed ones do.
    const root = await Deno.stat(r2.path);
    assert.equal((await Deno.stat(`${r2.path}/lib/b.txt`)).uid, root.uid);
  });
});

Deno.test("vouch: a publish to a primary that announces no version sends the whole tree by content, and the primary holds the new version", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [], extra: await signingSection(lab) });
    const p = lab.hosts.rsync1;
    const repo = await GitRepo.create(lab.dir);
    const publish = async () => {
      assert.equal((await repo.push()).code, 0);
      const r = await publishFrom(lab, repo);
      assert.equal(r.code, 0, r.stderr);
      return r.stderr;
    };
    const primary = await lab.server("primary", "rsync1");
    await repo.commit({ "a.txt": "alpha\n", "lib/b.txt": "bravo\n" });
    await publish();
    await waitFor(
      "version 1 announced",
      async () => (await treeOf(lab, "rsync1")).version?.seq === 1,
    );
    await damage(p.path, "lib/b.txt");
    await waitFor("the damage refused", async () => (await treeOf(lab, "rsync1")).version === null)
      .catch((e) => {
        throw new Error(`${(e as Error).message}\n${primary.stderr.slice(-3000)}`);
      });
    await repo.commit({ "a.txt": "alpha 2\n" });
    const said = await publish();
    assert.match(said, /the primary announces no version/);
    await waitFor(
      "version 2 announced",
      async () => (await treeOf(lab, "rsync1")).version?.seq === 2,
    );
    assert.equal(await Deno.readTextFile(`${p.path}/lib/b.txt`), "bravo\n");
  });
});

Deno.test("vouch: a relay whose tree was damaged announces no version, nor does the replica behind it, until both are repaired", async () => {
  await withLab(async (lab) => {
    const { key, text } = await newKey(lab, "release");
    await lab.fleet({
      replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }],
      publisher: false,
      extra: `release:\n  public_keys: ["${text}"]`,
    });
    await publish(lab.hosts.rsync1.path, 1, V1, key);
    await lab.server("replica", "rsync3");
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    const at = async (name: string) => (await treeOf(lab, name)).version?.seq ?? null;
    await waitFor(
      "both at version 1",
      async () => (await at("rsync2")) === 1 && (await at("rsync3")) === 1,
      30_000,
    );
    // A file changed on the relay's disk: its watcher pushes it on, and both trees differ from version 1.
    const seen = new Set<string>();
    await Deno.writeTextFile(`${lab.hosts.rsync2.path}/lib/b.txt`, "planted on the relay\n");
    await waitFor("both repaired", async () => {
      for (const name of ["rsync2", "rsync3"]) if ((await at(name)) === null) seen.add(name);
      return seen.size === 2 && (await at("rsync2")) === 1 && (await at("rsync3")) === 1;
    }, 60_000);
    for (const name of ["rsync2", "rsync3"]) {
      assert.equal(await Deno.readTextFile(`${lab.hosts[name].path}/lib/b.txt`), V1["lib/b.txt"]);
    }
  });
});

Deno.test("vouch: an edit of a file named like an rsync temp file (.env.sample) under an intact marker is refused once quiet", async () => {
  await withLab(async (lab) => {
    const { key, text } = await newKey(lab, "release");
    await lab.fleet({
      replicas: [],
      publisher: false,
      extra: `release:\n  public_keys: ["${text}"]`,
    });
    const p = lab.hosts.rsync1;
    await publish(p.path, 1, { ...V1, ".env.sample": "KEY=\n" }, key);
    await lab.server("primary", "rsync1");
    await waitFor(
      "version 1 announced",
      async () => (await treeOf(lab, "rsync1")).version?.seq === 1,
      20_000,
    );
    // The watcher takes writing such a name for rsync's own, and pushes nothing for it.
    await Deno.writeTextFile(`${p.path}/.env.sample`, "KEY=planted\n");
    const refused = await waitFor("the edit refused", async () => {
      const t = await treeOf(lab, "rsync1");
      return t.check.state === "refused" ? t : null;
    }, 15_000);
    assert.equal(refused.check.path, ".env.sample");
  });
});

Deno.test("vouch: a server out of inotify watches checks its tree whole every push.poll_interval, not only every reconcile", async () => {
  // A user namespace has its own inotify limits: set them tiny there only.
  if (!(await canLowerInotify())) return;
  await withLab(async (lab) => {
    const { key, text } = await newKey(lab, "release");
    await lab.fleet({
      replicas: [],
      publisher: false,
      push: { poll_interval: "300ms" },
      extra: `release:\n  public_keys: ["${text}"]`,
    });
    const p = lab.hosts.rsync1;
    await publish(p.path, 1, V1, key);
    const primary = primaryWithWatches(lab, 1);
    try {
      await waitFor(
        "version 1 announced, unwatched",
        async () => (await treeOf(lab, "rsync1").catch(() => null))?.version?.seq === 1,
        20_000,
      );
      assert.match(primary.stderr(), /out of inotify watches/);
      await Deno.writeTextFile(`${p.path}/lib/b.txt`, "planted\n");
      const refused = await waitFor("the edit refused", async () => {
        const t = await treeOf(lab, "rsync1");
        return t.check.state === "refused" ? t : null;
      }, 10_000);
      assert.equal(refused.check.path, "lib/b.txt");
    } finally {
      await primary.stop();
    }
  });
});
