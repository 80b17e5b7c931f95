import type { WSMessageReceive } from 'hono/ws';
import * as v from 'valibot';
import { CloseCode } from './close-codes.ts';
import { ClientMessageSchema, type ErrorCode } from './schemas.ts';
import type { ErrorKind } from './stats.ts';

/**
 * What to do with one inbound frame.
 *
 * @internal
 */
export type InboundVerdict =
  | { readonly kind: 'ping' }
  | { readonly kind: 'pong' }
  /** Answer with an `error` frame; the connection stays open. */
  | { readonly kind: 'reject'; readonly code: ErrorCode; readonly message: string }
  /** Close the connection. */
  | { readonly kind: 'close'; readonly code: CloseCode; readonly error: ErrorKind };

const PING: InboundVerdict = { kind: 'ping' };
const PONG: InboundVerdict = { kind: 'pong' };
const TOO_BIG: InboundVerdict = { kind: 'close', code: CloseCode.MESSAGE_TOO_BIG, error: 'message_too_big' };
const BINARY: InboundVerdict = {
  kind: 'reject',
  code: 'binary_not_supported',
  message: 'binary frames are not supported; send JSON text',
};
const NOT_JSON: InboundVerdict = { kind: 'reject', code: 'invalid_json', message: 'frame is not valid JSON' };
const NOT_OBJECT: InboundVerdict = {
  kind: 'reject',
  code: 'invalid_message',
  message: 'expected a JSON object with a string "type"',
};

const utf8 = new TextEncoder();

/** Bytes of a frame, encoding a string only when its length alone cannot decide. */
function exceeds(data: WSMessageReceive, limit: number): boolean {
  if (typeof data === 'string') {
    // UTF-8 takes at least one byte per UTF-16 unit and at most three.
    if (data.length > limit) return true;
    if (data.length * 3 <= limit) return false;
    return utf8.encode(data).byteLength > limit;
  }
  return (data instanceof Blob ? data.size : data.byteLength) > limit;
}

/**
 * Classifies one frame from a client: every input has one documented answer.
 *
 * @param data The frame as the runtime delivered it.
 * @param maxMessageSize Largest frame accepted, in bytes.
 *
 * @returns The verdict.
 *
 * @internal
 */
export function classifyFrame(data: WSMessageReceive, maxMessageSize: number): InboundVerdict {
  if (exceeds(data, maxMessageSize)) return TOO_BIG;
  if (typeof data !== 'string') return BINARY;
  let message: unknown;
  try {
    message = JSON.parse(data);
  } catch {
    return NOT_JSON;
  }
  const type = (message as { type?: unknown } | null)?.type;
  if (typeof message !== 'object' || message === null || Array.isArray(message) || typeof type !== 'string') {
    return NOT_OBJECT;
  }
  if (type !== 'pong' && type !== 'ping') {
    return {
      kind: 'reject',
      code: 'unknown_type',
      message: `unknown message type ${JSON.stringify(type.slice(0, 64))}`,
    };
  }
  const parsed = v.safeParse(ClientMessageSchema, message);
  if (!parsed.success) return { kind: 'reject', code: 'invalid_message', message: v.summarize(parsed.issues) };
  return parsed.output.type === 'ping' ? PING : PONG;
}

/**
 * A token bucket per connection, kept as two numbers on the connection itself.
 *
 * @internal
 */
export interface InboundBudget {
  /** Frames that may still be sent at once. */
  tokens: number;
  /** When `tokens` was last refilled, `performance.now()` milliseconds. */
  refilledAt: number;
}

/**
 * Spends one frame of a connection's budget.
 *
 * @param budget The connection's bucket.
 * @param rate Frames per second refilled; 0 means no limit.
 * @param burst Bucket size.
 * @param now `performance.now()`.
 *
 * @returns `false` when the frame is over budget.
 *
 * @internal
 */
export function spendFrame(budget: InboundBudget, rate: number, burst: number, now: number): boolean {
  if (rate === 0) return true;
  budget.tokens = Math.min(burst, budget.tokens + ((now - budget.refilledAt) * rate) / 1000);
  budget.refilledAt = now;
  if (budget.tokens < 1) return false;
  budget.tokens -= 1;
  return true;
}

/**
 * What a runtime's WebSocket stack reported, mapped to the error it counts as and the close code
 * it already sent: `ws` (Node, under both `@hono/node-server` and `@hono/node-ws`) raises errors
 * with a `WS_ERR_*` code; Bun and Deno close with the standard code.
 *
 * @internal
 */
export function classifySocketFailure(failure: { error?: unknown; code?: number }): {
  kind: ErrorKind;
  code: CloseCode;
} {
  const wsCode = (failure.error as { code?: unknown } | undefined)?.code;
  if (wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || failure.code === 1009) {
    return { kind: 'message_too_big', code: CloseCode.MESSAGE_TOO_BIG };
  }
  if (wsCode === 'WS_ERR_INVALID_UTF8' || failure.code === 1007) {
    return { kind: 'invalid_utf8', code: CloseCode.INVALID_UTF8 };
  }
  if ((typeof wsCode === 'string' && wsCode.startsWith('WS_ERR_')) || failure.code === 1002) {
    return { kind: 'protocol_error', code: CloseCode.PROTOCOL_ERROR };
  }
  return { kind: 'socket_error', code: CloseCode.INTERNAL_ERROR };
}
