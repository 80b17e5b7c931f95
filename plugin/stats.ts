import * as v from 'valibot';
import {
  AgentIdSchema,
  EpochSchema,
  SeqSchema,
  type StatusUpdate,
  StatusUpdateSchema,
  type TaskUpdate,
  TaskUpdateSchema,
} from './schemas.ts';

/**
 * Kinds of error the hub counts; `errors` in the stats is their sum.
 */
export const ERROR_KINDS = [
  // Bad frames from clients, each answered with an `error` frame of the same code.
  'invalid_json',
  'invalid_message',
  'unknown_type',
  'binary_not_supported',
  // Frames over `maxMessageSize` (close 1009), invalid UTF-8 in a text frame (1007), a broken
  // WebSocket protocol (1002), frames faster than the inbound budget (1008): whoever detects
  // them, the hub or the runtime's WebSocket stack.
  'message_too_big',
  'invalid_utf8',
  'protocol_error',
  'rate_limited',
  // Sockets that failed: a send threw, the runtime reported an error, the peer vanished
  // (close 1006 or 0), no pong between two sweeps (4000), or the send buffer overflowed (4001).
  'send_failed',
  'socket_error',
  'abrupt_close',
  'heartbeat_timeout',
  'slow_consumer',
  // Refused requests: 400 bad agent id, 426 not a WebSocket request, 401/403 from `authorize`,
  // 403 for a browser origin not allowed, 503 while the hub is closing.
  'invalid_agent_id',
  'invalid_resume',
  // 400 for a malformed `limit`, `cursor` or `tasks` of GET /ws/agents.
  'invalid_query',
  'upgrade_required',
  'unauthorized',
  'forbidden',
  'origin_forbidden',
  'unavailable',
  // Ingest requests answered 400, 413 or 415.
  'ingest_rejected',
  // The broker failed to deliver, queue or subscribe.
  'broker_error',
  // A failure contained inside the hub (an update that could not be serialised, a throwing
  // hook or callback): it costs one update or one request, and nothing else.
  'internal_error',
] as const;

/** A kind of error the hub counts. */
export type ErrorKind = (typeof ERROR_KINDS)[number];

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

const count = (
  description: string,
): v.SchemaWithPipe<
  readonly [
    v.NumberSchema<undefined>,
    v.IntegerAction<number, undefined>,
    v.MinValueAction<number, 0, undefined>,
    v.DescriptionAction<number, string>,
  ]
> => v.pipe(v.number(), v.integer(), v.minValue(0), v.description(description));

/** The type of the stats object schema, before its title and description (an explicit type: JSR). */
type HubStatsObjectSchema = v.ObjectSchema<
  {
    readonly instance_id: v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.DescriptionAction<string, string>]>;
    readonly total_connections: ReturnType<typeof count>;
    readonly active_connections: ReturnType<typeof count>;
    readonly agents_connected: ReturnType<typeof count>;
    readonly messages_sent: ReturnType<typeof count>;
    readonly messages_received: ReturnType<typeof count>;
    readonly updates_published: ReturnType<typeof count>;
    readonly batches_sent: ReturnType<typeof count>;
    readonly messages_queued: ReturnType<typeof count>;
    readonly queued_messages: ReturnType<typeof count>;
    readonly messages_dropped: ReturnType<typeof count>;
    readonly errors: ReturnType<typeof count>;
    readonly errors_by_kind: v.SchemaWithPipe<
      readonly [
        v.ObjectSchema<
          Record<
            ErrorKind,
            v.SchemaWithPipe<
              readonly [
                v.NumberSchema<undefined>,
                v.IntegerAction<number, undefined>,
                v.MinValueAction<number, 0, undefined>,
              ]
            >
          >,
          undefined
        >,
        v.DescriptionAction<Record<ErrorKind, number>, string>,
      ]
    >;
    readonly evictions_by_kind: v.SchemaWithPipe<
      readonly [
        v.ObjectSchema<
          Record<
            EvictionKind,
            v.SchemaWithPipe<
              readonly [
                v.NumberSchema<undefined>,
                v.IntegerAction<number, undefined>,
                v.MinValueAction<number, 0, undefined>,
              ]
            >
          >,
          undefined
        >,
        v.DescriptionAction<Record<EvictionKind, number>, string>,
      ]
    >;
    readonly started_at: v.SchemaWithPipe<
      readonly [v.StringSchema<undefined>, v.IsoTimestampAction<string, undefined>, v.DescriptionAction<string, string>]
    >;
    readonly uptime_seconds: ReturnType<typeof count>;
    readonly cluster: v.OptionalSchema<
      v.SchemaWithPipe<
        readonly [
          v.ObjectSchema<
            {
              readonly instances: ReturnType<typeof count>;
              readonly active_connections: ReturnType<typeof count>;
              readonly agents_connected: ReturnType<typeof count>;
              readonly queued_messages: ReturnType<typeof count>;
            },
            undefined
          >,
          v.DescriptionAction<
            { instances: number; active_connections: number; agents_connected: number; queued_messages: number },
            string
          >,
        ]
      >,
      undefined
    >;
  },
  undefined
