import assert from "node:assert/strict";
import { Logger } from "../core/mod.ts";
import { TreeWatcher } from "./mod.ts";

Deno.test({
  name: "watch: a burst of events says at once that some may be lost, before it settles",
  // libc, loaded once for inotify, stays loaded for the process.
  sanitizeResources: false,
}, async () => {
  const dir = await Deno.makeTempDir();
  const said: string[] = [];
  const watcher = new TreeWatcher({
    root: dir,
    excludes: [],
    stormEvents: 10,
    onChanges: () => {},
    onFull: () => said.push("full"),
    onLost: () => said.push("lost"),
    log: new Logger({ sink: () => {} }),
  });
  try {
    await watcher.start();
    for (let i = 0; i < 100; i++) await Deno.writeTextFile(`${dir}/f${i}`, "x");
    for (let i = 0; i < 400 && !said.includes("full"); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(said[0], "lost", JSON.stringify(said));
    assert(said.includes("full"));
  } finally {
    await watcher.close();
    await Deno.remove(dir, { recursive: true });
  }
});
