// /metrics in Prometheus' text format: one HELP and TYPE per family, a line
// per series, label values escaped so no value can start a line of its own.
import assert from "node:assert/strict";
import { Counter, Gauge, Histogram, Registry } from "./metrics.ts";

/** The lines of `text` that are not the two memory gauges every registry has. */
const own = (text: string) =>
  text.split("\n").filter((l) => l && !/process_resident_memory_bytes|fanout_heap_used/.test(l));

Deno.test("counter: series by labels, in any key order; 0 before the first inc", () => {
  const c = new Counter("fanout_pushes_total", "Pushes.");
  assert.deepEqual(c.render(), ["fanout_pushes_total 0"]);
  c.inc({ replica: "rsync2", kind: "scoped" });
  c.inc({ kind: "scoped", replica: "rsync2" }, 2);
  c.inc({ replica: "rsync3", kind: "full" });
  assert.equal(c.get({ kind: "scoped", replica: "rsync2" }), 3);
  assert.equal(c.get({ replica: "nobody" }), 0);
  assert.deepEqual(c.render(), [
    'fanout_pushes_total{replica="rsync2",kind="scoped"} 3',
    'fanout_pushes_total{replica="rsync3",kind="full"} 1',
  ]);
});

Deno.test("counter and gauge: collect reads the values at scrape time", () => {
  let n = 1;
  const c = new Counter("fanout_bytes_total", "Bytes.", () => [[{ dir: "in" }, n]]);
  assert.deepEqual(c.render(), ['fanout_bytes_total{dir="in"} 1']);
  n = 5;
  assert.deepEqual(c.render(), ['fanout_bytes_total{dir="in"} 5']);
  const g = new Gauge("fanout_up", "Up.", () => [[{}, 1], [{ name: "b" }, 0]]);
  assert.deepEqual(g.render(), ["fanout_up 1", 'fanout_up{name="b"} 0']);
  const set = new Gauge("fanout_lag_seconds", "Lag.");
  assert.deepEqual(set.render(), []);
  set.set({ replica: "r" }, 2.5);
  set.set({ replica: "r" }, 1);
  assert.deepEqual(set.render(), ['fanout_lag_seconds{replica="r"} 1']);
});

Deno.test("histogram: cumulative buckets, +Inf, sum and count per series", () => {
  const h = new Histogram("fanout_push_seconds", "Push time.", [0.1, 1, 10]);
  for (const v of [0.05, 0.1, 0.5, 20]) h.observe(v, { replica: "r" });
  h.observe(0.3333333333);
  assert.deepEqual(h.render(), [
    'fanout_push_seconds_bucket{replica="r",le="0.1"} 2',
    'fanout_push_seconds_bucket{replica="r",le="1"} 3',
    'fanout_push_seconds_bucket{replica="r",le="10"} 3',
    'fanout_push_seconds_bucket{replica="r",le="+Inf"} 4',
    'fanout_push_seconds_sum{replica="r"} 20.65',
    'fanout_push_seconds_count{replica="r"} 4',
    'fanout_push_seconds_bucket{le="0.1"} 0',
    'fanout_push_seconds_bucket{le="1"} 1',
    'fanout_push_seconds_bucket{le="10"} 1',
    'fanout_push_seconds_bucket{le="+Inf"} 1',
    "fanout_push_seconds_sum 0.333333",
    "fanout_push_seconds_count 1",
  ]);
});

Deno.test("labels: backslash, quote and newline are escaped; every series stays one line", () => {
  const c = new Counter("fanout_reports_total", "Reports.");
  c.inc({ host: 'web1"} 999\nfanout_fake 1\\' });
  assert.deepEqual(c.render(), [
    'fanout_reports_total{host="web1\\"} 999\\nfanout_fake 1\\\\"} 1',
  ]);
});

Deno.test("registry: HELP and TYPE per family, in order; a name registered twice throws", () => {
  const m = new Registry();
  m.counter("fanout_a_total", "A things.").inc();
  m.gauge("fanout_b", "B.").set({}, 7);
  m.histogram("fanout_c_seconds", "C.", [1]);
  assert.deepEqual(own(m.render()), [
    "# HELP fanout_a_total A things.",
    "# TYPE fanout_a_total counter",
    "fanout_a_total 1",
    "# HELP fanout_b B.",
    "# TYPE fanout_b gauge",
    "fanout_b 7",
    "# HELP fanout_c_seconds C.",
    "# TYPE fanout_c_seconds histogram",
  ]);
  assert.ok(m.render().endsWith("\n"));
  assert.throws(() => m.gauge("fanout_a_total", "again"), /metric fanout_a_total registered twice/);
});

Deno.test("registry: every registry reports the process's memory", () => {
  const text = new Registry().render();
  for (const name of ["process_resident_memory_bytes", "fanout_heap_used_bytes"]) {
    const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
    assert.ok(m && Number(m[1]) > 0, `${name} in:\n${text}`);
    assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, "m"));
  }
});
