// The walk by find against the walk by lstat: entry for entry, every field,
// on random trees of every kind of path and name.
import assert from "node:assert/strict";
import {
  comparePaths,
  type TreeEntry,
  TreeError,
  type WalkOptions,
  walkTree,
  walkTreeByFind,
  walkTreeByLstat,
} from "./tree.ts";
import { sh, withDir } from "./_testing.ts";

const NAMES = [
  "a",
  "b c",
  "line\nbreak",
  "-dash",
  "--",
  "back\\slash",
  "star*",
  "q?",
  "[set]",
  "é",
  "\u{1F600}",
  "\ue000",
  "tab\tx",
  ".hidden",
  " lead",
  "x".repeat(200),
];

/** A small deterministic generator (mulberry32), so a failure repeats. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random tree at `root`: files, directories, symlinks (dangling, to directories), FIFOs. */
function makeTree(root: string, seed: number, count: number): void {
  const rand = random(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  Deno.mkdirSync(root);
  const dirs = [""];
  for (let i = 0; i < count; i++) {
    const dir = pick(dirs);
    const name = `${pick(NAMES)}${rand() < 0.5 ? "" : i}`;
    const path = `${root}${dir ? `/${dir}` : ""}/${name}`;
    try {
      Deno.lstatSync(path);
      continue;
    } catch { /* free */ }
    const kind = rand();
    if (kind < 0.4) {
      Deno.writeFileSync(path, new Uint8Array(Math.floor(rand() * 3000)));
      Deno.chmodSync(path, pick([0o644, 0o755, 0o4755, 0o2750, 0o600, 0o444]));
      // Nanoseconds, and times before 1970 (negative seconds, positive nanoseconds).
      const at = `@${pick([0, 1_600_000_000, -100_000, 1_900_000_000])}.${
        String(Math.floor(rand() * 1e9)).padStart(9, "0")
      }`;
      new Deno.Command("touch", { args: ["-h", "-d", at, "--", path] }).outputSync();
    } else if (kind < 0.6) {
      Deno.mkdirSync(path);
      if (rand() < 0.2) Deno.chmodSync(path, 0o1777);
      dirs.push(dir ? `${dir}/${name}` : name);
    } else if (kind < 0.85) {
      Deno.symlinkSync(pick(["..", "/etc", "missing", ".", `../${pick(NAMES)}`]), path);
    } else {
      new Deno.Command("mkfifo", { args: ["--", path] }).outputSync();
    }
  }
}

async function same(root: string, opts: WalkOptions = {}, what = ""): Promise<void> {
  const byFind = await walkTreeByFind(root, opts);
  assert.ok(byFind, `find walked ${what}`);
  assert.deepEqual(byFind, walkTreeByLstat(root, opts), what);
  for (let i = 1; i < byFind.length; i++) {
    assert.ok(comparePaths(byFind[i - 1].path, byFind[i].path) < 0, `${what}: order at ${i}`);
  }
}

Deno.test("walk: find's walk equals the lstat walk entry for entry on random trees, with skip, filter and maxPaths", async () => {
  await withDir(async (dir) => {
    const covered: TreeEntry[] = [];
    for (let seed = 1; seed <= 6; seed++) {
      const root = `${dir}/t${seed}`;
      makeTree(root, seed, 150);
      await same(root, {}, `seed ${seed}`);
      covered.push(...walkTreeByLstat(root));
      const top = [...Deno.readDirSync(root)].map((e) => e.name).sort();
      const skip = top.filter((_, i) => i % 3 === 0);
      await same(root, { skip }, `seed ${seed}, skip ${JSON.stringify(skip)}`);
      const filter = (p: string) => p.length % 4 !== 0;
      await same(root, { filter }, `seed ${seed}, filter`);
      const all = walkTreeByLstat(root).length;
      await same(root, { maxPaths: all }, `seed ${seed}, maxPaths`);
      await assert.rejects(
        () => walkTreeByFind(root, { maxPaths: all - 1 }),
        (e) => e instanceof TreeError && new RegExp(`more than ${all - 1} paths`).test(e.message),
      );
    }
    // The trees hold what the comparison is for.
    const has = (what: string, test: (e: TreeEntry) => boolean) =>
      assert.ok(covered.some(test), `no ${what} among ${covered.length} paths`);
    for (const kind of ["file", "dir", "symlink", "other"]) has(kind, (e) => e.kind === kind);
    has("time before 1970 with a fraction", (e) => e.mtimeMs < 0 && e.mtimeMs % 1000 !== 0);
    has("setuid, setgid or sticky mode", (e) => e.mode > 0o777);
    has("name with a newline", (e) => e.path.includes("\n"));
    has("path three deep", (e) => e.path.split("/").length >= 3);
  });
});

Deno.test("walk: a skipped name with wildcards leaves out itself only; a symlinked root is followed, nothing below it", async () => {
  await withDir(async (dir) => {
    sh(
      dir,
      "mkdir -p 't/a*/d' t/ab 't/[x]' t/x && touch 't/a*/d/f' t/ab/g t/x/h 't/\\' t/\ue000 t/\u{10000} && ln -s t link && " +
        "ln -s t/ab/g filelink",
    );
    const skip = ["a*", "[x]", "\\"];
    assert.deepEqual((await walkTreeByFind(`${dir}/t`, { skip }))!.map((e) => e.path), [
      "ab",
      "ab/g",
      "x",
      "x/h",
      "\ue000",
      "\u{10000}",
    ]);
    await same(`${dir}/link`, { skip });
    await same(`${dir}/link`);
    assert.deepEqual(await walkTree(`${dir}/link`), walkTreeByLstat(`${dir}/t`));
    // Not a directory, or missing: the lstat walk's error, as readDirSync throws it.
    await assert.rejects(() => walkTree(`${dir}/filelink`), Deno.errors.NotADirectory);
    await assert.rejects(() => walkTree(`${dir}/missing`), Deno.errors.NotFound);
  });
});

Deno.test("walk: find's walk refuses a name that is not valid UTF-8", async () => {
  await withDir(async (dir) => {
    sh(dir, `mkdir -p t/d && touch t/ok "t/d/$(printf 'a\\377b')"`);
    await assert.rejects(
      () => walkTreeByFind(`${dir}/t`),
      (e) => e instanceof TreeError && e.path === "d/a\ufffdb" && /not valid UTF-8/.test(e.message),
    );
  });
});

Deno.test("walk: a name that is not valid UTF-8 is skipped or filtered out as Deno reads it, refused only if kept", async () => {
  await withDir(async (dir) => {
    sh(
      dir,
      `mkdir -p "t/$(printf 'd\\377')" && touch t/ok "t/$(printf 'd\\377')/x" "t/$(printf 'f\\377')"`,
    );
    const asked: string[] = [];
    const filter = (p: string) => (asked.push(p), p === "ok");
    assert.deepEqual(
      await walkTreeByFind(`${dir}/t`, { filter }),
      walkTreeByLstat(`${dir}/t`, { filter }),
    );
    assert.deepEqual(asked.sort(), ["d\ufffd", "f\ufffd", "ok", "d\ufffd", "f\ufffd", "ok"].sort());
    const skip = ["d\ufffd", "f\ufffd"];
    assert.deepEqual(
      await walkTreeByFind(`${dir}/t`, { skip }),
      walkTreeByLstat(`${dir}/t`, { skip }),
    );
    await assert.rejects(
      () => walkTreeByFind(`${dir}/t`, { skip: ["f\ufffd"] }),
      (e) => e instanceof TreeError && e.path === "d\ufffd",
    );
  });
});
