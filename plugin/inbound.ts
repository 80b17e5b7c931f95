import type { WSMessageReceive } from 'hono/ws';
import * as v from 'valibot';
import { CloseCode } from './close-codes.ts';
import type { ErrorKind } from './error-kinds.ts';
import { ClientMessageSchema, type ErrorCode } from './schemas.ts';

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

/** What each close code a WebSocket stack sends for a bad frame counts as. */
const FAILURE_KINDS: Partial<Record<number, { kind: ErrorKind; code: CloseCode }>> = {
  1002: { kind: 'protocol_error', code: CloseCode.PROTOCOL_ERROR },
  1007: { kind: 'invalid_utf8', code: CloseCode.INVALID_UTF8 },
  1008: { kind: 'rate_limited', code: CloseCode.RATE_LIMITED },
  1009: { kind: 'message_too_big', code: CloseCode.MESSAGE_TOO_BIG },
};

/**
 * The close code `ws` (Node, under both `@hono/node-server` and `@hono/node-ws`) attaches to
 * the error it raises for a bad frame, as a symbol-keyed `status-code` property.
 */
function wsStatusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  for (const key of Object.getOwnPropertySymbols(error)) {
    if (key.description === 'status-code') return (error as Record<symbol, unknown>)[key] as number;
  }
  return undefined;
}

/**
 * What a runtime's WebSocket stack reported in an error event, mapped to the error it counts as
 * and the close code it already sent. Only `ws` says why; Bun and Deno answer bad frames
 * themselves and report them as a dropped connection.
 *
 * @internal
 */
export function classifySocketFailure(error: unknown): { kind: ErrorKind; code: CloseCode } {
  return FAILURE_KINDS[wsStatusCode(error) ?? 0] ?? { kind: 'socket_error', code: CloseCode.INTERNAL_ERROR };
}
