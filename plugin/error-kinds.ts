/**
 * Every kind of error the hub counts, once: what each counts and how the client is answered.
 * The `error` frame codes (`ERROR_CODES`), the HTTP refusal codes (`HTTP_ERROR_CODES`), the
 * `errors_by_kind` of the stats and the `kind` label of `hono_agent_ws_errors_total` all come
 * from here, so the docs can be generated from it too.
 *
 * @module
 */

/** Bad frames from clients, each answered with an `error` frame of the same code; the connection stays open. */
const FRAME_ERROR_KINDS = ['invalid_json', 'invalid_message', 'unknown_type', 'binary_not_supported'] as const;

/**
 * Frames over `maxMessageSize` (close 1009), invalid UTF-8 in a text frame (1007), a broken
 * WebSocket protocol (1002), frames faster than the inbound budget (1008): whoever detects them,
 * the hub or the runtime's WebSocket stack.
 */
const CLOSING_FRAME_KINDS = ['message_too_big', 'invalid_utf8', 'protocol_error', 'rate_limited'] as const;

/**
 * Sockets that failed: a send threw, the runtime reported an error, the peer vanished (close
 * 1006 or 0), no pong between two sweeps (4000), or the send buffer overflowed (4001).
 */
const SOCKET_KINDS = ['send_failed', 'socket_error', 'abrupt_close', 'heartbeat_timeout', 'slow_consumer'] as const;

/** Refused requests, each answered with its own HTTP error code (the same name). */
const REFUSED_REQUEST_KINDS = [
  'invalid_agent_id',
  'invalid_resume',
  'invalid_query',
  'upgrade_required',
  'unauthorized',
  'forbidden',
  'origin_forbidden',
  'unavailable',
] as const;

/** Failures of the server's side: the broker's, and those the hub contained. */
const SERVER_KINDS = ['broker_error', 'internal_error'] as const;

/** The ingest route's own refusals, all counted as `ingest_rejected`. */
const INGEST_REFUSALS = ['payload_too_large', 'unsupported_media_type', 'invalid_json', 'invalid_update'] as const;

/**
 * Kinds of error the hub counts; `errors` in the stats is their sum.
 */
export const ERROR_KINDS: readonly [
  ...typeof FRAME_ERROR_KINDS,
  ...typeof CLOSING_FRAME_KINDS,
  ...typeof SOCKET_KINDS,
  ...typeof REFUSED_REQUEST_KINDS,
  'ingest_rejected',
  ...typeof SERVER_KINDS,
] = [
  ...FRAME_ERROR_KINDS,
  ...CLOSING_FRAME_KINDS,
  ...SOCKET_KINDS,
  ...REFUSED_REQUEST_KINDS,
  'ingest_rejected',
  ...SERVER_KINDS,
];

/** A kind of error the hub counts. */
export type ErrorKind = (typeof ERROR_KINDS)[number];

/**
 * Error codes the server sends in `error` frames: the kinds of bad frame that leave the
 * connection open.
 */
export const ERROR_CODES: typeof FRAME_ERROR_KINDS = FRAME_ERROR_KINDS;

/**
 * Error codes of the HTTP routes' refusals (the `error` field and the `X-Agent-WS-Error` header):
 * the refused-request kinds, and the ingest route's own refusals.
 */
export const HTTP_ERROR_CODES: readonly [...typeof REFUSED_REQUEST_KINDS, ...typeof INGEST_REFUSALS] = [
  ...REFUSED_REQUEST_KINDS,
  ...INGEST_REFUSALS,
];

/** An error code of an HTTP refusal. */
export type HttpErrorCode = (typeof HTTP_ERROR_CODES)[number];

/**
 * What each kind counts and how the client learns of it (an `error` frame, a close code, an
 * HTTP status, or nothing: a failure of the server's own).
 */
