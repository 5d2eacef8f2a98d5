// `fanout render report-token --name HOST`: the client's own token, derived
// from the primary's secret and a name a report can carry, alone on a line.
import assert from "node:assert/strict";
import { renderReportToken } from "./report_token.ts";
import { commonOptions, parseFleet } from "../config/mod.ts";
import { ConfigError, UsageError } from "../core/mod.ts";
import { hostToken } from "../report/mod.ts";

const opts = commonOptions({ logLevel: "warn" });
const FLEET = `tree: plugins
primary: {name: rsync1, address: 10.0.0.2, path: /srv/plugins}
`;

async function withSecret(fn: (fleet: Awaited<ReturnType<typeof parseFleet>>) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "fanout-token-" });
  try {
    const fleet = await parseFleet(FLEET, "/etc/fanout/fanout.yaml");
    fleet.auth.reportTokenFile = `${dir}/report.token`;
    await fn(fleet);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("report-token: the token of the named client, alone on its line, one per name", async () => {
  await withSecret(async (fleet) => {
    await Deno.writeTextFile(fleet.auth.reportTokenFile, "primary-secret\n", { mode: 0o600 });
    await Deno.chmod(fleet.auth.reportTokenFile, 0o600);
    const web1 = await renderReportToken({ fleet, opts: { ...opts, name: "web1" } });
    assert.equal(web1, `${await hostToken("primary-secret", "web1")}\n`);
    assert.equal(web1.trim().split("\n").length, 1);
    const web2 = await renderReportToken({ fleet, opts: { ...opts, name: "web2" } });
    assert.notEqual(web1, web2);
    assert.ok(!web1.includes("primary-secret"), "the secret itself is not in it");
  });
});

Deno.test("report-token: no --name, or a name no report can carry, is a usage error", async () => {
  await withSecret(async (fleet) => {
    await assert.rejects(
      async () => await renderReportToken({ fleet, opts }),
      (e) => e instanceof UsageError && /needs --name HOST/.test(e.message),
    );
    for (
      const name of ["web 1", "web1\n", "-web1", "../web1", "web1\x1b[2J", "x".repeat(254), "wéb1"]
    ) {
      await assert.rejects(
        async () => await renderReportToken({ fleet, opts: { ...opts, name } }),
        (e) => e instanceof UsageError && /is not a name a client can report as/.test(e.message),
        JSON.stringify(name.slice(0, 20)),
      );
    }
  });
});

Deno.test("report-token: without the primary's secret, a config error saying where to run it", async () => {
  await withSecret(async (fleet) => {
    await assert.rejects(
      async () => await renderReportToken({ fleet, opts: { ...opts, name: "web1" } }),
      (e) =>
        e instanceof ConfigError &&
        /auth\.report_token_file: .* does not exist: run this on the primary/.test(e.message),
    );
  });
});

Deno.test("report-token: takes no --role", () => {
  assert.throws(() => renderReportToken.checkRole?.("client"), UsageError);
  renderReportToken.checkRole?.(undefined);
});
