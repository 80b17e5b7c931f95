import * as v from 'valibot';
import { ERROR_CODES, ERROR_KIND_DESCRIPTIONS, HTTP_ERROR_CODES, HTTP_ERRORS } from './error-kinds.ts';

/*
 * Every message on the wire is described here, once. TypeScript types are inferred from these
 * schemas, the hub validates input with them, and `spec/` generates asyncapi.yaml from them:
 * titles, descriptions and examples below are the spec's text.
 */

/** Example agent id used throughout the examples. */
const EXAMPLE_AGENT = 'research-agent-7';
/** Example timestamp used throughout the examples. */
const EXAMPLE_TIME = '2026-11-27T13:37:00.000Z';
/** Example epoch used throughout the examples. */
const EXAMPLE_EPOCH = 'k3v9x2m1q7tz';

/*
 * The exported schemas carry explicit types (JSR publishes no inferred "slow" types). Messages,
 * titles, descriptions and examples are typed as plain strings and arrays: they change nothing a
 * schema accepts, and the inferred input, output and issue types stay exactly as they were.
 */

/** `TSchema` followed by a title and a description. */
type Documented<TSchema extends v.GenericSchema> = v.SchemaWithPipe<
  readonly [TSchema, v.TitleAction<v.InferOutput<TSchema>, string>, v.DescriptionAction<v.InferOutput<TSchema>, string>]
>;

/** `TSchema` followed by a title, a description and examples. */
type DocumentedWithExamples<TSchema extends v.GenericSchema> = v.SchemaWithPipe<
  readonly [
    TSchema,
    v.TitleAction<v.InferOutput<TSchema>, string>,
    v.DescriptionAction<v.InferOutput<TSchema>, string>,
    v.ExamplesAction<v.InferOutput<TSchema>, readonly v.InferOutput<TSchema>[]>,
  ]
>;

/** The stream position every update carries. */
type UpdateStreamFields = {
  readonly seq: v.SchemaWithPipe<readonly [typeof SeqSchema, v.MinValueAction<number, 1, undefined>]>;
  readonly epoch: typeof EpochSchema;
};

/** The type of a whole-number schema, 0 or more. */
type Count = v.SchemaWithPipe<
  readonly [v.NumberSchema<undefined>, v.IntegerAction<number, undefined>, v.MinValueAction<number, 0, undefined>]
>;

/**
 * Agent id schema: 1 to 128 characters of `[A-Za-z0-9._:-]`.
 */
export const AgentIdSchema: v.SchemaWithPipe<
  readonly [
    v.StringSchema<undefined>,
    v.MinLengthAction<string, 1, string>,
    v.MaxLengthAction<string, 128, string>,
    v.RegexAction<string, string>,
    v.TitleAction<string, string>,
    v.DescriptionAction<string, string>,
    v.ExamplesAction<string, readonly string[]>,
  ]
> = v.pipe(
  v.string(),
  v.minLength(1, 'agent_id must not be empty'),
  v.maxLength(128, 'agent_id must be at most 128 characters'),
  v.regex(/^[A-Za-z0-9._:-]+$/, 'agent_id may only contain A-Z a-z 0-9 . _ : -'),
  v.title('Agent id'),
  v.description('Identifies one agent: 1 to 128 characters of `[A-Za-z0-9._:-]`.'),
  v.examples([EXAMPLE_AGENT]),
);

/**
 * RFC 3339 `date-time` in the form every common emitter writes (`Date#toISOString()` among
 * them): `T` separator, upper-case `Z` or `±hh:mm`, at most 9 fractional digits.
 *
 * Why: `isoTimestamp()` alone and JSON Schema's `format: date-time` disagree at the edges
 * (lower-case `t`/`z`, a space separator, leap seconds, 31 February), and asyncapi.yaml must
 * give the same verdict as the server. The pattern and the calendar check narrow both to the
 * same set; the pattern is also written into the spec.
 */
const RFC3339_TIMESTAMP =
  /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** Days per month of a common year. */
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Whether the date part of a timestamp names a real day (no 31 April, 29 February only in
 * leap years), as `format: date-time` validators check.
 */
const isCalendarDate = (input: string): boolean => {
  const year = Number(input.slice(0, 4));
  const month = Number(input.slice(5, 7));
  const day = Number(input.slice(8, 10));
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0));
};

/**
 * Timestamp schema: an ISO-8601 UTC timestamp as produced by `Date#toISOString()`.
 */
export const TimestampSchema: v.SchemaWithPipe<
  readonly [
    v.StringSchema<undefined>,
    v.IsoTimestampAction<string, undefined>,
    v.RegexAction<string, string>,
    v.CheckAction<string, string>,
    v.DescriptionAction<string, string>,
    v.ExamplesAction<string, readonly string[]>,
  ]
