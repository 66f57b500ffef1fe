// Lean counters, gauges and histograms for the per-request series. prom-client's children
// still hash their label set (a new string) and validate it on every inc/observe; here a
// series is resolved once and an update is only arithmetic on its own fields. The families
// register in a prom-client Registry, which renders them exactly as prom-client's own
// metrics (same value shapes as counter.js / histogram.js produce).
import type { Aggregator, Metric, Registry } from 'prom-client';

export type Labels = Readonly<Record<string, string>>;

/** One exposed sample, as prom-client metrics return them from get(). */
export interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
  sharedLabels?: Labels;
}

export interface Snapshot {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
  aggregator: Aggregator;
}

const NO_LABELS: Record<string, never> = Object.freeze({});

interface Clearable {
  readonly labels: Labels;
  clear(): void;
}

abstract class Family<S extends Clearable> {
  abstract readonly type: Snapshot['type'];
  readonly aggregator: Aggregator = 'sum';
  /** Series updated at least once, in that order: like prom-client, a series shows from its first update. */
  protected readonly live: S[] = [];
  private readonly byKey = new Map<string, S>();

  constructor(
    registry: Registry,
    // Not readonly: Registry.metrics() renames counters when set to OpenMetrics.
    public name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of these label values (in labelNames order). Cold path: callers cache it. */
  child(...values: string[]): S {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name}: expected labels ${this.labelNames.join(', ')}, got ${values.length} values`);
    }
    const key = values.join('\u0000');
    let s = this.byKey.get(key);
    if (!s) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]!));
      this.byKey.set(key, (s = this.create(labels)));
    }
    return s;
  }

  /** @internal First update of a series. */
  wake(s: S): void {
    this.live.push(s);
  }

  /** As prom-client's reset(): every series disappears until updated again. */
  reset(): void {
    for (const s of this.live) s.clear();
    this.live.length = 0;
  }

  protected abstract create(labels: Labels): S;
  protected abstract samples(): Sample[];

  get(): Promise<Snapshot> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator });
  }
}

function badCount(v: number): Error {
  return v < 0 ? new Error('It is not possible to decrease a counter') : new TypeError(`Value is not a valid number: ${v}`);
}

/** A series holding one number; it appears on /metrics once first written (as in prom-client). */
abstract class ValueSeries implements Clearable {
  value = 0;
  private live = false;
  constructor(
    private readonly family: Family<Clearable>,
    readonly labels: Labels,
  ) {}

  protected write(v: number): void {
    this.value = v;
    if (!this.live) {
      this.live = true;
      this.family.wake(this);
    }
  }

  clear(): void {
    this.value = 0;
    this.live = false;
  }
}

export class CounterSeries extends ValueSeries {
  inc(v = 1): void {
    if (!(v >= 0 && v !== Infinity)) throw badCount(v);
    this.write(this.value + v);
  }
}

export class GaugeSeries extends ValueSeries {
  inc(v = 1): void {
    this.write(this.value + v);
  }

  dec(v = 1): void {
    this.write(this.value - v);
  }

  set(v: number): void {
    this.write(v);
  }
}

export class HistogramSeries implements Clearable {
  /** Observations per bucket, not cumulative; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private live = false;
  constructor(
    private readonly family: Family<HistogramSeries>,
    private readonly bounds: Float64Array,
    readonly labels: Labels,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${v}`);
    // First bound >= v (le is inclusive); bounds.length means +Inf.
    const b = this.bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v <= b[mid]!) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]! += 1;
    this.sum += v;
    this.count += 1;
    if (!this.live) {
      this.live = true;
      this.family.wake(this);
    }
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.live = false;
  }
}

export class CounterFamily extends Family<CounterSeries> {
  readonly type = 'counter';
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(this, labels);
  }
  protected samples(): Sample[] {
    return this.live.map((s) => ({ value: s.value, labels: s.labels }));
  }
}

export class GaugeFamily extends Family<GaugeSeries> {
  readonly type = 'gauge';
  protected create(labels: Labels): GaugeSeries {
    return new GaugeSeries(this, labels);
  }
  protected samples(): Sample[] {
    return this.live.map((s) => ({ value: s.value, labels: s.labels }));
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;
  /** `le` label objects built once; the registry only reads them. */
  private readonly le: ReadonlyArray<{ le: number | string }>;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    if (labelNames.includes('le')) throw new Error('le is a reserved label keyword');
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`${name}: buckets must increase`);
    }
    super(registry, name, help, labelNames);
    this.bounds = Float64Array.from(buckets);
    this.le = [...buckets.map((le) => ({ le })), { le: '+Inf' }];
  }

  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(this, this.bounds, labels);
  }

  /**
   * prom-client's histogram layout: per series, cumulative `_bucket` samples with `le` first and
   * the series labels as sharedLabels (which the registry formats once per labels object),
   * then `_sum` and `_count`.
   */
  protected samples(): Sample[] {
    const bucket = `${this.name}_bucket`;
    const sum = `${this.name}_sum`;
    const count = `${this.name}_count`;
    const out: Sample[] = [];
    for (const s of this.live) {
      let acc = 0;
      for (let i = 0; i < this.le.length; i++) {
        acc += s.counts[i]!;
        out.push({ value: acc, labels: this.le[i]!, metricName: bucket, sharedLabels: s.labels });
      }
      out.push({ value: s.sum, labels: NO_LABELS, metricName: sum, sharedLabels: s.labels });
      out.push({ value: s.count, labels: NO_LABELS, metricName: count, sharedLabels: s.labels });
    }
    return out;
  }

  /** Registry.metrics() prefers this: shared label objects, no per-sample label merge. */
  async getForPromString(): Promise<Snapshot> {
    return super.get();
  }

  /** As prom-client's get(): each sample's labels merged into one fresh object (le first). */
  override async get(): Promise<Snapshot> {
    const snap = await super.get();
    for (const v of snap.values) {
      v.labels = { ...v.labels, ...v.sharedLabels };
      delete v.sharedLabels;
    }
    return snap;
  }
}
