/**
 * Every close code the hub sends, with its reason text, what it means, and what a client should
 * do about it. One table: the hub, the spec generator, the docs (npm run docs) and the client read it.
 *
 * Codes below 4000 are the standard ones (RFC 6455 §7.4.1); 4000–4999 are this protocol's own.
 */
export const CLOSE_CODES = {
  1001: {
    name: 'GOING_AWAY',
    reason: 'server shutting down',
    description: 'The hub is shutting down (`hub.close()`); reconnect to another instance or later.',
    reconnect: true,
  },
  1002: {
    name: 'PROTOCOL_ERROR',
    reason: 'protocol error',
    description:
      'The client broke the WebSocket protocol (an unmasked frame, a reserved opcode or bit, a bad control frame).',
    reconnect: true,
  },
  1007: {
    name: 'INVALID_UTF8',
    reason: 'invalid utf-8',
    description: 'A text frame was not valid UTF-8.',
    reconnect: true,
  },
  1008: {
    name: 'RATE_LIMITED',
    reason: 'rate limit exceeded',
    description: 'The client sent frames faster than `maxInboundRate` per second (after a burst of `maxInboundBurst`).',
    reconnect: true,
  },
  1009: {
    name: 'MESSAGE_TOO_BIG',
    reason: 'message too big',
    description: 'An inbound frame was larger than `maxMessageSize` bytes.',
    reconnect: true,
  },
  1011: {
    name: 'INTERNAL_ERROR',
    reason: 'internal error',
    description: 'The server failed to write to the socket, or its broker failed while the connection was joining.',
    reconnect: true,
  },
  4000: {
    name: 'HEARTBEAT_TIMEOUT',
    reason: 'heartbeat timeout',
    description: 'No `pong` arrived between two heartbeat sweeps.',
    reconnect: true,
  },
  4001: {
    name: 'SLOW_CONSUMER',
    reason: 'slow consumer',
    description: 'The client read too slowly: more than `maxBufferedAmount` bytes were waiting to be sent.',
    reconnect: true,
  },
} as const satisfies Record<number, CloseCodeInfo>;

/** What the table says of one close code. */
export interface CloseCodeInfo {
  /** The constant's name in `CloseCode`. */
  readonly name: string;
  /** Sent as the close frame's reason text. */
  readonly reason: string;
  /** What it means, for people. */
  readonly description: string;
  /** Whether a client should reconnect (with backoff) after it. */
  readonly reconnect: boolean;
}

type Table = typeof CLOSE_CODES;
type CodeOf<Name> = { [K in keyof Table]: Table[K]['name'] extends Name ? K : never }[keyof Table];

/** A close code the hub uses. */
export type CloseCode = keyof Table;

/**
 * The close codes by name, e.g. `CloseCode.HEARTBEAT_TIMEOUT` is 4000.
 */
export const CloseCode: { readonly [Name in Table[CloseCode]['name']]: CodeOf<Name> } = Object.freeze(
  Object.fromEntries(Object.entries(CLOSE_CODES).map(([code, info]) => [info.name, Number(code)])),
) as { readonly [Name in Table[CloseCode]['name']]: CodeOf<Name> };

/**
 * Close reasons, sent as the close frame's reason text.
 */
export const CLOSE_REASONS: Readonly<Record<CloseCode, string>> = Object.freeze(
  Object.fromEntries(Object.entries(CLOSE_CODES).map(([code, info]) => [code, info.reason])),
) as Readonly<Record<CloseCode, string>>;