>;

/**
 * Stats schema: the body of `GET /agents/ws/stats`. Figures are this instance's unless noted.
 */
export const HubStatsSchema: v.SchemaWithPipe<
  readonly [
    HubStatsObjectSchema,
    v.TitleAction<v.InferOutput<HubStatsObjectSchema>, string>,
    v.DescriptionAction<v.InferOutput<HubStatsObjectSchema>, string>,
  ]
> = v.pipe(
  v.object({
    instance_id: v.pipe(v.string(), v.description('Identifies this server instance (random per process).')),
    total_connections: count('Connections accepted since the hub started.'),
    active_connections: count('Connections open now.'),
    agents_connected: count('Agents with at least one open connection now.'),
    messages_sent: count('Frames written to sockets: one per socket, so a frame sent to 3 clients counts 3.'),
    messages_received: count('Frames received from clients.'),
    updates_published: count('Updates accepted from publishStatus, publishTask and the ingest route.'),
    batches_sent: count('batch_update frames built (once per agent, however many clients receive it).'),
    messages_queued: count('Updates put in an offline queue because their agent had no connection.'),
    queued_messages: count('Updates waiting in offline queues now.'),
    messages_dropped: count(
      'Queued updates dropped: a queue over maxQueueSize or maxQueueBytes, all queues over maxTotalQueueBytes, or a queue older than queueTtl.',
    ),
    errors: count('Sum of errors_by_kind.'),
    errors_by_kind: v.pipe(
      v.object(
        Object.fromEntries(ERROR_KINDS.map((kind) => [kind, v.pipe(v.number(), v.integer(), v.minValue(0))])) as Record<
          ErrorKind,
          v.SchemaWithPipe<
            readonly [
              v.NumberSchema<undefined>,
              v.IntegerAction<number, undefined>,
              v.MinValueAction<number, 0, undefined>,
            ]
          >
        >,
      ),
      v.description('Errors by kind; docs/operations.md lists what each kind counts.'),
    ),
    evictions_by_kind: v.pipe(
      v.object(
        Object.fromEntries(
          EVICTION_KINDS.map((kind) => [kind, v.pipe(v.number(), v.integer(), v.minValue(0))]),
        ) as Record<
          EvictionKind,
          v.SchemaWithPipe<
            readonly [
              v.NumberSchema<undefined>,
              v.IntegerAction<number, undefined>,
              v.MinValueAction<number, 0, undefined>,
            ]
          >
        >,
      ),
      v.description(
        'Data given up to stay within the byte limits, by kind: `queue` (whole offline queues over maxTotalQueueBytes), `history` (whole histories over maxTotalHistoryBytes), `state` (agents forgotten, or a watched agent cut to its newest update, over maxTotalStateBytes), `task` (older entries of one state over maxStateBytes), `result` (results left out of a state: too large on their own).',
      ),
    ),
    started_at: v.pipe(v.string(), v.isoTimestamp(), v.description('When the hub started.')),
    uptime_seconds: count('Seconds since the hub started.'),
    cluster: v.optional(
      v.pipe(
        v.object({
          instances: count('Live instances sharing the broker.'),
          active_connections: count('Connections open now on all live instances.'),
          agents_connected: count('Agents with a connection on any live instance.'),
          queued_messages: count('Updates waiting in offline queues, cluster-wide.'),
        }),
        v.description('Cluster-wide figures, present when the broker spans several instances (Redis).'),
      ),
    ),
  }),
  v.title('Hub stats'),
  v.description('Counters of one hub, served by GET /agents/ws/stats.'),
);

