import * as v from 'valibot';
import { ERROR_KINDS, type ErrorKind } from './error-kinds.ts';
import { CLUSTER_FIGURES, STATS_FIGURES, type StatsFigure } from './figures.ts';

export { ERROR_KINDS, type ErrorKind } from './error-kinds.ts';
export { createEvictionCounters, EVICTION_KINDS, type EvictionKind } from './figures.ts';

import {
  AgentIdSchema,
  EpochSchema,
  SeqSchema,
  type StatusUpdate,
  StatusUpdateSchema,
  type TaskUpdate,
  TaskUpdateSchema,
} from './schemas.ts';

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

/** A count's schema. */
type CountSchema = ReturnType<typeof count>;

/** One error count's schema. */
type KindCountSchema = v.SchemaWithPipe<
  readonly [v.NumberSchema<undefined>, v.IntegerAction<number, undefined>, v.MinValueAction<number, 0, undefined>]
>;

/** The schema of a stats field, by what it holds (`StatsFigure['value']`; `by_kind` by its `kinds`). */
type FigureSchema<F extends StatsFigure> = F['value'] extends 'by_kind'
  ? v.SchemaWithPipe<
      readonly [
        v.ObjectSchema<Record<NonNullable<F['kinds']>[number], KindCountSchema>, undefined>,
        v.DescriptionAction<Record<NonNullable<F['kinds']>[number], number>, string>,
      ]
    >
  : F['value'] extends 'id'
    ? v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.DescriptionAction<string, string>]>
    : F['value'] extends 'timestamp'
      ? v.SchemaWithPipe<
          readonly [
            v.StringSchema<undefined>,
            v.IsoTimestampAction<string, undefined>,
            v.DescriptionAction<string, string>,
          ]
        >
      : CountSchema;

const figureSchema = (figure: StatsFigure): v.GenericSchema => {
  switch (figure.value) {
    case 'count':
      return count(figure.description);
    case 'id':
      return v.pipe(v.string(), v.description(figure.description));
    case 'timestamp':
      return v.pipe(v.string(), v.isoTimestamp(), v.description(figure.description));
    case 'by_kind':
      return v.pipe(
        v.object(
          Object.fromEntries(
            (figure.kinds ?? []).map((kind) => [kind, v.pipe(v.number(), v.integer(), v.minValue(0))]),
          ),
        ),
        v.description(figure.description),
      );
  }
};

/** The cluster-wide figures' schema. */
type ClusterSchema = v.SchemaWithPipe<
  readonly [
    v.ObjectSchema<{ readonly [F in (typeof CLUSTER_FIGURES)[number] as F['name']]: CountSchema }, undefined>,
    v.DescriptionAction<{ [F in (typeof CLUSTER_FIGURES)[number] as F['name']]: number }, string>,
  ]
>;

/** The type of the stats object schema, before its title and description (an explicit type: JSR). */
type HubStatsObjectSchema = v.ObjectSchema<
  {
    readonly [F in (typeof STATS_FIGURES)[number] as F['name']]: FigureSchema<F>;
  } & { readonly cluster: v.OptionalSchema<ClusterSchema, undefined> },
  undefined
>;

/**
 * Stats schema: the body of `GET /agents/ws/stats`. Figures are this instance's unless noted;
 * every field comes from `STATS_FIGURES` and `CLUSTER_FIGURES` (plugin/figures.ts).
 */
export const HubStatsSchema: v.SchemaWithPipe<
  readonly [
    HubStatsObjectSchema,
    v.TitleAction<v.InferOutput<HubStatsObjectSchema>, string>,
    v.DescriptionAction<v.InferOutput<HubStatsObjectSchema>, string>,
  ]
> = v.pipe(
  v.object({
    ...Object.fromEntries(STATS_FIGURES.map((figure) => [figure.name, figureSchema(figure)])),
    cluster: v.optional(
      v.pipe(
        v.object(Object.fromEntries(CLUSTER_FIGURES.map((figure) => [figure.name, count(figure.description)]))),
        v.description('Cluster-wide figures, present when the broker spans several instances (Redis).'),
      ),
    ),
  }) as unknown as HubStatsObjectSchema,
  v.title('Hub stats'),
  v.description('Counters of one hub, served by GET /agents/ws/stats.'),
);

/**
 * The hub's counters, as served by `GET /agents/ws/stats`.
 */
export type HubStats = v.InferOutput<typeof HubStatsSchema>;

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
