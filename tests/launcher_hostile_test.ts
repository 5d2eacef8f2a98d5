// The self-contained launcher (build/launcher.sh) against another local user
// who prepared its /tmp fallback: root must never exec a runtime that user
// placed. Runs the launcher's fast path only (no runtime is unpacked), in a
// private mount namespace where /var/cache and HOME are read-only, so the
// launcher falls back to ${TMPDIR}/fanout-0 as on a host with a read-only /var.

import assert from "node:assert/strict";

const ATTACKER = "65534";

async function run(cmd: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** build/launcher.sh with placeholders filled: a fast path to `dir`, no payload. */
async function launcher(path: string, dir: string): Promise<void> {
  let text = await Deno.readTextFile(new URL("../build/launcher.sh", import.meta.url));
  const fill: Record<string, string> = {
    VERSION: "9.9.9",
    DIR: dir,
    HDR: "0",
    RT_GZ: "0",
    RT_SHA: "x",
    JS: "0",
    JS_SHA: "x",
    FLAGS: "",
    DENO_VERSION: "2",
    UNPACKED_MB: "100",
  };
  for (const [k, v] of Object.entries(fill)) text = text.replaceAll(`@${k}@`, v);
  // TOTAL is the file's own size: fill with a guess, then fix the digits.
  let total = text.length + 4;
  for (let i = 0; i < 3; i++) {
    total = text.replace("@TOTAL@", String(total)).length;
  }
  await Deno.writeTextFile(path, text.replace("@TOTAL@", String(total)), { mode: 0o755 });
}

Deno.test({
  name:
    "launcher: root falling back to /tmp never execs a runtime another user planted behind a symlink",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const lab = await Deno.makeTempDir({ prefix: "fanout-launcher-" });
    try {
      await Deno.chmod(lab, 0o755);
      const d = "9.9.9-0123456789abcdef";
      const tmp = `${lab}/tmp`; // the shared /tmp
      const shared = `${lab}/shared`; // a root-owned directory anyone may write (/dev/shm, /var/tmp)
      const home = `${lab}/home`;
      for (const p of [tmp, shared, home]) {
        await Deno.mkdir(p);
        await Deno.chmod(p, 0o1777);
      }
      await launcher(`${lab}/fanout`, d);
      const pwned = `${lab}/shared/pwned`;
      // The other user: /tmp/fanout-0 is theirs, its version dir a symlink to
      // a root-owned directory holding their own "deno".
      const prep = await run([
        "setpriv",
        `--reuid=${ATTACKER}`,
        `--regid=${ATTACKER}`,
        "--clear-groups",
        "sh",
        "-c",
        `mkdir ${tmp}/fanout-0 && ln -s ${shared} ${tmp}/fanout-0/${d} &&
         printf '#!/bin/sh\\nid -u > ${pwned}\\n' > ${shared}/deno && chmod 755 ${shared}/deno &&
         echo x > ${shared}/fanout.js && mkdir ${shared}/deno-dir`,
      ]);
      assert.equal(prep.code, 0, prep.stderr);
      const r = await run([
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t tmpfs -o ro tmpfs /var/cache && mount -t tmpfs -o ro tmpfs ${home} &&
         exec ${lab}/fanout --version`,
      ], { HOME: home, TMPDIR: tmp, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" });
      let ran: string | null = null;
      try {
        ran = await Deno.readTextFile(pwned);
      } catch { /* not run: as it should be */ }
      assert.equal(ran, null, `root ran the other user's deno (uid ${ran?.trim()})`);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^fanout: /m);
    } finally {
      await Deno.remove(lab, { recursive: true });
    }
  },
});
