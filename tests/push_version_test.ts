// A new version reaches a replica by its difference: the paths the version
// log says it changed, then its marker, with no whole-tree walk; a replica
// that no longer shows the version it acknowledged gets the whole tree.
import assert from "node:assert/strict";
import {
  assertSameTree,
  diffTrees,
  holding,
  http,
  type Lab,
  type Proc,
  type Ran,
  sleep,
  waitFor,
  withLab,
} from "./_helpers.ts";
import { GitRepo } from "./_fleet.ts";
import { parseMarker } from "../lib/version/mod.ts";

function publish(lab: Lab, repo: GitRepo): Promise<Ran> {
  return lab.run(["--role", "publish", "-c", lab.fleetFile, "--repo", repo.bare]);
}

async function lastPush(lab: Lab, replica: string): Promise<Record<string, unknown>> {
  const h = lab.hosts.rsync1;
  const status = JSON.parse((await http(`http://${h.ip}:${h.health}/status`)).body);
  const r = status.replicas.find((x: { name: string }) => x.name === replica);
  return r.last_push;
}

Deno.test("push by version: changed, added and deleted paths and the marker go without a whole-tree run; a replica that lost its tree gets all of it", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: [{ name: "rsync2" }], push: { exclude: "[.git]" } });
    await lab.server("replica", "rsync2");
    const primaryProc = await lab.server("primary", "rsync1");
    const primary = lab.hosts.rsync1.path;
    const replica = lab.hosts.rsync2.path;
    const seqOf = async (dir: string) =>
      parseMarker(await Deno.readTextFile(`${dir}/.fanout-version`).catch(() => ""))?.seq;
    const landed = async (seq: number) => {
      await waitFor(
        `the replica at seq ${seq}`,
        async () => (await seqOf(replica)) === seq || null,
      );
      await assertSameTree(primary, replica, [".fanout-dest"]);
    };
    const repo = await GitRepo.create(lab.dir);
    const files: Record<string, string> = { "README.md": "read me\n" };
    for (let i = 0; i < 50; i++) files[`lib/m${i % 5}/f${i}.ts`] = `export const f${i} = ${i};\n`;
    await repo.commit({ ...files, "old/x.txt": "x\n", "old/deep/y.txt": "y\n" });
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(1);

    // One edit, a new directory, a deleted one, a file made executable.
    await repo.commit(
      { "lib/m1/f1.ts": "export const f1 = 'one';\n", "new/c.txt": "c\n", "old": null },
      { executable: ["lib/m2/f2.ts"] },
    );
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(2);
    await waitFor("the version push recorded", async () => {
      const p = await lastPush(lab, "rsync2");
      return p?.kind === "version" || null;
    });
    assert.equal((await Deno.stat(`${replica}/lib/m2/f2.ts`)).mode! & 0o111, 0o111);
    await assert.rejects(Deno.lstat(`${replica}/old`), Deno.errors.NotFound);

    // The replica loses its tree (a new disk): its marker is not the one
    // acknowledged, so the next version goes whole.
    for await (const e of Deno.readDir(replica)) {
      if (e.name !== ".fanout-dest" && !e.name.startsWith(".fanout-tmp")) {
        await Deno.remove(`${replica}/${e.name}`, { recursive: true });
      }
    }
    await repo.commit({ "README.md": "read me again\n" });
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(3);
    // A later event may push again after it: the log says which push went whole.
    assert.match(
      primaryProc.stderr + primaryProc.stdout,
      /replica not at the version it acknowledged/,
    );
  });
});

/**
 * A primary and one replica (max_delete 10, `push` on top) at version 1 of
 * `files`, published; then version 2 made by `change` and published, and
 * pushed by version.
 */
async function secondVersion(
  lab: Lab,
  files: Record<string, string>,
  change: Record<string, string | null>,
  push: Record<string, string | number> = {},
): Promise<{ primary: Proc; src: string; replica: string }> {
  await lab.fleet({
    replicas: [{ name: "rsync2" }],
    push: { exclude: "[.git]", reconcile: "1h", max_delete: 10, ...push },
  });
  await lab.server("replica", "rsync2");
  const primary = await lab.server("primary", "rsync1");
  const replica = lab.hosts.rsync2.path;
  const repo = await GitRepo.create(lab.dir);
  for (const [i, commit] of [files, change].entries()) {
    await repo.commit(commit);
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await waitFor(`seq ${i + 1} on the replica`, async () => {
      const m = await Deno.readTextFile(`${replica}/.fanout-version`).catch(() => "");
      return parseMarker(m)?.seq === i + 1 || null;
    });
  }
  await waitFor("the version push recorded", async () => {
    const p = await lastPush(lab, "rsync2");
    return p?.kind === "version" || null;
  });
  return { primary, src: lab.hosts.rsync1.path, replica };
}

/** `n` files `d<i % dirs>/f<i>.txt`, each holding its own name. */
function files(n: number, dirs: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`d${i % dirs}/f${i}.txt`] = `f${i}\n`;
  return out;
}

Deno.test("push by version: once every replica has the new version, the mass-delete guard applies again", async () => {
  await withLab(async (lab) => {
    const all = files(60, 5);
    const { primary, src, replica } = await secondVersion(lab, all, { "README.md": "v2\n" });

    // An rm -rf on the primary after the publish has reached every replica:
    // an accident, held like any other.
    for (let i = 0; i < 5; i++) await Deno.remove(`${src}/d${i}`, { recursive: true });
    await primary.waitFor(/msg="mass deletion suspected: deletions held, not pushed"/);
    assert.equal(holding(replica, all), 60, "the replica keeps every file");
  });
});