> = v.pipe(
  v.string(),
  v.isoTimestamp(),
  v.regex(RFC3339_TIMESTAMP, 'timestamp must be RFC 3339, e.g. 2026-11-27T13:37:00.000Z'),
  v.check(isCalendarDate, 'timestamp must name a real calendar day'),
  v.description(
    'RFC 3339 timestamp of when the message was produced; the server writes UTC, as `Date#toISOString()` does.',
  ),
  v.examples([EXAMPLE_TIME]),
);

/**
 * Sequence number schema: an agent's updates are numbered 1, 2, 3, … within its epoch.
 */
export const SeqSchema: v.SchemaWithPipe<
  readonly [
    v.NumberSchema<undefined>,
    v.IntegerAction<number, undefined>,
    v.MinValueAction<number, 0, undefined>,
    v.MaxValueAction<number, number, undefined>,
    v.DescriptionAction<number, string>,
  ]
> = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(0),
  v.maxValue(Number.MAX_SAFE_INTEGER),
  v.description(
    "Position of the update in the agent's stream: 1 for its first update, then strictly increasing by 1 within the epoch. 0 in `connection_established` and `snapshot` means no update yet.",
  ),
);

/**
 * An epoch's rule as a regular expression: `EpochSchema` is built on it, and the WebSocket
 * route checks a resume point with it, without a valibot pipeline per connect.
 */
export const EPOCH: RegExp = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Epoch schema: names one continuous history of an agent's updates.
 */
export const EpochSchema: v.SchemaWithPipe<
  readonly [
    v.StringSchema<undefined>,
    v.RegexAction<string, string>,
    v.DescriptionAction<string, string>,
    v.ExamplesAction<string, readonly string[]>,
  ]
> = v.pipe(
  v.string(),
  v.regex(EPOCH, 'epoch must be 1 to 64 characters of A-Z a-z 0-9 _ -'),
  v.description(
    "Names one unbroken history of the agent's updates. It changes whenever history may have been lost (a restart of the in-memory broker, Redis data loss, an agent evicted from memory): `seq` values of different epochs are unrelated.",
  ),
  v.examples(['k3v9x2m1q7tz']),
);

/** Short free-text field limit, shared by the update fields. */
const SHORT_TEXT = 256;
/** Long free-text field limit, shared by the update fields. */
const LONG_TEXT = 8192;

/**
 * A refusal message built from the issue: every refusal of an update field names the field, what
 * it must be and what it got, so a publisher fixes the right field at the first try.
 */
type Message = (issue: v.BaseIssue<unknown>) => string;

/** What each update field must be, in the words of every refusal of it. */
const FIELD_RULES = {
  type: '"status_update" or "task_update"',
  status: `a string of 1 to ${SHORT_TEXT} characters`,
  execution_status: 'an object with `state` and optionally `task_id`, `progress`, `message`',
  state: `a string of 1 to ${SHORT_TEXT} characters`,
  task_id: `a string of 1 to ${SHORT_TEXT} characters`,
  progress: 'a number from 0 to 100',
  message: `a string of at most ${LONG_TEXT} characters`,
  error: `a string of at most ${LONG_TEXT} characters`,
  result: 'any JSON value',
} as const;

/** A field of an update. */
type UpdateField = keyof typeof FIELD_RULES;

/** Fields the server writes into every update; a publisher never sends them. */
const SERVER_FIELDS: ReadonlySet<string> = new Set(['agent_id', 'timestamp', 'seq', 'epoch']);

/** What a refused value was: its length for a length rule, else the value. */
const receivedOf = (issue: v.BaseIssue<unknown>): string =>
  issue.type === 'min_length' || issue.type === 'max_length' ? `${issue.received} characters` : issue.received;

/** The message of every rule of `field`: `progress must be a number from 0 to 100, received "40"`. */
const mustBe =
  (field: UpdateField): Message =>
  (issue) =>
    `${field} must be ${FIELD_RULES[field]}, received ${receivedOf(issue)}`;

/**
 * The message of a strict object of update fields (`what`: "a task_update"): a missing field
 * with what it must be, an unknown one with the fields there are, a non-object as such.
 */
const objectRefusal =
  (what: string, fields: readonly string[]): Message =>
  (issue) => {
    const key = issue.path?.[0]?.key;
    if (typeof key !== 'string') return `${what} must be an object, received ${issue.received}`;
    if (issue.expected !== 'never') return `${key} is required in ${what}: ${FIELD_RULES[key as UpdateField]}`;
    if (SERVER_FIELDS.has(key)) {
      return `${key} is not a field of ${what}: the server sets agent_id, timestamp, seq and epoch (the agent is the one the URL or the publish call names)`;
    }
    return `${key} is not a field of ${what}, which has ${fields.join(', ')}`;
  };

