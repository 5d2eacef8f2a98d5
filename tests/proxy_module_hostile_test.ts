// Through the proxy, a client may ask a server for any module: the server's
// write module too, whose `hosts allow` then sees the proxy's address. Where
// the proxy runs on a writer's host (the primary, a relay), the address check
// of the write module is the proxy's, not the client's: only the password is
// left, and the 50 slots of the write module can be held from anywhere.

import assert from "node:assert/strict";
import { withLab, writeTree } from "./_helpers.ts";

const enc = new TextEncoder();

/** What a server answers, through the proxy, to a request for `module`. */
async function ask(ip: string, port: number, module: string): Promise<string> {
  const c = await Deno.connect({ hostname: ip, port });
  try {
    await c.write(enc.encode(`@RSYNCD: 31.0\n${module}\n`));
    let said = "";
    const buf = new Uint8Array(1024);
    // The greeting, then the answer to the module request.
    while (said.split("\n").length < 3) {
      const n = await c.read(buf);
      if (n === null) break;
      said += new TextDecoder().decode(buf.subarray(0, n));
    }
    return said;
  } finally {
    c.close();
  }
}

Deno.test("proxy: a client asking for the write module through the proxy never reaches it", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({ replicas: ["rsync2"], proxy: { check_timeout: "3s", fall: 5 } });
    // The proxy runs on the primary's host: its connections to a replica
    // leave from the primary's address (on loopback, 127.0.0.1 for all).
    const text = await Deno.readTextFile(file);
    await Deno.writeTextFile(
      file,
      text.replace(`  address: ${lab.hosts.rsync1.ip}\n`, "  address: 127.0.0.1\n"),
    );
    await writeTree(lab.hosts.rsync1.path, { "a.txt": "alpha\n" });
    await lab.server("replica", "rsync2");
    await lab.server("primary", "rsync1");
    await lab.proxy();
    // Twice per backend at least: the proxy spreads clients over rsync1 and rsync2.
    for (let i = 0; i < 4; i++) {
      const said = await ask(lab.hosts.proxy.ip, lab.hosts.proxy.port, "plugins-push");
      assert.doesNotMatch(
        said,
        /AUTHREQD|access denied to plugins-push/,
        `a server's write module answered through the proxy:\n${said}`,
      );
    }
  });
});
