/**
 * The figures of the stats, once: the counters the hub keeps, the fields of `GET /ws/stats`,
 * and the Prometheus families of `GET /ws/metrics` are all read from these tables, so the docs
 * can be generated from them too.
 *
 * @module
 */
import { ERROR_KINDS } from './error-kinds.ts';

/**
 * Kinds of data given up to keep what the hub holds per agent within its byte limits; the
 * stats' `evictions_by_kind` counts each.
 */
export const EVICTION_KINDS = [
  // Whole offline queues dropped over `maxTotalQueueBytes` (their updates also count in
  // `messages_dropped`), the one that waited longest first.
  'queue',
  // Whole histories dropped over `maxTotalHistoryBytes`, the agent published to least recently first.
  'history',
  // Agents' state given up over `maxTotalStateBytes` (or the in-memory broker's `maxAgents`), the
  // agent touched least recently first: an agent nobody watches is forgotten whole (epoch, `seq`,
  // state); one being watched keeps only its newest update.
  'state',
  // Older entries (ended tasks, then open ones, then the status) forgotten from one agent's
  // state over `maxStateBytes`.
  'task',
  // Results left out of an agent's state because the update alone was over `maxStateBytes`: a
  // snapshot shows the task with `result_omitted: true`.
  'result',
] as const;

/** A kind of data given up; see `EVICTION_KINDS`. */
export type EvictionKind = (typeof EVICTION_KINDS)[number];

/**
 * One number of the stats: its field in `GET /ws/stats`, what it means, how the hub keeps it,
 * and the metric family it becomes.
 */
export interface StatsFigure {
  /** The field in `GET /ws/stats`. */
  readonly name: string;
  /** What it counts; the field's description and, unless `help` says otherwise, the metric's help. */
  readonly description: string;
  /** `counter`: the hub adds to it as things happen; `reading`: looked up when the stats are read. */
  readonly kept: 'counter' | 'reading';
  /** The metric family, without the `hono_agent_ws_` prefix; `undefined` for none. */
  readonly metric: string | undefined;
  /** The family's Prometheus type. */
  readonly type: 'counter' | 'gauge';
  /** The family's help, where it differs from the field's description. */
  readonly help?: string;
  /**
   * What the field holds: a whole number (`count`); the instance id (`id`, the metric `info`
   * carries it as a label); an ISO timestamp (`timestamp`, the metric in seconds since the
   * epoch); or one count per kind of `kinds` (`by_kind`, the metric labelled `kind`).
   */
  readonly value: 'count' | 'id' | 'timestamp' | 'by_kind';
  /** With `by_kind`: the kinds counted, every one present in the field and the metric. */
  readonly kinds?: readonly string[];
}

/**
 * Every field of `GET /ws/stats` but `cluster`, in the order the stats list them; the metrics
 * list the identity (`id`, `timestamp`) first, then the rest in this order.
 */
