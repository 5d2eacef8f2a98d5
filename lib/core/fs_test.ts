// Bounded, link-aware reads of files a server or an operator supplies, on
// real files in a temp dir: what is too big, not a regular file or swapped
// for a symlink is never read.
import assert from "node:assert/strict";
import {
  detour,
  exists,
  existsNow,
  FileTooBigError,
  readSmallBytes,
  readSmallFile,
  readTextNow,
  readTextOrNull,
  readTextUpTo,
  receivingSince,
  sweepTemps,
} from "./fs.ts";

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fanout-fs-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("exists: a file, a directory, even a dangling link; not a missing path", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "x");
    await Deno.symlink(`${dir}/nowhere`, `${dir}/dangling`);
    for (const p of ["f", ".", "dangling"]) {
      assert.equal(await exists(`${dir}/${p}`), true, p);
      assert.equal(existsNow(`${dir}/${p}`), true, p);
    }
    assert.equal(await exists(`${dir}/missing`), false);
    assert.equal(existsNow(`${dir}/missing/below`), false);
  });
});

Deno.test("readTextOrNull / readTextNow: the text, or null when it cannot be read", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "café\n");
    assert.equal(await readTextOrNull(`${dir}/f`), "café\n");
    assert.equal(readTextNow(`${dir}/f`), "café\n");
    for (const p of ["missing", "."]) {
      assert.equal(await readTextOrNull(`${dir}/${p}`), null, p);
      assert.equal(readTextNow(`${dir}/${p}`), null, p);
    }
  });
});

Deno.test("readTextUpTo: up to max bytes reads; one more throws before parsing", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ok`, "a".repeat(100));
    await Deno.writeTextFile(`${dir}/big`, "a".repeat(101));
    assert.equal(await readTextUpTo(`${dir}/ok`, 100), "a".repeat(100));
    await Deno.writeTextFile(`${dir}/empty`, "");
    assert.equal(await readTextUpTo(`${dir}/empty`, 0), "");
    await assert.rejects(readTextUpTo(`${dir}/big`, 100), (e) => {
      assert.ok(e instanceof FileTooBigError);
      assert.equal(e.size, 101);
      assert.equal(e.message, `${dir}/big is 101 bytes, more than 100`);
      return true;
    });
    await assert.rejects(readTextUpTo(`${dir}/missing`, 100), Deno.errors.NotFound);
  });
});

Deno.test("readTextUpTo: a directory, a device or a FIFO is refused, not read", async () => {
  await withDir(async (dir) => {
    await assert.rejects(readTextUpTo(dir, 100), Deno.errors.IsADirectory);
    // Endless if read: refused by what it is.
    await assert.rejects(readTextUpTo("/dev/zero", 100), Deno.errors.IsADirectory);
    const fifo = await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
    assert.equal(fifo.code, 0);
    await assert.rejects(readTextUpTo(`${dir}/fifo`, 100), Deno.errors.IsADirectory);
  });
});

Deno.test("readSmallFile: a small regular file only; never a link, a device or more than max", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/marker`, '{"seq":1}\n');
    await Deno.writeTextFile(`${dir}/big`, "x".repeat(4097));
    await Deno.writeTextFile(`${dir}/exact`, "x".repeat(4096));
    await Deno.symlink(`${dir}/marker`, `${dir}/link`);
    await Deno.symlink("/dev/zero", `${dir}/zero`);
    assert.equal(readSmallFile(`${dir}/marker`, 4096), '{"seq":1}\n');
    assert.equal(readSmallFile(`${dir}/exact`, 4096), "x".repeat(4096));
    for (const p of ["big", "link", "zero", "missing", "."]) {
      assert.equal(readSmallFile(`${dir}/${p}`, 4096), null, p);
    }
    assert.equal(readSmallFile("/dev/zero", 4096), null);
    assert.equal(readSmallFile(`${dir}/marker`, 0), null);
  });
});