/**
 * The hub's counters, as served by `GET /agents/ws/stats`.
 */
export type HubStats = v.InferOutput<typeof HubStatsSchema>;

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

/**
 * Creates zeroed error counters.
 *
 * @returns One counter per kind.
 *
 * @internal
 */
export function createErrorCounters(): Record<ErrorKind, number> {
  return Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0])) as Record<ErrorKind, number>;
}

/** Agents per page of `GET /ws/agents` unless `?limit=` says otherwise, and the most it may ask. */
export const AGENTS_PAGE_DEFAULT = 50;
export const AGENTS_PAGE_MAX = 500;
/** Open tasks per agent in `GET /ws/agents` unless `?tasks=` says otherwise, and the most it may ask. */
export const AGENT_TASKS_DEFAULT = 20;
export const AGENT_TASKS_MAX = 100;

/**
 * One agent of `GET /ws/agents`.
 */
export interface AgentSummary {
  agent_id: string;
  connections: number;
  instances: number;
  status: StatusUpdate | null;
  open_tasks: TaskUpdate[];
  open_tasks_total: number;
  seq: number;
  epoch: string;
  queued: number;
}

/**
 * The body of `GET /ws/agents`.
 */
export interface AgentsPage {
  agents: AgentSummary[];
  next_cursor: string | null;
}

/**
 * Agent summary schema: one agent of `GET /agents/ws/agents`.
 */
export const AgentSummarySchema: v.GenericSchema<AgentSummary> = v.pipe(
  v.object({
    agent_id: AgentIdSchema,
    connections: count('Connections open for the agent on the instance that answered.'),
    instances: count(
      'Live instances holding at least one connection for the agent: cluster-wide with a networked broker (Redis); with the in-memory broker 1 or 0 (this instance). Cluster-wide connection counts are not kept: per instance, see `connections`.',
    ),
    status: v.pipe(v.nullable(StatusUpdateSchema), v.description('The latest status update, or null if none.')),
    open_tasks: v.pipe(
      v.array(TaskUpdateSchema),
      v.maxLength(AGENT_TASKS_MAX),
      v.description(
        `The latest update of each task not yet ended, most recently updated first; at most \`?tasks=\` (default ${AGENT_TASKS_DEFAULT}, at most ${AGENT_TASKS_MAX}).`,
      ),
    ),
    open_tasks_total: count('How many tasks are open (the snapshot state holds at most 500).'),
    seq: SeqSchema,
    epoch: EpochSchema,
    queued: count('Updates waiting in its offline queue (cluster-wide with Redis).'),
  }),
  v.title('Agent summary'),
  v.description('What the hub knows of one agent: its connections, latest status, open tasks and stream position.'),
) as v.GenericSchema<AgentSummary>;

/**
 * Agents page schema: the body of `GET /agents/ws/agents`.
 */
export const AgentsPageSchema: v.GenericSchema<AgentsPage> = v.pipe(
  v.object({
    agents: v.pipe(
      v.array(AgentSummarySchema),
      v.maxLength(AGENTS_PAGE_MAX),
      v.description('Agents in ascending agent_id order.'),
    ),
    next_cursor: v.pipe(
      v.nullable(v.string()),
      v.description('Pass as `?cursor=` for the next page; null on the last page. Opaque.'),
    ),
  }),
  v.title('Agents page'),
  v.description(
    'The agents the hub knows: with a connection, a queue or a stream (published to or watched, until the stream expires or is evicted); cluster-wide with the Redis broker. Paginated by agent id.',
  ),
) as v.GenericSchema<AgentsPage>;
