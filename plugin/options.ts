import type { Context } from 'hono';
import * as v from 'valibot';
import type { BrokerFactory } from './broker.ts';
import type { Logger } from './logger.ts';

/** A whole number of milliseconds, 0 or more, at most about 24 days (the timer limit). */
const Milliseconds: v.SchemaWithPipe<
  readonly [
    v.NumberSchema<undefined>,
    v.IntegerAction<number, undefined>,
    v.MinValueAction<number, 0, undefined>,
    v.MaxValueAction<number, number, undefined>,
  ]
> = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(2 ** 31 - 1));

/**
 * Hub options schema: `createAgentHub` validates its options with it.
 *
 * @internal
 */
export const HubOptionsSchema: v.StrictObjectSchema<
  {
    readonly heartbeatInterval: v.OptionalSchema<typeof Milliseconds, 30_000>;
    readonly maxQueueSize: v.OptionalSchema<
      v.SchemaWithPipe<
        readonly [
          v.NumberSchema<undefined>,
          v.IntegerAction<number, undefined>,
          v.MinValueAction<number, 0, undefined>,
          v.MaxValueAction<number, 1_000_000, undefined>,
        ]
      >,
      100
    >;
    readonly batchInterval: v.OptionalSchema<typeof Milliseconds, 100>;
    readonly maxMessageSize: v.OptionalSchema<
      v.SchemaWithPipe<
        readonly [
          v.NumberSchema<undefined>,
          v.IntegerAction<number, undefined>,
          v.MinValueAction<number, 64, undefined>,
          v.MaxValueAction<number, number, undefined>,
        ]
      >,
      65_536
    >;
    readonly maxBufferedAmount: v.OptionalSchema<
      v.SchemaWithPipe<
        readonly [v.NumberSchema<undefined>, v.IntegerAction<number, undefined>, v.MinValueAction<number, 0, undefined>]
      >,
      number
    >;
    readonly maxIngestBytes: v.OptionalSchema<
      v.SchemaWithPipe<
        readonly [
          v.NumberSchema<undefined>,
          v.IntegerAction<number, undefined>,
          v.MinValueAction<number, 64, undefined>,
        ]
      >,
      number
    >;
    readonly logger: v.OptionalSchema<
      v.UnionSchema<[v.LiteralSchema<false, undefined>, v.CustomSchema<Logger, undefined>], undefined>,
      undefined
    >;
    readonly ingest: v.OptionalSchema<v.BooleanSchema<undefined>, false>;
    readonly authorize: v.OptionalSchema<
      v.CustomSchema<AuthorizeHook, v.ErrorMessage<v.CustomIssue> | undefined>,
      undefined
    >;
    readonly broker: v.OptionalSchema<
      v.CustomSchema<BrokerFactory, v.ErrorMessage<v.CustomIssue> | undefined>,
      undefined
    >;
  },
  undefined
> = v.strictObject({
  heartbeatInterval: v.optional(Milliseconds, 30_000),
  maxQueueSize: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000)), 100),
  batchInterval: v.optional(Milliseconds, 100),
  maxMessageSize: v.optional(v.pipe(v.number(), v.integer(), v.minValue(64), v.maxValue(64 * 1024 * 1024)), 65_536),
  maxBufferedAmount: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 4 * 1024 * 1024),
  maxIngestBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(64)), 1024 * 1024),
  logger: v.optional(v.union([v.literal(false), v.custom<Logger>((input) => typeof input === 'function')])),
  ingest: v.optional(v.boolean(), false),
  authorize: v.optional(
    v.custom<AuthorizeHook>((input) => typeof input === 'function', 'authorize must be a function'),
  ),
  broker: v.optional(
    v.custom<BrokerFactory>((input) => typeof input === 'function', 'broker must be a broker factory'),
  ),
});

/**
 * Decides whether a client may watch an agent. Return `false` to refuse with 403; throw to
 * refuse with 401. Runs before the upgrade, so a refused client never gets a socket.
 */
export type AuthorizeHook = (agentId: string, c: Context) => boolean | Promise<boolean>;

/**
 * Options of `createAgentHub`. Every interval is in milliseconds.
 */
export interface AgentHubOptions {
  /** Interval between heartbeat pings; a connection silent for two is closed. 0 disables. Default 30000. */
  heartbeatInterval?: number;
  /** Most updates kept per agent while it has no connection; the oldest are dropped. Default 100. */
  maxQueueSize?: number;
  /** Length of the batching window; 0 sends every update on its own. Default 100. */
  batchInterval?: number;
  /** Largest inbound frame in bytes; a larger one closes the socket with 1009. Default 65536. */
  maxMessageSize?: number;
  /** Bytes that may wait in a socket's send buffer before it is closed as too slow (4001); 0 disables. Default 4 MiB. */
  maxBufferedAmount?: number;
  /** Largest ingest request body in bytes; a larger one gets 413. Default 1 MiB. */
  maxIngestBytes?: number;
  /** Receives one structured entry per event worth logging; `false` silences. Default: JSON lines on the console. */
  logger?: Logger | false;
  /** Mounts `POST /:agent_id/updates`. Default false. */
  ingest?: boolean;
  /** Refuses connections before the upgrade. */
  authorize?: AuthorizeHook;
  /** Moves updates between instances; default `memoryBroker()`. */
  broker?: BrokerFactory;
}

/**
 * Hub options with every default applied.
 */
export type ResolvedHubOptions = v.InferOutput<typeof HubOptionsSchema>;

/**
 * Validates hub options and applies the defaults.
 *
 * @param options The options as given.
 *
 * @returns The resolved options.
 *
 * @throws {TypeError} When an option is invalid; the message names every bad option.
 *
 * @internal
 */
export function resolveHubOptions(options: AgentHubOptions = {}): ResolvedHubOptions {
  const result = v.safeParse(HubOptionsSchema, options);
  if (result.success) return result.output;
  const problems = result.issues.map((issue) => `${v.getDotPath(issue) ?? 'options'}: ${issue.message}`);
  throw new TypeError(`createAgentHub: invalid options\n- ${problems.join('\n- ')}`);
}