/** The type of a string schema of 1 to `SHORT_TEXT` characters. */
type ShortText = v.SchemaWithPipe<
  readonly [
    v.StringSchema<Message>,
    v.MinLengthAction<string, 1, Message>,
    v.MaxLengthAction<string, typeof SHORT_TEXT, Message>,
  ]
>;

/** The type of a string schema of at most `LONG_TEXT` characters. */
type LongText = v.SchemaWithPipe<
  readonly [v.StringSchema<Message>, v.MaxLengthAction<string, typeof LONG_TEXT, Message>]
>;

/** A string of 1 to `SHORT_TEXT` characters, refused in the words of `field`. */
const shortText = (field: UpdateField): ShortText =>
  v.pipe(v.string(mustBe(field)), v.minLength(1, mustBe(field)), v.maxLength(SHORT_TEXT, mustBe(field)));

/** A string of at most `LONG_TEXT` characters, refused in the words of `field`. */
const longText = (field: UpdateField): LongText =>
  v.pipe(v.string(mustBe(field)), v.maxLength(LONG_TEXT, mustBe(field)));

/**
 * Progress schema: a finite percentage from 0 to 100.
 */
const ProgressSchema: v.SchemaWithPipe<
  readonly [
    v.NumberSchema<Message>,
    v.FiniteAction<number, Message>,
    v.MinValueAction<number, 0, Message>,
    v.MaxValueAction<number, 100, Message>,
    v.DescriptionAction<number, string>,
  ]
> = v.pipe(
  v.number(mustBe('progress')),
  v.finite(mustBe('progress')),
  v.minValue(0, mustBe('progress')),
  v.maxValue(100, mustBe('progress')),
  v.description('Completion in percent, from 0 to 100.'),
);

/** The fields of `execution_status`. */
const EXECUTION_STATUS_ENTRIES = {
  state: shortText('state'),
  task_id: v.optional(shortText('task_id')),
  progress: v.optional(ProgressSchema),
  message: v.optional(longText('message')),
};

/**
 * Execution status schema: what the agent is doing right now.
 */
export const ExecutionStatusSchema: Documented<
  v.StrictObjectSchema<
    {
      readonly state: ShortText;
      readonly task_id: v.OptionalSchema<ShortText, undefined>;
      readonly progress: v.OptionalSchema<typeof ProgressSchema, undefined>;
      readonly message: v.OptionalSchema<LongText, undefined>;
    },
    Message
  >
> = v.pipe(
  v.strictObject(EXECUTION_STATUS_ENTRIES, objectRefusal('execution_status', Object.keys(EXECUTION_STATUS_ENTRIES))),
  v.title('Execution status'),
  v.description('What the agent is executing right now: a state, and optionally the task, its progress and a message.'),
);

/** The fields of a status update a publisher provides. */
const STATUS_UPDATE_ENTRIES = {
  status: shortText('status'),
  execution_status: v.optional(ExecutionStatusSchema),
};

/**
 * Status update fields schema: the part of a `status_update` a publisher provides.
 */
export const StatusUpdateFieldsSchema: v.StrictObjectSchema<
  {
    readonly status: ShortText;
    readonly execution_status: v.OptionalSchema<typeof ExecutionStatusSchema, undefined>;
  },
  Message
> = v.strictObject(STATUS_UPDATE_ENTRIES, objectRefusal('a status_update', Object.keys(STATUS_UPDATE_ENTRIES)));

/** The fields of a task update a publisher provides. */
const TASK_UPDATE_ENTRIES = {
  task_id: shortText('task_id'),
  status: shortText('status'),
  progress: ProgressSchema,
  message: v.optional(longText('message')),
  result: v.optional(v.unknown()),
  error: v.optional(longText('error')),
};

/**
 * Task update fields schema: the part of a `task_update` a publisher provides.
 */
export const TaskUpdateFieldsSchema: v.StrictObjectSchema<
  {
    readonly task_id: ShortText;
    readonly status: ShortText;
    readonly progress: typeof ProgressSchema;
    readonly message: v.OptionalSchema<LongText, undefined>;
    readonly result: v.OptionalSchema<v.UnknownSchema, undefined>;
    readonly error: v.OptionalSchema<LongText, undefined>;
  },
  Message
> = v.strictObject(TASK_UPDATE_ENTRIES, objectRefusal('a task_update', Object.keys(TASK_UPDATE_ENTRIES)));

/**
 * Connection established message schema (server → client, always the first frame).
 */
