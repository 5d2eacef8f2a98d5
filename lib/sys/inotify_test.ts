// The watcher's inotify source on a real temp dir: what a racing rm -rf does
// to a list of directories to watch.
import assert from "node:assert/strict";
import { InotifySource, type RawEvent } from "./inotify.ts";
import { openLibc } from "./libc.ts";

Deno.test({
  name: "inotify: a directory removed between the walk and its watch is skipped, not an error",
  // libc stays open for the life of the process, as it does in fanout.
  sanitizeResources: false,
  fn: async () => {
    const libc = openLibc();
    if (typeof libc === "string") return console.log(`skipped: ${libc}`);
    const dir = await Deno.makeTempDir();
    const events: RawEvent[] = [];
    const fallbacks: string[] = [];
    const src = new InotifySource(libc, (e) => events.push(...e), (why) => fallbacks.push(why));
    try {
      await Deno.mkdir(`${dir}/kept`);
      // Listed by the walk, gone before its watch: what an rm -rf racing a re-walk does.
      await src.watch([dir, `${dir}/gone`, `${dir}/kept`]);
      await Deno.writeTextFile(`${dir}/kept/a.txt`, "a\n");
      // The kernel queues the event before the write returns.
      await src.drain();
      assert.ok(
        events.some(([, paths]) => paths.includes(`${dir}/kept/a.txt`)),
        "an event from the watch after the gone one",
      );
      assert.deepEqual(fallbacks, [], "no fall back to polling");
    } finally {
      await src.terminate();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
