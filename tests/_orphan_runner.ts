// A stand-in for a test runner that dies mid-run: it starts a lab's primary
// (and so its rsync daemon), prints what it started as one JSON line, and
// waits to be killed. Used by tests/orphans_test.ts; never closes its lab.
import { Lab } from "./_helpers.ts";

const lab = await Lab.create();
await lab.fleet({ replicas: ["rsync2"], push: { reconcile: "1h" } });
await Deno.writeTextFile(`${lab.hosts.rsync1.path}/a.txt`, "a\n");
const primary = await lab.server("primary", "rsync1");
const daemon = Number(await Deno.readTextFile(`${lab.dir}/state/rsync1/rsyncd.pid`));
console.log(JSON.stringify({ dir: lab.dir, primary: primary.pid, daemon }));
await new Promise(() => {}); // until SIGKILL