export const ConnectionEstablishedSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'connection_established', undefined>;
      readonly agent_id: typeof AgentIdSchema;
      readonly connection_id: v.SchemaWithPipe<
        readonly [v.StringSchema<undefined>, v.MinLengthAction<string, 1, undefined>]
      >;
      readonly heartbeat_interval: Count;
      readonly batch_interval: Count;
      readonly epoch: typeof EpochSchema;
      readonly seq: v.SchemaWithPipe<readonly [typeof SeqSchema, v.DescriptionAction<number, string>]>;
      readonly recovered: v.SchemaWithPipe<readonly [v.BooleanSchema<undefined>, v.DescriptionAction<boolean, string>]>;
      readonly timestamp: typeof TimestampSchema;
    },
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('connection_established'),
    agent_id: AgentIdSchema,
    connection_id: v.pipe(v.string(), v.minLength(1)),
    heartbeat_interval: v.pipe(v.number(), v.integer(), v.minValue(0)),
    batch_interval: v.pipe(v.number(), v.integer(), v.minValue(0)),
    epoch: EpochSchema,
    seq: v.pipe(
      SeqSchema,
      v.description("The agent's latest `seq` this connection starts after: every later update reaches it."),
    ),
    recovered: v.pipe(
      v.boolean(),
      v.description(
        '`true` when the client asked to resume (`?since=&epoch=`) and the server still held every update after `since` in that epoch: they follow, right after the snapshot, as one `batch_update` with `source: resume` (none when nothing was missed). `false` otherwise: the snapshot is the current truth.',
      ),
    ),
    timestamp: TimestampSchema,
  }),
  v.title('Connection established'),
  v.description(
    "First frame on every connection. Carries the connection id, the intervals (milliseconds) the server runs with, so a client can size its own pong and reconnect timers, and the agent's stream position (`epoch`, `seq`) a client resumes from after a drop.",
  ),
  v.examples([
    {
      type: 'connection_established',
      agent_id: EXAMPLE_AGENT,
      connection_id: '3f2a9c1e-17',
      heartbeat_interval: 30000,
      batch_interval: 100,
      epoch: EXAMPLE_EPOCH,
      seq: 41,
      recovered: false,
      timestamp: EXAMPLE_TIME,
    },
  ]),
);

/**
 * Status update message schema (server → client).
 */
export const StatusUpdateSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'status_update', undefined>;
      readonly agent_id: typeof AgentIdSchema;
    } & (typeof StatusUpdateFieldsSchema)['entries'] & {
        readonly timestamp: typeof TimestampSchema;
      } & UpdateStreamFields,
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('status_update'),
    agent_id: AgentIdSchema,
    ...StatusUpdateFieldsSchema.entries,
    timestamp: TimestampSchema,
    seq: v.pipe(SeqSchema, v.minValue(1)),
    epoch: EpochSchema,
  }),
  v.title('Status update'),
  v.description('A change in the status of the agent, optionally with what it is executing.'),
  v.examples([
    {
      type: 'status_update',
      agent_id: EXAMPLE_AGENT,
      status: 'running',
      execution_status: { state: 'executing', task_id: 'task-42', progress: 40, message: 'Reading sources' },
      timestamp: EXAMPLE_TIME,
      seq: 41,
      epoch: EXAMPLE_EPOCH,
    },
  ]),
);

/**
 * Task update message schema (server → client).
 */
export const TaskUpdateSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'task_update', undefined>;
      readonly agent_id: typeof AgentIdSchema;
    } & (typeof TaskUpdateFieldsSchema)['entries'] & {
        readonly result_omitted: v.OptionalSchema<
          v.SchemaWithPipe<readonly [v.LiteralSchema<true, undefined>, v.DescriptionAction<true, string>]>,
          undefined
        >;
        readonly timestamp: typeof TimestampSchema;
      } & UpdateStreamFields,
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('task_update'),
    agent_id: AgentIdSchema,
    ...TaskUpdateFieldsSchema.entries,
    result_omitted: v.optional(
      v.pipe(
        v.literal(true),
        v.description(
          "Only in a `snapshot` or the agents listing, never in a live update: the task's `result` was too large to keep in the agent's state (over `maxStateBytes` on its own), so it is left out. The update that carried it was delivered whole.",
        ),
      ),
    ),
    timestamp: TimestampSchema,
    seq: v.pipe(SeqSchema, v.minValue(1)),
    epoch: EpochSchema,
  }),
  v.title('Task update'),
  v.description('Progress of one task of the agent; `result` (any JSON) or `error` when it ends.'),
  v.examples([
    {
      type: 'task_update',
      agent_id: EXAMPLE_AGENT,
      task_id: 'task-42',
      status: 'completed',
      progress: 100,
      message: 'Summary written',
      result: { pages: 3 },
      timestamp: EXAMPLE_TIME,
      seq: 42,
      epoch: EXAMPLE_EPOCH,
    },
  ]),
);

/**
 * Agent update schema: either update an agent produces.
 */
export const AgentUpdateSchema: v.VariantSchema<
  'type',
  [typeof StatusUpdateSchema, typeof TaskUpdateSchema],
  undefined
> = v.variant('type', [StatusUpdateSchema, TaskUpdateSchema]);