export const STATS_FIGURES = [
  {
    name: 'instance_id',
    description: 'Identifies this server instance (random per process).',
    kept: 'reading',
    metric: 'info',
    type: 'gauge',
    help: 'The hub instance; always 1.',
    value: 'id',
  },
  {
    name: 'total_connections',
    description: 'Connections accepted since the hub started.',
    kept: 'counter',
    metric: 'connections_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'active_connections',
    description: 'Connections open now.',
    kept: 'reading',
    metric: 'connections_active',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'agents_connected',
    description: 'Agents with at least one open connection now.',
    kept: 'reading',
    metric: 'agents_connected',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'messages_sent',
    description: 'Frames written to sockets: one per socket, so a frame sent to 3 clients counts 3.',
    kept: 'counter',
    metric: 'messages_sent_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'messages_received',
    description: 'Frames received from clients.',
    kept: 'counter',
    metric: 'messages_received_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'updates_published',
    description: 'Updates accepted from publishStatus, publishTask and the ingest route.',
    kept: 'counter',
    metric: 'updates_published_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'batches_sent',
    description: 'batch_update frames built (once per agent, however many clients receive it).',
    kept: 'counter',
    metric: 'batches_sent_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'messages_queued',
    description: 'Updates put in an offline queue because their agent had no connection.',
    kept: 'counter',
    metric: 'messages_queued_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'queued_messages',
    description: 'Updates waiting in offline queues now.',
    kept: 'reading',
    metric: 'queued_messages',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'messages_dropped',
    description:
      'Queued updates dropped: a queue over maxQueueSize or maxQueueBytes, all queues over maxTotalQueueBytes, or a queue older than queueTtl.',
    kept: 'counter',
    metric: 'messages_dropped_total',
    type: 'counter',
    value: 'count',
  },
  {
    name: 'errors',
    description: 'Sum of errors_by_kind.',
    kept: 'reading',
    metric: undefined,
    type: 'counter',
    value: 'count',
  },
  {
    name: 'errors_by_kind',
    description: 'Errors by kind; docs/operations.md lists what each kind counts.',
    kept: 'reading',
    metric: 'errors_total',
    type: 'counter',
    help: 'Errors by kind, one series per kind (zeros included); docs/operations.md lists what each kind counts.',
    value: 'by_kind',
    kinds: ERROR_KINDS,
  },
  {
    name: 'evictions_by_kind',
    description:
      'Data given up to stay within the byte limits, by kind: `queue` (whole offline queues over maxTotalQueueBytes), `history` (whole histories over maxTotalHistoryBytes), `state` (agents forgotten, or a watched agent cut to its newest update, over maxTotalStateBytes), `task` (older entries of one state over maxStateBytes), `result` (results left out of a state: too large on their own).',
    kept: 'reading',
    metric: 'evictions_total',
    type: 'counter',
    help: 'Data given up to stay within the byte limits, by kind (queue, history, state, task, result).',
    value: 'by_kind',
    kinds: EVICTION_KINDS,
  },
  {
    name: 'started_at',
    description: 'When the hub started.',
    kept: 'reading',
    metric: 'start_time_seconds',
    type: 'gauge',
    help: 'When the hub started, in seconds since the Unix epoch.',
    value: 'timestamp',
  },
  {
    name: 'uptime_seconds',
    description: 'Seconds since the hub started.',
    kept: 'reading',
    metric: undefined,
    type: 'gauge',
    value: 'count',
  },
] as const satisfies readonly StatsFigure[];

/**
 * The cluster-wide numbers of `GET /ws/stats` (`cluster`), present when the broker spans
 * several instances (Redis); each is a gauge `cluster_<name>`, except `instances`.
 */
export const CLUSTER_FIGURES = [
  {
    name: 'instances',
    description: 'Live instances sharing the broker.',
    kept: 'reading',
    metric: 'cluster_instances',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'active_connections',
    description: 'Connections open now on all live instances.',
    kept: 'reading',
    metric: 'cluster_connections_active',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'agents_connected',
    description: 'Agents with a connection on any live instance.',
    kept: 'reading',
    metric: 'cluster_agents_connected',
    type: 'gauge',
    value: 'count',
  },
  {
    name: 'queued_messages',
    description: 'Updates waiting in offline queues, cluster-wide.',
    kept: 'reading',
    metric: 'cluster_queued_messages',
    type: 'gauge',
    value: 'count',
  },
] as const satisfies readonly StatsFigure[];

/** A field of `GET /ws/stats`. */
export type StatsFigureName = (typeof STATS_FIGURES)[number]['name'];

/** A number the hub adds to as things happen. */
export type CounterName = Extract<(typeof STATS_FIGURES)[number], { readonly kept: 'counter' }>['name'];

/** A field looked up when the stats are read. */
export type ReadingName = Exclude<StatsFigureName, CounterName>;

/** A cluster-wide number of `GET /ws/stats`. */
export type ClusterFigureName = (typeof CLUSTER_FIGURES)[number]['name'];

/**
 * The counters one hub keeps.
 *
 * @internal
 */
export type HubCounters = Record<CounterName, number>;

/**
 * Creates zeroed counters, one per counting figure.
 *
 * @internal
 */
export function createHubCounters(): HubCounters {
  const counters = {} as HubCounters;
  for (const figure of STATS_FIGURES) if (figure.kept === 'counter') counters[figure.name] = 0;
  return counters;
}

/**
 * Creates zeroed eviction counters.
 *
 * @returns One counter per kind.
 *
 * @internal
 */
export function createEvictionCounters(): Record<EvictionKind, number> {
  return Object.fromEntries(EVICTION_KINDS.map((kind) => [kind, 0])) as Record<EvictionKind, number>;
}
