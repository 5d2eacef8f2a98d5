// A hostile relay (a replica with replicas behind it) against the primary's
// fleet view: the primary reads the relay's /status to show the replicas
// behind it, and that JSON reaches the HTML page and `/fleet.json`.

import assert from "node:assert/strict";
import { http, waitFor, withLab } from "./_helpers.ts";

Deno.test("fleet view: a relay's /status cannot put markup into the fleet page", async () => {
  await withLab(async (lab) => {
    await lab.fleet({ replicas: ["rsync2", { name: "rsync3", upstream: "rsync2" }] });
    const relay = lab.hosts.rsync2;
    // rsync2 is hostile: its health port answers what it likes.
    const evil = {
      role: "replica",
      name: "rsync2",
      replicas: [{
        name: "rsync3",
        state: "ok",
        version: {
          seq: '<img src=x onerror="alert(document.cookie)">',
          commit: "c0ffee00",
          ref: "main",
          published_at: "2026-01-01T00:00:00Z",
        },
        lag_s: 0,
        last_error: null,
      }],
    };
    const ac = new AbortController();
    const fake = Deno.serve(
      { hostname: relay.ip, port: relay.health, signal: ac.signal, onListen() {} },
      () => Response.json(evil),
    );
    try {
      await lab.server("primary", "rsync1");
      const page = `http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/fleet`;
      let body = "";
      await waitFor("the page shows rsync3 as the relay's /status has it", async () => {
        const r = await http(page);
        body = r.body;
        // Read once the relay has been polled: no longer "no status yet".
        return r.status !== 200 ||
          (/data-name="rsync3"/.test(body) && !/no status yet from rsync2/.test(body));
      }, 20_000);
      assert.doesNotMatch(body, /<img src=x/, "the relay's markup is in the page as is");
      const json = await http(
        `http://${lab.hosts.rsync1.ip}:${lab.hosts.rsync1.health}/fleet.json`,
      );
      assert.doesNotMatch(json.body, /<img src=x/, "the relay's invalid version is passed on");
    } finally {
      ac.abort();
      await fake.finished;
    }
  });
});