/**
 * Batch entry schema: one update inside a `batch_update`.
 */
export const BatchEntrySchema: Documented<
  v.VariantSchema<
    'type',
    [
      v.ObjectSchema<
        { readonly type: v.LiteralSchema<'status_update', undefined>; readonly content: typeof StatusUpdateSchema },
        undefined
      >,
      v.ObjectSchema<
        { readonly type: v.LiteralSchema<'task_update', undefined>; readonly content: typeof TaskUpdateSchema },
        undefined
      >,
    ],
    undefined
  >
> = v.pipe(
  v.variant('type', [
    v.object({ type: v.literal('status_update'), content: StatusUpdateSchema }),
    v.object({ type: v.literal('task_update'), content: TaskUpdateSchema }),
  ]),
  v.title('Batch entry'),
  v.description(
    'One update of a batch: its `type` and, as `content`, the full message that would have been sent alone.',
  ),
);

/**
 * Batch update message schema (server → client).
 */
export const BatchUpdateSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'batch_update', undefined>;
      readonly agent_id: typeof AgentIdSchema;
      readonly source: v.SchemaWithPipe<
        readonly [
          v.PicklistSchema<['window', 'queue', 'resume'], undefined>,
          v.DescriptionAction<'window' | 'queue' | 'resume', string>,
        ]
      >;
      readonly updates: v.SchemaWithPipe<
        readonly [
          v.ArraySchema<typeof BatchEntrySchema, undefined>,
          v.MinLengthAction<v.InferOutput<typeof BatchEntrySchema>[], 1, undefined>,
        ]
      >;
      readonly timestamp: typeof TimestampSchema;
    },
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('batch_update'),
    agent_id: AgentIdSchema,
    source: v.pipe(
      v.picklist(['window', 'queue', 'resume']),
      v.description(
        '`window`: updates that arrived during one batching window. `queue`: the offline queue (updates published while the agent had no connection), replayed right after `connection_established` and the snapshot to the connections that join within the handover after the agent had none. `resume`: the updates a resuming client missed (`?since=`), right after `connection_established` (`recovered: true`) and the snapshot.',
      ),
    ),
    updates: v.pipe(v.array(BatchEntrySchema), v.minLength(1)),
    timestamp: TimestampSchema,
  }),
  v.title('Batch update'),
  v.description(
    'Several updates in one frame, oldest first. Sent when more than one update arrived during a batching window, and to replay the offline queue right after `connection_established`.',
  ),
  v.examples([
    {
      type: 'batch_update',
      agent_id: EXAMPLE_AGENT,
      source: 'window',
      updates: [
        {
          type: 'task_update',
          content: {
            type: 'task_update',
            agent_id: EXAMPLE_AGENT,
            task_id: 'task-42',
            status: 'running',
            progress: 60,
            timestamp: EXAMPLE_TIME,
            seq: 43,
            epoch: EXAMPLE_EPOCH,
          },
        },
        {
          type: 'status_update',
          content: {
            type: 'status_update',
            agent_id: EXAMPLE_AGENT,
            status: 'idle',
            timestamp: EXAMPLE_TIME,
            seq: 44,
            epoch: EXAMPLE_EPOCH,
          },
        },
      ],
      timestamp: EXAMPLE_TIME,
    },
  ]),
);

/**
 * Snapshot message schema (server → client, right after `connection_established`).
 */
export const SnapshotSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'snapshot', undefined>;
      readonly agent_id: typeof AgentIdSchema;
      readonly epoch: typeof EpochSchema;
      readonly seq: v.SchemaWithPipe<readonly [typeof SeqSchema, v.DescriptionAction<number, string>]>;
      readonly status: v.SchemaWithPipe<
        readonly [
          v.NullableSchema<typeof StatusUpdateSchema, undefined>,
          v.DescriptionAction<v.InferOutput<typeof StatusUpdateSchema> | null, string>,
        ]
      >;
      readonly tasks: v.SchemaWithPipe<
        readonly [
          v.ArraySchema<typeof TaskUpdateSchema, undefined>,
          v.DescriptionAction<v.InferOutput<typeof TaskUpdateSchema>[], string>,
        ]
      >;
      readonly timestamp: typeof TimestampSchema;
    },
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('snapshot'),
    agent_id: AgentIdSchema,
    epoch: EpochSchema,
    seq: v.pipe(SeqSchema, v.description('The latest update the snapshot includes; every later update follows it.')),
    status: v.pipe(
      v.nullable(StatusUpdateSchema),
      v.description(
        "The agent's latest `status_update`, or null if it never had one (in the history the server holds).",
      ),
    ),
    tasks: v.pipe(
      v.array(TaskUpdateSchema),
      v.description(
        'The latest `task_update` of every task not yet in a final state, and of the most recent tasks that ended (`completed`, `succeeded`, `done`, `failed`, `error`, `cancelled`, `canceled`, `timed_out`), oldest first; bounded.',
      ),
    ),
    timestamp: TimestampSchema,
  }),
  v.title('Snapshot'),
  v.description(
    "The agent's current state, sent right after `connection_established` on every connection (the server may turn it off), before any `queue` or `resume` batch, so a dashboard draws the truth at once. It is not an update: clients that only handle updates ignore it and never see old updates again as if they were new.",
  ),
  v.examples([
    {
      type: 'snapshot',
      agent_id: EXAMPLE_AGENT,
      epoch: EXAMPLE_EPOCH,
      seq: 42,
      status: {
        type: 'status_update',
        agent_id: EXAMPLE_AGENT,
        status: 'running',
        timestamp: EXAMPLE_TIME,
        seq: 40,
        epoch: EXAMPLE_EPOCH,
      },
      tasks: [
        {
          type: 'task_update',
          agent_id: EXAMPLE_AGENT,
          task_id: 'task-42',
          status: 'running',
          progress: 60,
          timestamp: EXAMPLE_TIME,
          seq: 42,
          epoch: EXAMPLE_EPOCH,
        },
      ],
      timestamp: EXAMPLE_TIME,
    },
  ]),
);

