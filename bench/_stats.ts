// Percentiles and the "p50 / p90 / max" cell the benchmarks print.

/** The `p`th percentile of `xs` (nearest rank, never past the largest). */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** `p50 / p90 / max` in whole ms, or "–" for no samples. */
export function spread(xs: number[]): string {
  if (!xs.length) return "–";
  return [pct(xs, 50), pct(xs, 90), Math.max(...xs)].map((x) => x.toFixed(0)).join(" / ");
}
