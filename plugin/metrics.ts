/**
 * The hub's figures as Prometheus metrics: `GET /ws/metrics` renders them in the text format
 * 0.0.4 with no dependency, and `registerHubMetrics` hands them to an app's own registry
 * (prom-client's `Registry`, or anything with its `registerMetric`).
 *
 * @module
 */
import { CLUSTER_FIGURES, STATS_FIGURES, type StatsFigure } from './figures.ts';
import type { HubStats } from './stats.ts';

/** The content type of the Prometheus text format the metrics route serves. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Upper bounds of the batch size histogram (updates per `batch_update`). */
export const BATCH_SIZE_BUCKETS: readonly number[] = [2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** Upper bounds of the publish-to-send delay histogram, in seconds. */
export const SEND_DELAY_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A histogram kept by the hub: per-bucket counts (not cumulative), the sum and the count.
 */
export interface Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum: number;
  count: number;
}

/**
 * Creates an empty histogram.
 *
 * @internal
 */
export const createHistogram = (bounds: readonly number[]): Histogram => ({
  bounds,
  counts: bounds.map(() => 0),
  sum: 0,
  count: 0,
});

/**
 * Records one value: O(buckets), no allocation.
 *
 * @internal
 */
export function observe(histogram: Histogram, value: number): void {
  histogram.sum += value;
  histogram.count++;
  const { bounds, counts } = histogram;
  for (let i = 0; i < bounds.length; i++) {
    if (value <= (bounds[i] as number)) {
      (counts[i] as number)++;
      return;
    }
  }
}

/** One sample of a metric family, in prom-client's shape. */
export interface MetricSample {
  /** Set for the series of a histogram (`_bucket`, `_sum`, `_count`); else the family's name. */
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * One metric family, in the shape prom-client's `Registry` reads from a metric's `get()`.
 */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** How prom-client's cluster aggregation combines workers' values. */
  aggregator: 'sum' | 'first';
  values: MetricSample[];
}

/**
 * What the hub hands to `hubMetricFamilies`: its stats (with `cluster` when the broker spans
 * several instances) and its histograms.
 *
 * @internal
 */
export interface HubFigures {
  readonly stats: HubStats;
  readonly batchSize: Histogram;
  readonly sendDelay: Histogram;
}

const PREFIX = 'hono_agent_ws_';

const histogramSamples = (name: string, histogram: Histogram): MetricSample[] => {
  const samples: MetricSample[] = [];
  let cumulative = 0;
  histogram.bounds.forEach((bound, i) => {
    cumulative += histogram.counts[i] as number;
    samples.push({ metricName: `${name}_bucket`, labels: { le: bound }, value: cumulative });
  });
  samples.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: histogram.count });
  samples.push({ metricName: `${name}_sum`, labels: {}, value: histogram.sum });
  samples.push({ metricName: `${name}_count`, labels: {}, value: histogram.count });
  return samples;
};

/** A metric family's help: the figure's own, else its description. */
const helpOf = (figure: StatsFigure): string => figure.help ?? figure.description;

/** The samples of one stats figure. */
const figureSamples = (figure: (typeof STATS_FIGURES)[number], stats: HubStats): MetricSample[] => {
  switch (figure.value) {
    case 'id':
      return [{ labels: { instance_id: stats.instance_id }, value: 1 }];
    case 'timestamp':
      return [{ labels: {}, value: Date.parse(stats.started_at) / 1000 }];
    case 'by_kind': {
      const counts = stats[figure.name] as Readonly<Record<string, number>>;
      return figure.kinds.map((kind) => ({ labels: { kind }, value: counts[kind] ?? 0 }));
    }
    case 'count':
      return [{ labels: {}, value: stats[figure.name] }];
  }
};

/** The identity first (`info`, `start_time_seconds`), then the figures in the stats' order. */
const METRIC_FIGURES = [
  ...STATS_FIGURES.filter((figure) => figure.value === 'id' || figure.value === 'timestamp'),
  ...STATS_FIGURES.filter((figure) => figure.value === 'count' || figure.value === 'by_kind'),
].filter((figure) => figure.metric !== undefined);

/** The histograms the hub keeps (names without the `hono_agent_ws_` prefix), after the stats figures. */
export const HISTOGRAMS = [
  { name: 'batch_size_updates', help: 'Updates per batch_update frame built.' },
  {
    name: 'send_delay_seconds',
    help: 'Seconds from an update accepted by publish to the frame carrying it written to its sockets (live frames, once per frame per agent, from the oldest update in the frame).',
  },
] as const;

/**
 * The hub's figures as metric families, named after Prometheus conventions (base units,
 * `_total` on counters): one per figure of `STATS_FIGURES` and `CLUSTER_FIGURES` with a
 * metric, and the histograms. The `cluster_*` families have no sample unless the stats carry
 * `cluster`.
 *
 * @internal
 */
export function hubMetricFamilies({ stats, batchSize, sendDelay }: HubFigures): MetricFamily[] {
  const families: MetricFamily[] = [];
  for (const figure of METRIC_FIGURES) {
    families.push({
      name: PREFIX + figure.metric,
      help: helpOf(figure),
      type: figure.type,
      // Each worker's start time is its own: prom-client's cluster aggregation takes one.
      aggregator: figure.value === 'timestamp' ? 'first' : 'sum',
      values: figureSamples(figure, stats),
    });
  }
  const histograms = [batchSize, sendDelay];
  HISTOGRAMS.forEach(({ name, help }, i) => {
    const values = histogramSamples(PREFIX + name, histograms[i] as Histogram);
    families.push({ name: PREFIX + name, help, type: 'histogram', aggregator: 'sum', values });
  });
  const { cluster } = stats;
  for (const figure of CLUSTER_FIGURES) {
    // The same figure on every worker: prom-client's cluster aggregation takes one.
    const values = cluster ? [{ labels: {}, value: cluster[figure.name] ?? 0 }] : [];
    families.push({
      name: PREFIX + figure.metric,
      help: helpOf(figure),
      type: figure.type,
      aggregator: 'first',
      values,
    });
  }
  return families;
}