Deno.test("readSmallFile: bytes that are not UTF-8 are read, not thrown", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/bin`, new Uint8Array([0xff, 0xfe, 0x00, 0x41]));
    assert.equal(readSmallFile(`${dir}/bin`, 10), "\ufffd\ufffd\x00A");
  });
});

Deno.test("detour: a symlink inside the tree is a detour too; . and empty parts are skipped", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/d/e`, { recursive: true });
    await Deno.symlink("d", `${dir}/in`);
    assert.equal(detour(dir, "./d//e/f.txt"), null);
    assert.equal(detour(dir, "in/e/f.txt"), "in");
    assert.equal(detour(dir, "d/e", { whole: true }), null);
    assert.equal(detour(dir, "../etc/passwd"), "..");
    assert.equal(detour(dir, ""), null);
  });
});

Deno.test("sweepTemps: removes a dead writer's temp files, keeps a live one's, other names and links", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A pid far above any running one (pid_max is at most 2^22).
    const dead = `${dir}/client-status.json.99999999.tmp`;
    const live = `${dir}/client-status.json.${Deno.pid}.tmp`;
    const other = `${dir}/notes.tmp`;
    const link = `${dir}/record.88888888.tmp`;
    for (const f of [dead, live, other]) await Deno.writeTextFile(f, "x");
    await Deno.symlink(other, link);
    assert.equal(await sweepTemps(dir), 1);
    assert.equal(existsNow(dead), false);
    for (const f of [live, other, link]) assert.ok((await Deno.lstat(f)) !== null, f);
    assert.equal(await sweepTemps(`${dir}/missing`), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSmallBytes: the bytes of a regular file within the bound; a larger one, a link or a directory is null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7919) % 251);
    await Deno.writeFile(`${dir}/f`, bytes);
    assert.deepEqual(readSmallBytes(`${dir}/f`, 128 << 20), bytes);
    assert.deepEqual(readSmallBytes(`${dir}/f`, 70_000), bytes);
    assert.equal(readSmallBytes(`${dir}/f`, 69_999), null);
    await Deno.symlink(`${dir}/f`, `${dir}/l`);
    assert.equal(readSmallBytes(`${dir}/l`, 128 << 20), null);
    assert.equal(readSmallBytes(dir, 128 << 20), null);
    assert.deepEqual(readSmallBytes(`${dir}/f`, 0) ?? "null", "null");
    await Deno.writeFile(`${dir}/empty`, new Uint8Array());
    assert.deepEqual(readSmallBytes(`${dir}/empty`, 0), new Uint8Array());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("receivingSince: a fresh entry of a small temp dir is a transfer landing; a link is never looked through", async () => {
  await withDir(async (dir) => {
    const tmp = `${dir}/.fanout-tmp`;
    await Deno.mkdir(tmp);
    await Deno.writeTextFile(`${tmp}/.big.bin.AbCdEf`, "x");
    const old = new Date(Date.now() - 60_000);
    await Deno.utime(tmp, old, old);
    assert.equal(receivingSince(dir, Date.now() - 500), true);
    await Deno.utime(`${tmp}/.big.bin.AbCdEf`, old, old);
    assert.equal(receivingSince(dir, Date.now() - 500), false);
    await Deno.remove(tmp, { recursive: true });
    const elsewhere = `${dir}/elsewhere`;
    await Deno.mkdir(elsewhere);
    await Deno.symlink(elsewhere, tmp);
    assert.equal(receivingSince(dir, Date.now() - 500), false);
  });
});

Deno.test("receivingSince: a temp dir too big to list (junk planted or left) is judged by its own mtime, never listed", async () => {
  await withDir(async (dir) => {
    const tmp = `${dir}/.fanout-tmp`;
    await Deno.mkdir(tmp);
    // Listing a directory reads all its entries at once, on the thread
    // every push and check waits on: these would each look fresh.
    for (let i = 0; i < 4000; i++) {
      Deno.writeFileSync(`${tmp}/.planted-junk-entry-of-a-long-name-${i}`, new Uint8Array(0));
    }
    const old = new Date(Date.now() - 60_000);
    await Deno.utime(tmp, old, old);
    assert.equal(receivingSince(dir, Date.now() - 500), false);
    await Deno.utime(tmp, new Date(), new Date());
    assert.equal(receivingSince(dir, Date.now() - 500), true);
  });
});
