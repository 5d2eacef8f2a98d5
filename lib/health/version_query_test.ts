// The /version query is read strictly: only after and wait, each once, in their shapes.
import assert from "node:assert/strict";
import { MAX_QUERY, MAX_WAIT_MS, parseVersionQuery } from "./version_query.ts";

Deno.test("version query: after and wait, in any order; no wait is 0; a long wait is cut to the cap", () => {
  assert.deepEqual(parseVersionQuery(""), { after: null, waitMs: 0 });
  assert.deepEqual(parseVersionQuery("after=41&wait=30"), { after: 41, waitMs: 30_000 });
  assert.deepEqual(parseVersionQuery("wait=0.25&after=-1"), { after: -1, waitMs: 250 });
  assert.deepEqual(parseVersionQuery("after=0"), { after: 0, waitMs: 0 });
  assert.deepEqual(parseVersionQuery("after=5&wait=999"), { after: 5, waitMs: MAX_WAIT_MS });
  assert.deepEqual(parseVersionQuery("after=5&wait=10", 2000), { after: 5, waitMs: 2000 });
});

Deno.test("version query: anything else is a 400 with one line, a long query a 414", () => {
  const refused = (q: string) => {
    const r = parseVersionQuery(q);
    assert.ok("why" in r, `${q} was accepted`);
    assert.doesNotMatch(r.why, /\n/);
    return [r.status, r.why];
  };
  for (
    const q of ["after=", "after=x", "after=-2", "after=01", "after=1.5", "after=9007199254740993"]
  ) {
    assert.deepEqual(refused(q), [400, "after must be a seq: -1 or an integer from 0"], q);
  }
  for (const q of ["wait=", "wait=-1", "wait=1e3", "wait=1000", "wait=1.2345", "wait=NaN"]) {
    assert.deepEqual(refused(q), [400, "wait must be seconds: a number from 0 to 999.999"], q);
  }
  assert.deepEqual(refused("after=1&after=1"), [400, "after given twice"]);
  assert.deepEqual(refused("after"), [400, "after must be a seq: -1 or an integer from 0"]);
  for (const q of ["x=1", "after=1&", "&", "after%3D1", "AFTER=1"]) {
    assert.deepEqual(refused(q), [400, "unknown parameter: only after and wait are read"], q);
  }
  assert.deepEqual(refused("after=1&x=" + "y".repeat(MAX_QUERY)), [
    414,
    `query longer than ${MAX_QUERY} bytes`,
  ]);
});
