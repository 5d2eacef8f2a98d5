// Every file `fanout render` produces says which fanout version and which
// fleet file made it, on its first line (second after a `#!` line), for every
// kind and every role it renders for; the rest exit 2 with one line and no output.
import assert from "node:assert/strict";
import { type Ran, withLab } from "./_helpers.ts";
import { RENDER_KINDS } from "../lib/cli/mod.ts";
import { ROLES } from "../lib/config/mod.ts";
import { VERSION } from "../lib/core/mod.ts";

Deno.test("render: every rendered file starts with the fanout version and the fleet file", async () => {
  await withLab(async (lab) => {
    const file = await lab.fleet({
      proxy: true,
      client: { dest: `${lab.dir}/dest` },
      extra: `binary: /bin/true`,
    });
    const header = `Rendered by fanout ${VERSION} from ${file}; do not edit, re-render.`;
    const jobs: { what: string; args: string[] }[] = [];
    for (const kind of RENDER_KINDS) {
      jobs.push({ what: `${kind} (no role)`, args: ["render", kind, "-c", file] });
      for (const role of ROLES) {
        const name = role === "replica" ? ["--name", "rsync2"] : [];
        jobs.push({
          what: `${kind} --role ${role}`,
          args: ["render", kind, "--role", role, ...name, "-c", file],
        });
      }
    }
    const results: Ran[] = [];
    // A few at a time: the machine is shared.
    for (let i = 0; i < jobs.length; i += 6) {
      results.push(...await Promise.all(jobs.slice(i, i + 6).map((j) => lab.run(j.args))));
    }
    const rendered: string[] = [];
    jobs.forEach((job, i) => {
      const r = results[i];
      if (r.code === 0) {
        const lines = r.stdout.split("\n");
        const first = lines[0].startsWith("#!") ? lines[1] : lines[0];
        assert.match(
          first,
          /^(#|;|\/\/) /,
          `${job.what}: the header is a comment: ${first}`,
        );
        assert.equal(first.replace(/^(#|;|\/\/) /, ""), header, `${job.what}: ${first}`);
        rendered.push(job.what);
      } else {
        assert.equal(r.code, 2, `${job.what}: ${r.stderr}`);
        assert.equal(r.stdout, "", `${job.what}: nothing on stdout`);
        assert.equal(r.stderr.trim().split("\n").length, 1, `${job.what}: ${r.stderr}`);
        assert.match(r.stderr, /^fanout: /);
      }
    });
    for (const must of ["rsyncd --role primary", "rsyncd --role replica", "systemd --role proxy"]) {
      assert.ok(rendered.includes(must), `${must} renders (rendered: ${rendered.join(", ")})`);
    }
  });
});
