// Durations as the fleet file writes them: a number and a unit, nothing else.
import assert from "node:assert/strict";
import { DURATION_MAX, durationTooLong, formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration: every unit, fractions and surrounding blanks", () => {
  const table: [string, number][] = [
    ["200ms", 200],
    ["2s", 2000],
    ["1.5s", 1500],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
    ["0s", 0],
    ["0.0004s", 0],
    ["  5m\n", 300_000],
  ];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, JSON.stringify(text));
});

Deno.test("parseDuration: a bare number, a bad unit or any other text is null", () => {
  for (
    const text of [
      "30",
      "",
      "s",
      "5 m",
      "5M",
      "5min",
      "-5s",
      "+5s",
      ".5s",
      "5.s",
      "1e3s",
      "0x10s",
      "5s5s",
      "5m\x00",
      "5\u00a0m",
      "٥s", // a digit of another script
      "5s".repeat(10_000),
    ]
  ) {
    assert.equal(parseDuration(text), null, JSON.stringify(text.slice(0, 20)));
  }
});

Deno.test("parseDuration: nothing longer than a timer can wait (2^31-1 ms), Infinity least of all", () => {
  assert.equal(DURATION_MAX, 2_147_483_647);
  assert.equal(parseDuration("2147483647ms"), DURATION_MAX);
  assert.equal(parseDuration("24d"), 2_073_600_000);
  const tooLong = [
    "2147483648ms",
    "25d",
    "596.6h",
    "9".repeat(400) + "s",
    "1" + "0".repeat(30) + "ms",
  ];
  for (const text of tooLong) {
    assert.equal(parseDuration(text), null, text.slice(0, 20));
    assert.equal(
      durationTooLong(text),
      "is too long: the most is 2147483647ms (about 24.8 days)",
      text.slice(0, 20),
    );
  }
  for (const text of ["24d", "2147483647ms", "soon", "30", "-99999d"]) {
    assert.equal(durationTooLong(text), undefined, text);
  }
});

Deno.test("formatDuration: ms below a second, then s, m and h, trailing zeros dropped", () => {
  const table: [number, string][] = [
    [0, "0ms"],
    [849.6, "850ms"],
    [999, "999ms"],
    [1000, "1s"],
    [1234, "1.2s"],
    [9_949, "9.9s"],
    [12_345, "12s"],
    [59_000, "59s"],
    [60_000, "1m"],
    [90_000, "1.5m"],
    [3_600_000, "1h"],
    [5_400_000, "1.5h"],
    [86_400_000, "24h"],
  ];
  for (const [ms, text] of table) assert.equal(formatDuration(ms), text, String(ms));
});

Deno.test("formatDuration reads back through parseDuration where it is exact", () => {
  for (const ms of [5, 1000, 1500, 60_000, 90_000, 3_600_000, 7_200_000]) {
    assert.equal(parseDuration(formatDuration(ms)), ms, formatDuration(ms));
  }
});
