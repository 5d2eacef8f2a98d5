import assert from "node:assert/strict";
import { parseCli } from "./cli.ts";

function opts(argv: string[]) {
  const c = parseCli(argv);
  assert.ok("opts" in c, argv.join(" "));
  return c.opts;
}

Deno.test("cli: switches become typed options, false when not given", () => {
  const none = opts(["--role", "client"]);
  for (const k of ["check", "watch", "rollback", "adopt", "json", "verbose", "noSplay"] as const) {
    assert.equal(none[k], false, k);
  }
  const client = opts(["--role", "client", "--check", "--json", "--no-splay", "-v"]);
  assert.deepEqual(
    [client.check, client.json, client.noSplay, client.verbose, client.watch],
    [true, true, true, true, false],
  );
  assert.equal(opts(["--role", "primary", "--allow-mass-delete"]).allowMassDelete, true);
  assert.equal(opts(["--role", "publish", "--force"]).force, true);
  assert.equal(opts(["fleet", "--json"]).json, true);
});

Deno.test("cli: the demo's --duration is read once, as milliseconds", () => {
  assert.equal(opts(["demo"]).duration, null);
  assert.equal(opts(["demo", "--duration", "30s"]).duration, 30_000);
  assert.equal(opts(["demo", "--keep-dir"]).keepDir, true);
  assert.throws(
    () => parseCli(["demo", "--duration", "soon"]),
    /--duration: expected a duration like "30s" or "2m", got "soon"/,
  );
  assert.throws(
    () => parseCli(["demo", "--duration", "30d"]),
    /--duration: "30d" is too long: the most is 2147483647ms/,
  );
});

Deno.test("cli: a key flag's help is the key's own line, path and default", () => {
  const proxy = parseCli(["--role", "proxy", "--help"]);
  assert.equal(proxy.kind, "help");
  if (proxy.kind !== "help") return;
  assert.match(
    proxy.text,
    /--listen IP:PORT +where clients connect \(proxy\.listen, default 0\.0\.0\.0:873\)/,
  );
  const primary = parseCli(["--role", "primary", "--help"]);
  if (primary.kind !== "help") return;
  assert.match(
    primary.text,
    /--listen IP:PORT +where its rsync daemon listens \(primary\.listen\)/,
  );
  assert.match(
    primary.text,
    /--concurrency N +replicas pushed to at once \(push\.concurrency, default 8\)/,
  );
});
