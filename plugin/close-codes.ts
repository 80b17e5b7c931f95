/**
 * Close codes the hub uses, with the reason text sent alongside.
 *
 * Codes below 4000 are the standard ones (RFC 6455 §7.4.1); 4000–4999 are this protocol's own.
 */
export const CloseCode = {
  /** The hub is shutting down (`hub.close()`); reconnect to another instance or later. */
  GOING_AWAY: 1001,
  /** An inbound frame was larger than `maxMessageSize`. */
  MESSAGE_TOO_BIG: 1009,
  /** The server failed to write to the socket. */
  INTERNAL_ERROR: 1011,
  /** No `pong` arrived between two heartbeat sweeps. */
  HEARTBEAT_TIMEOUT: 4000,
  /** The client read too slowly: more than `maxBufferedAmount` bytes were waiting to be sent. */
  SLOW_CONSUMER: 4001,
} as const;

/** A close code the hub uses. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Close reasons, sent as the close frame's reason text.
 */
export const CLOSE_REASONS: Readonly<Record<CloseCode, string>> = {
  1001: 'server shutting down',
  1009: 'message too big',
  1011: 'send failed',
  4000: 'heartbeat timeout',
  4001: 'slow consumer',
};
