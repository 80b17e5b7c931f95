/**
 * When the client reconnects, and how long it waits: the close-code policy (read from the
 * server's own table, `plugin/close-codes.ts`), the handshake-status policy, and the backoff.
 *
 * @module
 */
import { CLOSE_CODES } from '../plugin/close-codes.ts';

/**
 * The close code the client reports when it gave up on a connection itself: no frame arrived
 * within 2 × `heartbeat_interval`, or the handshake did not finish in time. It is the server's
 * own `HEARTBEAT_TIMEOUT` (the same condition seen from the other end), so the table decides.
 */
export const LIVENESS_TIMEOUT = 4000;

/**
 * Whether a connection that was open and closed with `code` should be reconnected: the
 * server's `CLOSE_CODES[code].reconnect` for every code the hub sends; `true` for every other
 * code (1000, 1005 no status, 1006 abnormal, 0 as Deno reports a vanished peer, 1012–1014 restart
 * and overload from proxies): a watcher keeps watching until told otherwise.
 */
export const reconnectAfterClose = (code: number): boolean =>
  (CLOSE_CODES as Record<number, { reconnect: boolean } | undefined>)[code]?.reconnect ?? true;

/**
 * Whether a handshake refused with HTTP `status` is worth retrying: 408, 425, 426 (the plain
 * request passed every check before the upgrade, so the refusal is not known), 429 and 5xx are;
 * every other status (400 `invalid_agent_id`, 401, 403, 404, …) stops the client.
 */
export const retryAfterStatus = (status: number): boolean =>
  status >= 500 || status === 408 || status === 425 || status === 426 || status === 429;

/**
 * The status a runtime put in the error of a refused handshake: `ws` on Node ("Unexpected
 * server response: 401"), Bun ("Expected 101 status code: 401"), Deno ("Invalid status code:
 * 401"). Browsers say nothing; the client then asks with `fetch` (see `probeHandshake`).
 */
export const statusFromError = (message: unknown): number | undefined => {
  const match = /(?:server response|status code):? (\d{3})\b/i.exec(String(message ?? ''));
  return match ? Number(match[1]) : undefined;
};

/** Backoff settings, milliseconds. */
export interface ReconnectOptions {
  /** Cap of the first wait (default 500). */
  initialDelayMs?: number;
  /** Cap of every wait (default 30000). */
  maxDelayMs?: number;
  /** Failed attempts in a row before giving up (default Infinity). */
  maxRetries?: number;
}

/**
 * Exponential backoff with full jitter: a uniform wait in [0, min(max, initial × 2^attempt)),
 * `attempt` counting failed attempts in a row from 0. Full jitter spreads a crowd of clients
 * that lost the same server over the whole window instead of bunching them.
 */
export const backoffDelay = (attempt: number, options: ReconnectOptions, random: () => number = Math.random): number =>
  Math.floor(random() * Math.min(options.maxDelayMs ?? 30_000, (options.initialDelayMs ?? 500) * 2 ** attempt));
