import type { Context, Env } from 'hono';
import * as v from 'valibot';
import type { BrokerFactory } from './broker.ts';
import type { Logger } from './logger.ts';

/** `scheme://host[:port]` with nothing after it, as browsers send in `Origin`; or the literal `null`. */
function isOrigin(input: string): boolean {
  if (input === 'null') return true;
  try {
    return new URL(input).origin === input;
  } catch {
    return false;
  }
}

/** A whole number from `min` to `max`. */
type WholeNumber = v.SchemaWithPipe<
  readonly [
    v.NumberSchema<undefined>,
    v.IntegerAction<number, undefined>,
    v.MinValueAction<number, number, undefined>,
    v.MaxValueAction<number, number, undefined>,
  ]
>;
const wholeNumber = (min: number, max: number = Number.MAX_SAFE_INTEGER): WholeNumber =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

/** A whole number of milliseconds, `min` or more, at most about 24 days (the timer limit). */
const milliseconds = (min = 0): WholeNumber => wholeNumber(min, 2 ** 31 - 1);

/**
 * Smallest `maxStateBytes`: one update with every text field at its longest, and its `result`
 * left out, fits.
 */
const MIN_STATE_BYTES = 32 * 1024;

/** The options that are numbers: milliseconds, bytes, counts, rates. */
type NumericOption =
  | 'heartbeatInterval'
  | 'maxQueueSize'
  | 'batchInterval'
  | 'maxMessageSize'
  | 'maxBufferedAmount'
  | 'maxIngestBytes'
  | 'maxQueueBytes'
  | 'maxTotalQueueBytes'
  | 'queueTtl'
  | 'maxUpdateDepth'
  | 'maxInboundRate'
  | 'maxInboundBurst'
  | 'historySize'
  | 'maxHistoryBytes'
  | 'maxTotalHistoryBytes'
  | 'maxStateBytes'
  | 'maxTotalStateBytes'
  | 'logInterval';

/** The function-valued options, checked only for being functions. */
type FunctionOption<T> = v.OptionalSchema<v.GenericSchema<T>, undefined>;

/**
 * Hub options schema: `createAgentHub` validates its options with it. Its type is spelled out
 * (JSR needs explicit types on exports) in the loosest form that still types the output.
 *
 * @internal
 */
export const HubOptionsSchema: v.StrictObjectSchema<
  { readonly [Name in NumericOption]: v.OptionalSchema<v.GenericSchema<number>, number> } & {
    readonly allowedOrigins: v.OptionalSchema<v.GenericSchema<readonly string[] | '*'>, readonly string[]>;
    readonly ingest: v.OptionalSchema<v.GenericSchema<boolean>, boolean>;
    readonly snapshot: v.OptionalSchema<v.GenericSchema<boolean>, boolean>;
    readonly logger: FunctionOption<Logger | false>;
    readonly authorize: FunctionOption<AuthorizeHook>;
    readonly broker: FunctionOption<BrokerFactory>;
  },
  undefined
> = v.strictObject({
  heartbeatInterval: v.optional(milliseconds(), 30_000),
  maxQueueSize: v.optional(wholeNumber(0, 1_000_000), 100),
  batchInterval: v.optional(milliseconds(), 100),
  maxMessageSize: v.optional(wholeNumber(64, 64 * 1024 * 1024), 65_536),
  maxBufferedAmount: v.optional(wholeNumber(0), 4 * 1024 * 1024),
  maxIngestBytes: v.optional(wholeNumber(64), 1024 * 1024),
  maxQueueBytes: v.optional(wholeNumber(0), 1024 * 1024),
  maxTotalQueueBytes: v.optional(wholeNumber(0), 64 * 1024 * 1024),
  queueTtl: v.optional(milliseconds(), 3_600_000),
  maxUpdateDepth: v.optional(wholeNumber(1, 1000), 32),
  maxInboundRate: v.optional(v.pipe(v.number(), v.finite(), v.minValue(0)), 20),
  maxInboundBurst: v.optional(wholeNumber(1), 60),
  allowedOrigins: v.optional(
    v.union([
      v.literal('*'),
      v.array(
        v.pipe(
          v.string(),
          v.check(isOrigin, 'allowedOrigins: each entry must be an origin like https://app.example.com, or "null"'),
        ),
      ),
    ]),
    [],
  ),
  historySize: v.optional(wholeNumber(0, 1_000_000), 1000),
  maxHistoryBytes: v.optional(wholeNumber(0), 512 * 1024),
  maxTotalHistoryBytes: v.optional(wholeNumber(0), 64 * 1024 * 1024),
  maxStateBytes: v.optional(wholeNumber(MIN_STATE_BYTES), 1024 * 1024),
  maxTotalStateBytes: v.optional(wholeNumber(0), 64 * 1024 * 1024),
  snapshot: v.optional(v.boolean(), true),
  logInterval: v.optional(milliseconds(1), 10_000),
  logger: v.optional(
    v.union([
      v.literal(false),
      v.custom<Logger>((input) => typeof input === 'function', 'logger must be a function or false'),
    ]),
  ),
  ingest: v.optional(v.boolean(), false),
  authorize: v.optional(
    v.custom<AuthorizeHook>((input) => typeof input === 'function', 'authorize must be a function'),
  ),
  broker: v.optional(
    v.custom<BrokerFactory>((input) => typeof input === 'function', 'broker must be a broker factory'),
  ),
});