export const ERROR_KIND_DESCRIPTIONS: {
  readonly [K in ErrorKind]: { readonly counts: string; readonly answer: string };
} = {
  invalid_json: { counts: 'A frame that is not JSON.', answer: '`error` frame `invalid_json`' },
  invalid_message: { counts: 'A JSON frame of the wrong shape.', answer: '`error` frame `invalid_message`' },
  unknown_type: {
    counts: 'A frame whose `type` the server does not accept from clients.',
    answer: '`error` frame `unknown_type`',
  },
  binary_not_supported: { counts: 'A binary frame.', answer: '`error` frame `binary_not_supported`' },
  message_too_big: { counts: 'A frame over `maxMessageSize`.', answer: 'close 1009' },
  invalid_utf8: { counts: 'Invalid UTF-8 in a text frame.', answer: 'close 1007' },
  protocol_error: { counts: 'A broken WebSocket protocol.', answer: 'close 1002' },
  rate_limited: {
    counts: 'Frames faster than the inbound budget, or too many before `connection_established`.',
    answer: 'close 1008',
  },
  send_failed: { counts: 'A write to a socket threw.', answer: 'close 1011' },
  socket_error: { counts: 'The runtime reported an error on a socket.', answer: 'the socket is closed' },
  abrupt_close: { counts: 'The peer vanished without a close frame (close 1006, or 0 on Deno).', answer: 'none' },
  heartbeat_timeout: { counts: 'No pong between two heartbeat sweeps.', answer: 'close 4000' },
  slow_consumer: { counts: 'A send buffer over `maxBufferedAmount`.', answer: 'close 4001' },
  invalid_agent_id: { counts: 'A malformed agent id in a WebSocket request.', answer: 'HTTP 400 `invalid_agent_id`' },
  invalid_resume: { counts: 'A malformed `since`/`epoch`.', answer: 'HTTP 400 `invalid_resume`' },
  invalid_query: {
    counts: 'A malformed `limit`, `cursor` or `tasks` of `GET /ws/agents`.',
    answer: 'HTTP 400 `invalid_query`',
  },
  upgrade_required: { counts: 'A request to the WebSocket route that is not an upgrade.', answer: 'HTTP 426' },
  unauthorized: { counts: '`authorize` threw an `HTTPException` 401.', answer: 'HTTP 401 `unauthorized`' },
  forbidden: {
    counts: '`authorize` said no (403), or threw an `HTTPException` other than 401.',
    answer: 'HTTP 403 (or the exception’s status) `forbidden`',
  },
  origin_forbidden: { counts: 'A browser origin not allowed.', answer: 'HTTP 403 `origin_forbidden`' },
  unavailable: { counts: 'A request while the hub is closing.', answer: 'HTTP 503 `unavailable`' },
  ingest_rejected: {
    counts: 'An ingest request refused for its agent id, media type, size, JSON or updates.',
    answer: 'HTTP 400, 413 or 415 with its code',
  },
  broker_error: { counts: 'The broker failed to deliver, queue, subscribe or list.', answer: 'none (logged)' },
  internal_error: {
    counts:
      'A failure contained inside the hub (an update that could not be serialised, a throwing hook or callback): it costs one update or one request, and nothing else.',
    answer: 'none (logged)',
  },
};

/**
 * Each HTTP refusal code: its status and what it means.
 */
export const HTTP_ERRORS: { readonly [C in HttpErrorCode]: { readonly status: string; readonly means: string } } = {
  invalid_agent_id: { status: '400', means: 'the agent id is not 1 to 128 characters of `A-Z a-z 0-9 . _ : -`' },
  invalid_resume: { status: '400', means: '`since`/`epoch` malformed' },
  invalid_query: { status: '400', means: 'a malformed `limit`, `cursor` or `tasks` of the agents listing' },
  upgrade_required: { status: '426', means: 'not a WebSocket request' },
  unauthorized: { status: '401', means: 'refused by `authorize`' },
  forbidden: { status: '403, or another status an `authorize` hook chose', means: 'refused by `authorize`' },
  origin_forbidden: { status: '403', means: 'a browser origin not allowed' },
  unavailable: { status: '503', means: 'the hub is closing, or the broker failed' },
  payload_too_large: { status: '413', means: 'an ingest body over `maxIngestBytes`' },
  unsupported_media_type: { status: '415', means: 'not JSON, or not UTF-8' },
  invalid_json: { status: '400', means: 'the ingest body is not JSON' },
  invalid_update: {
    status: '400',
    means: 'with `issues`; also for a `result` nesting deeper than `maxUpdateDepth`',
  },
};