/** The names of every family, in output order; fixed, so a registry can take them up front. */
export const METRIC_NAMES: readonly string[] = [
  ...METRIC_FIGURES.map((figure) => figure.metric),
  ...HISTOGRAMS.map((histogram) => histogram.name),
  ...CLUSTER_FIGURES.map((figure) => figure.metric),
].map((name) => PREFIX + name);

const escapeHelp = (text: string) => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (text: string) => text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const formatValue = (value: number) =>
  Number.isNaN(value) ? 'NaN' : value === Infinity ? '+Inf' : value === -Infinity ? '-Inf' : String(value);

/**
 * Renders metric families in the Prometheus text format 0.0.4. Families without samples are
 * left out.
 *
 * @param families The families.
 *
 * @returns The exposition, ending with a newline.
 */
export function renderPrometheus(families: readonly MetricFamily[]): string {
  let text = '';
  for (const { name, help, type, values } of families) {
    if (values.length === 0) continue;
    text += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
    for (const sample of values) {
      const labels = Object.entries(sample.labels).map(
        ([label, value]) => `${label}="${escapeLabel(typeof value === 'number' ? formatValue(value) : value)}"`,
      );
      text += `${sample.metricName ?? name}${labels.length > 0 ? `{${labels.join(',')}}` : ''} ${formatValue(sample.value)}\n`;
    }
  }
  return text;
}

/**
 * What `registerHubMetrics` needs of a registry: prom-client's `Registry` has it.
 */
export interface MetricRegistry {
  /** Takes a `RegisteredMetric` (typed `never` so prom-client's generic signature fits). */
  registerMetric(metric: never): void;
}

/**
 * A metric as `registerHubMetrics` registers it: what prom-client's `Registry` reads
 * (`name`, `help`, `type`, `aggregator`, `get()`), computed at each scrape.
 */
export interface RegisteredMetric {
  readonly name: string;
  readonly help: string;
  readonly type: MetricFamily['type'];
  readonly aggregator: MetricFamily['aggregator'];
  get(): Promise<MetricFamily>;
  /** prom-client calls it on `registry.resetMetrics()`; the hub's counters are not reset. */
  reset(): void;
}

/**
 * Something that serves metric families: an `AgentHub`.
 */
export interface MetricSource {
  metrics(): Promise<MetricFamily[]>;
}

/**
 * Registers the hub's metrics in an app's registry (prom-client's `Registry`, or anything with
 * its `registerMetric`), so its `/metrics` serves them next to the app's own. Nothing is copied
 * or polled: each scrape reads the hub once for all its families. prom-client is not imported:
 * the registry passed in is all this needs.
 *
 * @param hub The hub.
 * @param registry The registry, e.g. `new Registry()` or prom-client's default `register`.
 *
 * @returns The metrics registered, one per family.
 *
 * @example
 * ```ts
 * import { register } from 'prom-client';
 * registerHubMetrics(hub, register);
 * ```
 */
export function registerHubMetrics(hub: MetricSource, registry: MetricRegistry): RegisteredMetric[] {
  // One read of the hub per scrape: the registry asks every metric at once.
  let pending: Promise<MetricFamily[]> | undefined;
  const read = (): Promise<MetricFamily[]> => {
    if (!pending) {
      const current = hub.metrics();
      pending = current;
      const clear = () => {
        if (pending === current) pending = undefined;
      };
      current.then(clear, clear);
    }
    return pending;
  };
  const families = hubMetricFamilies({
    stats: placeholderStats,
    batchSize: createHistogram(BATCH_SIZE_BUCKETS),
    sendDelay: createHistogram(SEND_DELAY_BUCKETS),
  });
  const metrics = families.map(
    ({ name, help, type, aggregator }): RegisteredMetric => ({
      name,
      help,
      type,
      aggregator,
      async get() {
        const family = (await read()).find((candidate) => candidate.name === name);
        return { name, help, type, aggregator, values: family?.values ?? [] };
      },
      reset() {},
    }),
  );
  for (const metric of metrics) registry.registerMetric(metric as never);
  return metrics;
}

/** Stats with nothing in them: only the families' names, help and types are read from it. */
const placeholderStats = Object.fromEntries(
  STATS_FIGURES.map((figure) => [
    figure.name,
    figure.value === 'count'
      ? 0
      : figure.value === 'timestamp'
        ? new Date(0).toISOString()
        : figure.value === 'id'
          ? ''
          : Object.fromEntries((figure.kinds ?? []).map((kind) => [kind, 0])),
  ]),
) as HubStats;

/**
 * Every metric family's name, type and help, in output order: what a registry or a docs table
 * needs, without a hub.
 */
export const METRIC_DESCRIPTIONS: readonly Pick<MetricFamily, 'name' | 'type' | 'help'>[] = hubMetricFamilies({
  stats: placeholderStats,
  batchSize: createHistogram(BATCH_SIZE_BUCKETS),
  sendDelay: createHistogram(SEND_DELAY_BUCKETS),
}).map(({ name, type, help }) => ({ name, type, help }));