/**
 * Ping message schema (server → client heartbeat, or client → server liveness probe).
 */
export const PingSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'ping', undefined>;
      readonly timestamp: v.OptionalSchema<typeof TimestampSchema, undefined>;
    },
    undefined
  >
> = v.pipe(
  v.object({ type: v.literal('ping'), timestamp: v.optional(TimestampSchema) }),
  v.title('Ping'),
  v.description(
    'Heartbeat. The server sends one every `heartbeat_interval` ms and closes (4000) a connection that has not answered `pong` by the next one. A client may also send `ping`; the server answers `pong`.',
  ),
  v.examples([{ type: 'ping', timestamp: EXAMPLE_TIME }]),
);

/**
 * Pong message schema (client → server heartbeat answer, or server → client probe answer).
 */
export const PongSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'pong', undefined>;
      readonly timestamp: v.OptionalSchema<typeof TimestampSchema, undefined>;
    },
    undefined
  >
> = v.pipe(
  v.object({ type: v.literal('pong'), timestamp: v.optional(TimestampSchema) }),
  v.title('Pong'),
  v.description('Answer to `ping`. `timestamp` is optional when a client sends it.'),
  v.examples([{ type: 'pong' }, { type: 'pong', timestamp: EXAMPLE_TIME }]),
);

export { ERROR_CODES, HTTP_ERROR_CODES } from './error-kinds.ts';

/**
 * Error message schema (server → client answer to a bad frame; the connection stays open).
 */
export const ErrorSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly type: v.LiteralSchema<'error', undefined>;
      readonly code: v.SchemaWithPipe<
        readonly [v.PicklistSchema<typeof ERROR_CODES, undefined>, v.DescriptionAction<ErrorCode, string>]
      >;
      readonly message: v.StringSchema<undefined>;
      readonly timestamp: typeof TimestampSchema;
    },
    undefined
  >
> = v.pipe(
  v.object({
    type: v.literal('error'),
    code: v.pipe(
      v.picklist(ERROR_CODES),
      v.description(ERROR_CODES.map((code) => `\`${code}\`: ${ERROR_KIND_DESCRIPTIONS[code].counts}`).join(' ')),
    ),
    message: v.string(),
    timestamp: TimestampSchema,
  }),
  v.title('Error'),
  v.description('Answer to a frame the server could not accept. The frame is discarded, the connection stays open.'),
  v.examples([
    { type: 'error', code: 'unknown_type', message: 'unknown message type "subscribe"', timestamp: EXAMPLE_TIME },
  ]),
);

/**
 * Server message schema: every frame the server sends.
 */
export const ServerMessageSchema: v.VariantSchema<
  'type',
  [
    typeof ConnectionEstablishedSchema,
    typeof SnapshotSchema,
    typeof StatusUpdateSchema,
    typeof TaskUpdateSchema,
    typeof BatchUpdateSchema,
    typeof PingSchema,
    typeof PongSchema,
    typeof ErrorSchema,
  ],
  undefined
> = v.variant('type', [
  ConnectionEstablishedSchema,
  SnapshotSchema,
  StatusUpdateSchema,
  TaskUpdateSchema,
  BatchUpdateSchema,
  PingSchema,
  PongSchema,
  ErrorSchema,
]);

/**
 * Client message schema: every frame a client may send.
 */
export const ClientMessageSchema: v.VariantSchema<'type', [typeof PongSchema, typeof PingSchema], undefined> =
  v.variant('type', [PongSchema, PingSchema]);