Deno.test("push by version: after a version push, deletions a window at a time still add up against the guard since the publish", async () => {
  await withLab(async (lab) => {
    const all = files(60, 5);
    const { primary, src, replica } = await secondVersion(lab, all, { "README.md": "v2\n" }, {
      delete_window: "1s",
    });
    await sleep(1500); // the publish's lift is over

    // 8 files a window: under max_delete each time, past it since the publish.
    const names = Object.keys(all);
    for (let b = 0; b < 3 && !/mass deletion suspected/.test(primary.stderr); b++) {
      for (const p of names.slice(b * 8, b * 8 + 8)) await Deno.remove(`${src}/${p}`);
      await sleep(1500);
    }
    await primary.waitFor(/msg="mass deletion suspected: deletions held, not pushed"/, 3000);
    assert.ok(holding(replica, all) >= 44, "the replica lost no more than max_delete and a batch");
  });
});

Deno.test("push by version: a publish that deletes past max_delete lands whole, and the guard holds the next rm -rf", async () => {
  await withLab(async (lab) => {
    const all = files(80, 4);
    const gone = Object.keys(all).filter((p) => p.startsWith("d0/") || p.startsWith("d1/"));
    const { primary, src, replica } = await secondVersion(
      lab,
      all,
      Object.fromEntries(gone.map((p) => [p, null])),
    );
    await waitFor("the replica follows the publish", async () => {
      const d = await diffTrees(src, replica);
      return d === "" || null;
    });
    assert.equal(holding(replica, all), 40);
    await sleep(500); // the deletions held while the publish landed have gone by
    for (let i = 2; i < 4; i++) await Deno.remove(`${src}/d${i}`, { recursive: true });
    await primary.waitFor(/msg="mass deletion suspected: deletions held, not pushed"/);
    assert.equal(holding(replica, all), 40, "the replica keeps the rest");
  });
});

Deno.test("push by version: through a relay each hop goes by version; a leaf that lost its tree gets all of it from the relay", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }],
      push: { exclude: "[.git]", reconcile: "1h" },
    });
    await lab.server("replica", "rsync3");
    const relay = await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    const src = lab.hosts.rsync1.path;
    const leaf = lab.hosts.rsync3.path;
    const seqOn = async (dir: string) =>
      parseMarker(await Deno.readTextFile(`${dir}/.fanout-version`).catch(() => ""))?.seq;
    const landed = async (seq: number) => {
      await waitFor(`the leaf at seq ${seq}`, async () => (await seqOn(leaf)) === seq || null);
      await waitFor("the leaf identical", async () => (await diffTrees(src, leaf)) === "" || null);
    };
    const repo = await GitRepo.create(lab.dir);
    await repo.commit({ "a.txt": "a\n", "d/b.txt": "b\n", "old/x.txt": "x\n" });
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(1);
    await repo.commit({ "a.txt": "a v2\n", "old": null, "new/y.txt": "y\n" });
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(2);
    // The relay's push of version 2 to the leaf, by version: a scoped push of
    // the landing's late events may follow it (and be /status's last_push).
    await relay.waitFor(/msg=pushed .*replica=rsync3 kind=version .*version=2 /);

    for await (const e of Deno.readDir(leaf)) {
      if (e.name !== ".fanout-dest" && !e.name.startsWith(".fanout-tmp")) {
        await Deno.remove(`${leaf}/${e.name}`, { recursive: true });
      }
    }
    await repo.commit({ "d/b.txt": "b v3\n" });
    assert.equal((await repo.push()).code, 0);
    assert.equal((await publish(lab, repo)).code, 0);
    await landed(3);
    assert.match(relay.stderr, /replica not at the version it acknowledged/);
  });
});

Deno.test("push by version: a publish that sets off an event storm reaches the replica by its version push first, the whole tree after", async () => {
  await withLab(async (lab) => {
    await lab.fleet({
      replicas: [{ name: "rsync2" }],
      push: { exclude: "[.git]", reconcile: "1h", storm_events: 20 },
    });
    await lab.server("replica", "rsync2");
    const primary = await lab.server("primary", "rsync1");
    const replica = lab.hosts.rsync2.path;
    const repo = await GitRepo.create(lab.dir);
    // Version 1 one file (no storm), version 2 150 files in 30 new directories (a storm).
    for (const [seq, commit] of [[1, files(1, 1)], [2, files(150, 30)]] as const) {
      await repo.commit(commit);
      assert.equal((await repo.push()).code, 0);
      assert.equal((await publish(lab, repo)).code, 0);
      await waitFor(`seq ${seq} on the replica`, async () => {
        const m = await Deno.readTextFile(`${replica}/.fanout-version`).catch(() => "");
        return parseMarker(m)?.seq === seq || null;
      });
    }
    await primary.waitFor(/event burst: some events may be lost/);
    // The storm's whole push waited behind the version's own.
    const said = () => (primary.stderr + primary.stdout).split("\n");
    const version = () => said().findIndex((l) => /msg=pushed .*kind=version .*version=2/.test(l));
    await waitFor("the version push", () => version() >= 0);
    await waitFor(
      "the whole push after it",
      () =>
        said().slice(version()).some((l) => /msg=pushed .*kind=full .*reason="event burst/.test(l)),
    );
    await assertSameTree(lab.hosts.rsync1.path, replica, [".fanout-dest"]);
  });
});