/**
 * What a request wants to do, as `authorize` sees it: `watch` an agent (the WebSocket route),
 * `publish` to one (ingest), or read the hub-wide `stats`, the `agents` listing or the
 * Prometheus `metrics`.
 */
export type HubAction = 'watch' | 'publish' | 'stats' | 'agents' | 'metrics';

/**
 * Decides whether a request may proceed; it guards every route the hub mounts. Return `true` to
 * allow, `false` to refuse with 403, or throw Hono's `HTTPException` to refuse with its status
 * (401 for a missing or bad credential). Any other error is not a refusal: it goes to the app's
 * `onError` (500 by default) and is counted as `internal_error`. Runs before the upgrade, so a
 * refused client never gets a socket.
 *
 * `agentId` is the agent watched or published to; `undefined` for `stats`, `agents` and `metrics`.
 */
export type AuthorizeHook<E extends Env = any> = (
  agentId: string | undefined,
  c: Context<E>,
  action: HubAction,
) => boolean | Promise<boolean>;

/**
 * Where the adapters' `serveNode`, `serveDeno` and `serveBun` listen unless told otherwise.
 */
export const SERVE_DEFAULTS: { readonly port: number; readonly hostname: string } = Object.freeze({
  port: 8787,
  hostname: '127.0.0.1',
});

/**
 * Options of `createAgentHub`. Every interval is in milliseconds.
 */
export interface AgentHubOptions<E extends Env = any> {
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
  /**
   * Most bytes queued per agent while it has no connection; the oldest are dropped. Every byte
   * limit counts an update's JSON in UTF-8 (in memory: twice its length when it has a character
   * beyond U+00FF, as the process then holds it) plus its bookkeeping (a few dozen bytes; see
   * `BrokerContext`). Default 1 MiB.
   */
  maxQueueBytes?: number;
  /**
   * Most bytes all offline queues together may hold (per process in memory, cluster-wide in
   * Redis); over it, whole queues are dropped, the one that waited longest first. Default 64 MiB.
   */
  maxTotalQueueBytes?: number;
  /** How long a queue waits for a client of its agent, from its newest update; then it is dropped. 0 keeps it. Default 1 hour. */
  queueTtl?: number;
  /** Deepest nesting of arrays and objects an update may carry (in `result`); deeper is refused. Default 32. */
  maxUpdateDepth?: number;
  /** Frames per second a client may send on one connection, on average; more closes it with 1008. 0 disables. Default 20. */
  maxInboundRate?: number;
  /** Frames a client may send at once before `maxInboundRate` applies. Default 60. */
  maxInboundBurst?: number;
  /**
   * Browser origins allowed to open a WebSocket besides the server's own (an `Origin` whose host
   * equals the request's `Host`), e.g. `['https://dashboard.example.com']`; `'*'` allows any.
   * Requests without `Origin` (non-browser clients) are always allowed. Default `[]`.
   */
  allowedOrigins?: readonly string[] | '*';
  /** Updates of each agent kept for clients that resume (`?since=`); 0 keeps none. Default 1000. */
  historySize?: number;
  /** Bytes of each agent's history; the oldest go first. Default 512 KiB. */
  maxHistoryBytes?: number;
  /** Bytes of history of all agents together; the least recently published agents lose theirs first. Default 64 MiB. */
  maxTotalHistoryBytes?: number;
  /**
   * Bytes of each agent's state: its latest status and the latest update of its open and recent
   * ended tasks (what a snapshot shows), and, in the broker, its stream record (id, epoch, `seq`).
   * Over it, the agent's least recently updated entries go first (ended tasks, then open ones,
   * then the status), never its newest update. A task update over it on its own is kept without
   * its `result`: snapshots show that task with `result_omitted: true` (the live update, queue and
   * history carry it whole). At least 32 KiB. Default 1 MiB.
   */
  maxStateBytes?: number;
  /**
   * Bytes of the state of all agents together: in the broker (per process in memory, in Redis
   * across the cluster), and separately in each instance for the agents it has connections for.
   * Over it, the agents touched (published to or watched) least recently go first: one nobody
   * watches is forgotten whole (a new epoch if it comes back), one being watched keeps only its
   * newest update. Default 64 MiB.
   */
  maxTotalStateBytes?: number;
  /** Sends each new connection a `snapshot` of the agent's state after `connection_established`. Default true. */
  snapshot?: boolean;
  /** Repeated warnings (bad frames, queue drops) are logged at most once per this interval, with a count. Default 10000. */
  logInterval?: number;
  /** Receives one structured entry per event worth logging; `false` silences. Default: JSON lines on the console. */
  logger?: Logger | false;
  /** Mounts `POST /:agent_id/updates`. Default false. */
  ingest?: boolean;
  /** Guards every route the hub mounts; see `AuthorizeHook`. */
  authorize?: AuthorizeHook<E>;
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