/** The literal `type` of an ingest item, refused in the words of the `type` field. */
const typeLiteral = <TType extends 'status_update' | 'task_update'>(type: TType): v.LiteralSchema<TType, Message> =>
  v.literal(type, mustBe('type'));

/**
 * Ingest item schema: one update posted to `POST /agents/:agent_id/updates`.
 */
export const IngestItemSchema: Documented<
  v.VariantSchema<
    'type',
    [
      v.StrictObjectSchema<
        { readonly type: v.LiteralSchema<'status_update', Message> } & (typeof StatusUpdateFieldsSchema)['entries'],
        Message
      >,
      v.StrictObjectSchema<
        { readonly type: v.LiteralSchema<'task_update', Message> } & (typeof TaskUpdateFieldsSchema)['entries'],
        Message
      >,
    ],
    Message
  >
> = v.pipe(
  // `variant` picks the branch by `type`, so a refusal names the field of that branch.
  v.variant(
    'type',
    [
      v.strictObject(
        { type: typeLiteral('status_update'), ...STATUS_UPDATE_ENTRIES },
        objectRefusal('a status_update', ['type', ...Object.keys(STATUS_UPDATE_ENTRIES)]),
      ),
      v.strictObject(
        { type: typeLiteral('task_update'), ...TASK_UPDATE_ENTRIES },
        objectRefusal('a task_update', ['type', ...Object.keys(TASK_UPDATE_ENTRIES)]),
      ),
    ],
    (issue) =>
      issue.path
        ? `type must be ${FIELD_RULES.type}, received ${issue.received}`
        : `an update must be an object, received ${issue.received}`,
  ),
  v.title('Ingest item'),
  v.description('One update: the fields of a `status_update` or `task_update` without `agent_id` and `timestamp`.'),
);

/** Most updates one ingest request may carry. */
export const MAX_INGEST_ITEMS = 1000;

/**
 * `v.union([single, array])` that checks an array against `array` alone and any other object
 * against `single` alone. valibot's union reports only "Expected (Object | Array)" when no option
 * accepted the input's type, which is what a strict object with one wrong field looks like; by
 * kind, the refusal is the option's own and names the field. The spec sees a plain union.
 */
function unionByKind<TSingle extends v.GenericSchema, TArray extends v.GenericSchema>(
  single: TSingle,
  array: TArray,
  message: Message,
): v.UnionSchema<[TSingle, TArray], Message> {
  const union = v.union([single, array], message);
  const runUnion = union['~run'].bind(union);
  return Object.assign(union, {
    '~run': ((dataset, config) => {
      const input = dataset.value;
      if (Array.isArray(input)) return array['~run']({ value: input }, config);
      if (input !== null && typeof input === 'object') return single['~run']({ value: input }, config);
      return runUnion(dataset, config);
    }) as (typeof union)['~run'],
  });
}

/**
 * Ingest body schema: one update or a non-empty array of them.
 */
export const IngestBodySchema: DocumentedWithExamples<
  v.UnionSchema<
    [
      typeof IngestItemSchema,
      v.SchemaWithPipe<
        readonly [
          v.ArraySchema<typeof IngestItemSchema, Message>,
          v.MinLengthAction<IngestItem[], 1, Message>,
          v.MaxLengthAction<IngestItem[], typeof MAX_INGEST_ITEMS, Message>,
        ]
      >,
    ],
    Message
  >
> = v.pipe(
  unionByKind(
    IngestItemSchema,
    v.pipe(
      v.array(IngestItemSchema, mustHoldUpdates),
      v.minLength(1, mustHoldUpdates),
      v.maxLength(MAX_INGEST_ITEMS, mustHoldUpdates),
    ),
    (issue) =>
      `the body must be an update (an object with \`type\`) or an array of 1 to ${MAX_INGEST_ITEMS} of them, received ${issue.received}`,
  ),
  v.title('Ingest body'),
  v.description(
    `One update, or an array of 1 to ${MAX_INGEST_ITEMS}, published in order. The server adds \`agent_id\` and \`timestamp\`.`,
  ),
  v.examples([
    { type: 'status_update', status: 'running' },
    [
      { type: 'task_update', task_id: 'task-42', status: 'running', progress: 60 },
      { type: 'task_update', task_id: 'task-42', status: 'completed', progress: 100, result: { pages: 3 } },
    ],
  ]),
);

/** The message of a batch of the wrong size. */
function mustHoldUpdates(issue: v.BaseIssue<unknown>): string {
  return `a batch must hold 1 to ${MAX_INGEST_ITEMS} updates, received ${issue.received}`;
}

/**
 * Ingest accepted schema: the 202 body of `POST /agents/:agent_id/updates`.
 */
