import assert from "node:assert/strict";
import { markerFromScan, stampMarker } from "./marker_stamp.ts";

const MARKER = ".fanout-version";
const AT = "2026-11-25T10:20:30.456Z";
const text = JSON.stringify({ seq: 3, commit: "c0ffee3", ref: "main", published_at: AT }) + "\n";

Deno.test("marker stamp: stamped, unstamped, older by its mtime, whole seconds, absent, invalid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/${MARKER}`;
    const mtime = (ms: number) => Deno.utimeSync(file, new Date(ms), new Date(ms));
    assert.equal(markerFromScan(dir), true, "no marker");

    await Deno.writeTextFile(file, text);
    assert.equal(markerFromScan(dir), true, "written now, not stamped (an older server)");
    stampMarker(file);
    assert.equal(Deno.statSync(file).mtime?.getTime(), Date.parse(AT));
    assert.equal(markerFromScan(dir), true, "stamped");

    // The mtime of an older version's marker, as a listing made before this
    // version landed gives it.
    mtime(Date.parse(AT) - 1);
    assert.equal(markerFromScan(dir), false, "1 ms older than its content");
    mtime(Date.parse(AT) - 60_000);
    assert.equal(markerFromScan(dir), false, "a minute older");
    // A file system keeping whole seconds: the stamp's second still counts.
    mtime(Math.floor(Date.parse(AT) / 1000) * 1000);
    assert.equal(markerFromScan(dir), true, "truncated to its second");
    mtime(Math.floor(Date.parse(AT) / 1000) * 1000 - 1000);
    assert.equal(markerFromScan(dir), false, "the second before");

    await Deno.writeTextFile(file, "not a marker\n");
    stampMarker(file);
    mtime(0);
    assert.equal(markerFromScan(dir), true, "not a marker: nothing to tell");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
