/**
 * Prometheus metrics in the text exposition format, with no dependency:
 * counters, gauges (set, or read from a callback at scrape time) and
 * histograms, each optionally labelled.
 *
 * @module
 */

/** Label names to values. */
export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  render(): string[];
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const all = Object.entries(labels);
  if (extra) all.push(extra);
  if (all.length === 0) return "";
  return `{${
    all.map(([k, v]) =>
      `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
    ).join(",")
  }}`;
}

const key = (labels: Labels) => JSON.stringify(Object.entries(labels).sort());

/**
 * A value that only goes up. With `collect`, the values are read at scrape
 * time (for totals a hot path keeps in plain fields, where `inc` would cost
 * too much per call).
 */
export class Counter implements Family {
  readonly type = "counter";
  #values = new Map<string, { labels: Labels; v: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly collect?: () => [Labels, number][],
  ) {}
  /** Adds `n` (default 1) to the series with `labels`. */
  inc(labels: Labels = {}, n = 1): void {
    const k = key(labels);
    const cur = this.#values.get(k);
    if (cur) cur.v += n;
    else this.#values.set(k, { labels, v: n });
  }
  /** The current value of one series. */
  get(labels: Labels = {}): number {
    return this.#values.get(key(labels))?.v ?? 0;
  }
  render(): string[] {
    if (this.collect) {
      return this.collect().map(([labels, v]) => `${this.name}${labelText(labels)} ${v}`);
    }
    if (this.#values.size === 0) return [`${this.name} 0`];
    return [...this.#values.values()].map((s) => `${this.name}${labelText(s.labels)} ${s.v}`);
  }
}

/** A value that goes up and down; `collect` reads it at scrape time. */
export class Gauge implements Family {
  readonly type = "gauge";
  #values = new Map<string, { labels: Labels; v: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly collect?: () => [Labels, number][],
  ) {}
  /** Sets the series with `labels`. */
  set(labels: Labels, v: number): void {
    this.#values.set(key(labels), { labels, v });
  }
  render(): string[] {
    const series = this.collect
      ? this.collect().map(([labels, v]) => ({ labels, v }))
      : [...this.#values.values()];
    return series.map((s) => `${this.name}${labelText(s.labels)} ${s.v}`);
  }
}

/** Observations counted into buckets (seconds, by convention). */
export class Histogram implements Family {
  readonly type = "histogram";
  #series = new Map<string, { labels: Labels; counts: number[]; sum: number; n: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  /** Records one observation. */
  observe(v: number, labels: Labels = {}): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) this.#series.set(k, s = { labels, counts: this.buckets.map(() => 0), sum: 0, n: 0 });
    this.buckets.forEach((b, i) => {
      if (v <= b) s.counts[i]++;
    });
    s.sum += v;
    s.n++;
  }
  render(): string[] {
    const out: string[] = [];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelText(s.labels, ["le", String(b)])} ${s.counts[i]}`)
      );
      out.push(`${this.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${s.n}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${+s.sum.toFixed(6)}`);
      out.push(`${this.name}_count${labelText(s.labels)} ${s.n}`);
    }
    return out;
  }
}

/**
 * A set of metrics rendered together for `/metrics`.
 *
 * @example
 * ```ts
 * const m = new Registry();
 * const pushes = m.counter("fanout_pushes_total", "Pushes to replicas.");
 * pushes.inc({ replica: "rsync2", kind: "scoped" });
 * console.log(m.render());
 * ```
 */
export class Registry {
  #families: Family[] = [];
  /** Every registry starts with the process's memory, the first thing to check on a leak. */
  constructor() {
    this.gauge(
      "process_resident_memory_bytes",
      "Resident memory of this fanout process.",
      () => [[{}, Deno.memoryUsage().rss]],
    );
    this.gauge("fanout_heap_used_bytes", "JavaScript heap in use.", () => [[
      {},
      Deno.memoryUsage().heapUsed,
    ]]);
  }
  counter(name: string, help: string, collect?: () => [Labels, number][]): Counter {
    return this.#add(new Counter(name, help, collect));
  }
  gauge(name: string, help: string, collect?: () => [Labels, number][]): Gauge {
    return this.#add(new Gauge(name, help, collect));
  }
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }
  /** The text exposition format. */
  render(): string {
    const lines: string[] = [];
    for (const f of this.#families) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.render());
    }
    return lines.join("\n") + "\n";
  }
  #add<T extends Family>(f: T): T {
    if (this.#families.some((x) => x.name === f.name)) {
      throw new Error(`metric ${f.name} registered twice`);
    }
    this.#families.push(f);
    return f;
  }
}