export const IngestAcceptedSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly accepted: v.SchemaWithPipe<
        readonly [
          v.NumberSchema<undefined>,
          v.IntegerAction<number, undefined>,
          v.MinValueAction<number, 1, undefined>,
          v.DescriptionAction<number, string>,
        ]
      >;
    },
    undefined
  >
> = v.pipe(
  v.object({ accepted: v.pipe(v.number(), v.integer(), v.minValue(1), v.description('Updates accepted.')) }),
  v.title('Ingest accepted'),
  v.description('The updates were published to the agent, or queued while it has no connection.'),
  v.examples([{ accepted: 2 }]),
);

/**
 * HTTP error schema: the body of every refusal of the HTTP routes (handshake and ingest).
 */
export const HttpErrorSchema: DocumentedWithExamples<
  v.ObjectSchema<
    {
      readonly error: v.SchemaWithPipe<
        readonly [v.PicklistSchema<typeof HTTP_ERROR_CODES, undefined>, v.DescriptionAction<HttpErrorCode, string>]
      >;
      readonly message: v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.DescriptionAction<string, string>]>;
      readonly issues: v.OptionalSchema<
        v.SchemaWithPipe<
          readonly [
            v.ArraySchema<
              v.ObjectSchema<
                {
                  readonly path: v.SchemaWithPipe<
                    readonly [
                      v.NullableSchema<v.StringSchema<undefined>, undefined>,
                      v.DescriptionAction<string | null, string>,
                    ]
                  >;
                  readonly message: v.StringSchema<undefined>;
                },
                undefined
              >,
              undefined
            >,
            v.DescriptionAction<{ path: string | null; message: string }[], string>,
          ]
        >,
        undefined
      >;
    },
    undefined
  >
> = v.pipe(
  v.object({
    error: v.pipe(
      v.picklist(HTTP_ERROR_CODES),
      v.description(
        `Machine-readable code: ${HTTP_ERROR_CODES.map((code) => `\`${code}\` (${HTTP_ERRORS[code].status}: ${HTTP_ERRORS[code].means})`).join(', ')}. Every refusal repeats it in the \`X-Agent-WS-Error\` header.`,
      ),
    ),
    message: v.pipe(v.string(), v.description('Human-readable explanation.')),
    issues: v.optional(
      v.pipe(
        v.array(
          v.object({
            path: v.pipe(v.nullable(v.string()), v.description('Dot path of the offending field; null for the body.')),
            message: v.string(),
          }),
        ),
        v.description('With `invalid_update`: what is wrong with the body.'),
      ),
    ),
  }),
  v.title('HTTP error'),
  v.description('Why an HTTP request was refused.'),
  v.examples([
    {
      error: 'invalid_update',
      message: 'progress must be a number from 0 to 100, received 140',
      issues: [{ path: 'progress', message: 'progress must be a number from 0 to 100, received 140' }],
    },
  ]),
);

/** Connection established message. */
export type ConnectionEstablished = v.InferOutput<typeof ConnectionEstablishedSchema>;
/** Status update message. */
export type StatusUpdate = v.InferOutput<typeof StatusUpdateSchema>;
/** Task update message. */
export type TaskUpdate = v.InferOutput<typeof TaskUpdateSchema>;
/** Either update an agent produces. */
export type AgentUpdate = v.InferOutput<typeof AgentUpdateSchema>;
/** An update before the broker numbered it: what `Broker.publish` receives. */
export type UnsequencedUpdate = AgentUpdate extends infer U
  ? U extends AgentUpdate
    ? Omit<U, 'seq' | 'epoch'>
    : never
  : never;
/** Snapshot message. */
export type Snapshot = v.InferOutput<typeof SnapshotSchema>;
/** Batch update message. */
export type BatchUpdate = v.InferOutput<typeof BatchUpdateSchema>;
/** Ping message. */
export type Ping = v.InferOutput<typeof PingSchema>;
/** Pong message. */
export type Pong = v.InferOutput<typeof PongSchema>;
/** Error message. */
export type ErrorMessage = v.InferOutput<typeof ErrorSchema>;
/** Error code of an `error` frame. */
export type ErrorCode = (typeof ERROR_CODES)[number];
/** Error code of an HTTP refusal. */
export type HttpErrorCode = (typeof HTTP_ERROR_CODES)[number];
/** Any frame the server sends. */
export type ServerMessage = v.InferOutput<typeof ServerMessageSchema>;
/** Any frame a client may send. */
export type ClientMessage = v.InferOutput<typeof ClientMessageSchema>;
/** The fields of a status update a publisher provides. */
export type StatusUpdateInput = v.InferInput<typeof StatusUpdateFieldsSchema>;
/** The fields of a task update a publisher provides. */
export type TaskUpdateInput = v.InferInput<typeof TaskUpdateFieldsSchema>;
/** One update posted to the ingest route. */
export type IngestItem = v.InferOutput<typeof IngestItemSchema>;
