// The rsyncd.conf of a server host, rendered from the fleet file: a read
// module open to all, a write module for the host's one writer only; and
// the identity the daemon runs as.
import assert from "node:assert/strict";
import { daemonIdentity, renderRsyncdConf } from "./daemon.ts";
import { parseFleet } from "../config/mod.ts";
import { EnvironmentError } from "../core/mod.ts";

const FLEET = `tree: plugins
primary: {name: rsync1, address: 10.0.0.2, path: /srv/plugins}
replicas:
  - {name: rsync2, address: 10.0.0.3, path: /data/plugins}
  - {name: rsync3, address: 10.0.0.4, path: /data/plugins, upstream: rsync2}
publisher: {name: git1, address: 10.0.0.9, repo: /srv/git/plugins.git}
`;
const USER = { asRoot: false, uid: "1000", gid: "1000" };

/** The lines of `[name]`'s section, indentation dropped. */
function section(conf: string, name: string): string[] | null {
  const m = new RegExp(`^\\[${name}\\]\\n((?: {4}.*\\n)*)`, "m").exec(conf);
  return m ? m[1].split("\n").filter(Boolean).map((l) => l.trim()) : null;
}

Deno.test("rsyncd.conf: the primary's write module takes pushes from the publisher only", async () => {
  const f = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
  const conf = renderRsyncdConf(f, f.primary, USER);
  const read = section(conf, f.modules.read)!;
  assert.ok(read.includes("read only = yes") && read.includes("hosts allow = *"), read.join("|"));
  assert.ok(read.includes("path = /srv/plugins"));
  const write = section(conf, f.modules.write)!;
  assert.ok(write.includes("read only = no"));
  assert.ok(write.includes("hosts allow = 10.0.0.9"), write.join("|"));
  assert.ok(write.includes("hosts deny = *"));
  assert.ok(write.includes(`auth users = ${f.auth.user}`));
  assert.ok(write.includes(`secrets file = ${f.auth.secretsFile}`));
  assert.match(conf, /^address = 10\.0\.0\.2$/m);
  assert.match(conf, /^use chroot = no$/m, "not root: no chroot, no uid");
  assert.doesNotMatch(conf, /^uid = /m);
});

Deno.test("rsyncd.conf: a replica takes pushes from its upstream; as root it drops to uid/gid", async () => {
  const f = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
  const [rsync2, rsync3] = f.replicas;
  assert.ok(
    section(renderRsyncdConf(f, rsync2, USER), f.modules.write)!.includes("hosts allow = 10.0.0.2"),
  );
  const conf = renderRsyncdConf(f, rsync3, { asRoot: true, uid: "33", gid: "33" });
  assert.ok(section(conf, f.modules.write)!.includes("hosts allow = 10.0.0.3"));
  assert.match(conf, /^uid = 33\ngid = 33\nuse chroot = yes$/m);
});

Deno.test("rsyncd.conf: read only leaves the write module out; the version rides in the comment", async () => {
  const f = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
  const conf = renderRsyncdConf(f, f.replicas[0], USER, {
    readOnly: true,
    stateDir: "/run/x",
    listen: { host: "127.0.0.1", port: 10874 },
    version: { seq: 42, commit: "1a2b3c", ref: "main", published_at: "2026-11-25T21:00:00Z" },
  });
  assert.equal(section(conf, f.modules.write), null);
  assert.match(conf, /^pid file = \/run\/x\/rsyncd\.pid$/m);
  assert.match(conf, /^address = 127\.0\.0\.1\nport = 10874$/m);
  assert.ok(
    section(conf, f.modules.read)!.includes(
      "comment = plugins (read only) fanout-version seq=42 commit=1a2b3c ref=main at=2026-11-25T21:00:00Z",
    ),
  );
  assert.doesNotMatch(conf, /proxy protocol/);
});

Deno.test("rsyncd.conf: a host nobody writes to says so, and has no write module", async () => {
  const f = await parseFleet(FLEET.replace(/^publisher:.*\n/m, ""), "/etc/fanout/fanout.yaml");
  const conf = renderRsyncdConf(f, f.primary, USER);
  assert.equal(section(conf, f.modules.write), null);
  assert.match(conf, /^# No write module: nothing in the fleet file may write to rsync1\.$/m);
});

Deno.test("daemonIdentity: the tree's owner unless the fleet names one; a missing tree is an error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fanout-daemon-" });
  try {
    const f = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
    const self = { ...f.primary, path: dir };
    const st = await Deno.stat(dir);
    assert.deepEqual(await daemonIdentity(f, self), {
      asRoot: Deno.uid() === 0,
      uid: String(st.uid),
      gid: String(st.gid),
    });
    assert.deepEqual(await daemonIdentity({ ...f, uid: "33", gid: "44" }, self), {
      asRoot: Deno.uid() === 0,
      uid: "33",
      gid: "44",
    });
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      daemonIdentity(f, { ...self, path: `${dir}/file` }),
      (e) => e instanceof EnvironmentError && /is not a directory/.test(e.message),
    );
    await assert.rejects(
      daemonIdentity(f, { ...self, path: `${dir}/missing` }),
      (e) => e instanceof EnvironmentError && /does not exist: create it/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
