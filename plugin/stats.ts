/**
 * Kinds of error the hub counts; `errors` in the stats is their sum.
 */
export const ERROR_KINDS = [
  // Bad frames from clients, each answered with an `error` frame of the same code.
  'invalid_json',
  'invalid_message',
  'unknown_type',
  'binary_not_supported',
  // Frames over `maxMessageSize`, answered with close 1009.
  'message_too_big',
  // Sockets that failed: a send threw, the runtime reported an error, the peer vanished
  // (close 1006 or 0), no pong between two sweeps (4000), or the send buffer overflowed (4001).
  'send_failed',
  'socket_error',
  'abrupt_close',
  'heartbeat_timeout',
  'slow_consumer',
  // Refused upgrades: 400 bad agent id, 426 not a WebSocket request, 401/403 from `authorize`,
  // 503 while the hub is closing.
  'invalid_agent_id',
  'upgrade_required',
  'unauthorized',
  'forbidden',
  'unavailable',
  // Ingest requests answered 400, 413 or 415.
  'ingest_rejected',
  // The broker failed to deliver, queue or subscribe.
  'broker_error',
] as const;

/** A kind of error the hub counts. */
export type ErrorKind = (typeof ERROR_KINDS)[number];

/**
 * The hub's counters, as served by `GET /agents/ws/stats`.
 */
export interface HubStats {
  /** Connections accepted since the hub started. */
  total_connections: number;
  /** Connections open now. */
  active_connections: number;
  /** Agents with at least one open connection now. */
  agents_connected: number;
  /** Frames written to sockets (one per socket: a frame sent to 3 clients counts 3). */
  messages_sent: number;
  /** Frames received from clients. */
  messages_received: number;
  /** Updates accepted from `publishStatus`, `publishTask` and the ingest route. */
  updates_published: number;
  /** `batch_update` frames built (once per agent, however many clients receive it). */
  batches_sent: number;
  /** Updates put in an offline queue because their agent had no connection. */
  messages_queued: number;
  /** Updates waiting in offline queues now. */
  queued_messages: number;
  /** Queued updates dropped because a queue was full. */
  messages_dropped: number;
  /** Sum of `errors_by_kind`. */
  errors: number;
  /** Errors by kind; see the README for what each counts. */
  errors_by_kind: Record<ErrorKind, number>;
  /** When the hub started, ISO-8601. */
  started_at: string;
  /** Seconds since the hub started. */
  uptime_seconds: number;
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
