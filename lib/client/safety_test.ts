// Which destinations a client may mirror into, and what it makes of rsync's answers.
import assert from "node:assert/strict";
import { adoptDest, checkDest, dangerous, homeDirs, rememberDest } from "./safety.ts";
import { classify } from "./drift.ts";
import { unescapeName } from "../rsync/mod.ts";
import { isConnectionFailure, serverOf } from "./job.ts";
import { SafetyError, UsageError } from "../core/mod.ts";

const NO_HOMES = new Map<string, string>();

Deno.test("client_safety: the root, system dirs, homes are dangerous; app dirs are not", () => {
  const homes = new Map([["/var/www", "user www-data"], ["/home/ann", "user ann"]]);
  for (
    const [p, why] of [
      ["/", /root directory/],
      ["//", /root directory/],
      ["/etc/", /system directory/],
      ["/usr/local", /system directory/],
      ["/var/lib", /system directory/],
      ["/proc/1", /inside the system directory \/proc/],
      ["/etc/nginx", /inside the system directory \/etc/],
      ["/var/www", /home directory of user www-data/],
      ["/home/ann/", /home directory of user ann/],
      ["/home/ann/../ann", /home directory of user ann/],
    ] as const
  ) assert.match(dangerous(p, homes) ?? "(allowed)", why, p);
  for (
    const p of ["/apps/dat/plugins", "/var/lib/plugins", "/home/ann/plugins", "/srv/x", "/opt/app"]
  ) {
    assert.equal(dangerous(p, homes), null, p);
  }
});

Deno.test("client_safety: home dirs come from passwd and /home", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/passwd`,
      "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n" +
        "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nbad line\n",
    );
    const homes = homeDirs(`${dir}/passwd`);
    assert.equal(homes.get("/var/www"), "user www-data");
    assert.equal(homes.get("/root"), "user root");
    assert.ok(!homes.has("/nonexistent"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client_safety: checkDest says absent, empty, marked, adopt, or refuses", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const opts = { homes: NO_HOMES, stateDir: `${dir}/state/h1` };
    assert.equal(await checkDest(`${dir}/new`, opts), "absent");
    await Deno.mkdir(`${dir}/empty`);
    assert.equal(await checkDest(`${dir}/empty`, opts), "empty");
    const co = `${dir}/checkout`;
    await Deno.mkdir(`${co}/.git`, { recursive: true });
    await Deno.writeTextFile(`${co}/a.txt`, "a");
    await assert.rejects(checkDest(co, opts), SafetyError);
    assert.equal(await checkDest(co, { ...opts, adopt: true }), "adopt");
    assert.equal(await adoptDest(co), true);
    assert.equal(await checkDest(co, opts), "marked");
    await assert.rejects(Deno.stat(`${co}/.git`));
    await assert.rejects(checkDest(dir, opts), /the state dir .* is inside it/);
    await assert.rejects(
      checkDest(co, { ...opts, backupDir: `${co}/bk` }),
      (e) => e instanceof UsageError,
    );

    // A marker deleted by hand is restored for the same directory only.
    const record = `${dir}/record.json`;
    await rememberDest(record, co);
    await Deno.remove(`${co}/.fanout-dest`);
    assert.equal(await checkDest(co, { ...opts, recordFile: record }), "marked");
    assert.ok((await Deno.stat(`${co}/.fanout-dest`)).isFile);
    await Deno.remove(`${co}/.fanout-dest`);
    await Deno.rename(co, `${dir}/moved`);
    await Deno.mkdir(co);
    await Deno.writeTextFile(`${co}/other.txt`, "not ours");
    await assert.rejects(checkDest(co, { ...opts, recordFile: record }), /no \.fanout-dest marker/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: itemized rsync lines sort into changed, missing and extra", () => {
  const d = classify([
    ">f.st...... a.txt",
    ">f+++++++++ new/b.txt",
    "cd+++++++++ new/",
    "cL+++++++++ link",
    ".d..t...... ./",
    ".d..t...... sub/",
    ".f...p..... mode.txt",
    "*deleting   old.txt",
    "*deleting   olddir/",
    "*deleting   .~tmp~/",
    "*deleting   sub/.~tmp~/partial",
    ">f+++++++++ .fanout-dest",
  ]);
  assert.deepEqual(d.changed, [
    { path: "a.txt", kind: "file", what: ["size", "time"] },
    { path: "sub/", kind: "dir", what: ["time"] },
    { path: "mode.txt", kind: "file", what: ["perms"] },
  ]);
  assert.deepEqual(d.missing.map((i) => [i.path, i.kind]), [
    ["new/b.txt", "file"],
    ["new/", "dir"],
    ["link", "link"],
  ]);
  assert.deepEqual(d.extra.map((i) => i.path), ["old.txt", "olddir/"]);
  assert.equal(d.escaped, false);

  const e = classify([">f+++++++++ caf\\#303\\#251.txt", "*deleting   nl\\#012x"]);
  assert.deepEqual([e.missing[0].path, e.extra[0].path, e.escaped], ["café.txt", "nl\nx", true]);
  assert.equal(unescapeName("plain\\#b"), "plain\\#b");
});

Deno.test("client: only connection failures are retried", () => {
  assert.ok(isConnectionFailure(10, "rsync: failed to connect to 10.0.0.3: Connection refused"));
  assert.ok(isConnectionFailure(35, ""));
  assert.ok(isConnectionFailure(30, "timeout"));
  assert.ok(isConnectionFailure(5, "@ERROR: max connections (200) reached -- try again later"));
  assert.ok(isConnectionFailure(5, "rsync: did not see server greeting"));
  assert.ok(isConnectionFailure(5, "rsync: didn't get server startup line"));
  assert.ok(isConnectionFailure(5, "@ERROR: fanout proxy: no healthy rsync server (rsync2: down)"));
  assert.ok(!isConnectionFailure(5, "@ERROR: Unknown module 'plugns'"));
  assert.ok(!isConnectionFailure(23, "some files could not be transferred"));
  assert.ok(!isConnectionFailure(11, "No space left on device"));
  assert.ok(!isConnectionFailure(null, ""));
  assert.equal(serverOf("rsync://lb.example.com/plugins/"), "lb.example.com:873");
  assert.equal(serverOf("rsync://u@10.0.0.3:10873/plugins/"), "10.0.0.3:10873");
});
