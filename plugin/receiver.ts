import type { WSMessageReceive } from 'hono/ws';
import type { Connection } from './channel.ts';
import { CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Departure } from './departure.ts';
import type { FanOut } from './fanout.ts';
import { classifyFrame, spendFrame } from './inbound.ts';
import type { ErrorCode } from './schemas.ts';

/** Most frames held from a client before its `connection_established` is sent. */
const MAX_EARLY_FRAMES = 16;

/**
 * What a hub does with the frames its clients send: each gets its documented answer
 * (plugin/inbound.ts classifies), within the inbound budget.
 *
 * @internal
 */
export interface Receiver {
  /** A frame from a connection: spent against its budget, then answered, or held until it is established. */
  onFrame(connection: Connection, data: WSMessageReceive): void;
  /** Answers frames a client sent while it was being admitted: after connection_established and the replay. */
  answerEarlyFrames(connection: Connection): void;
}

/**
 * Creates the receiver of one hub.
 *
 * @internal
 */
export function createReceiver(core: HubCore, departure: Departure, fanOut: FanOut<Connection>): Receiver {
  const { counters, countError, throttle } = core;
  const { maxMessageSize, maxInboundRate, maxInboundBurst } = core.config;
  const { drop } = departure;
  const { sendTo } = fanOut;

  const reject = (connection: Connection, code: ErrorCode, message: string) => {
    countError(code);
    throttle.note(`bad_frame:${code}`, 'warn', 'bad_frame', {
      agent_id: connection.channel.agentId,
      connection_id: connection.id,
      code,
      message,
    });
    sendTo(connection, JSON.stringify({ type: 'error', code, message, timestamp: new Date().toISOString() }));
  };

  const receive = (connection: Connection, data: WSMessageReceive) => {
    counters.messages_received++;
    const verdict = classifyFrame(data, maxMessageSize);
    switch (verdict.kind) {
      case 'pong':
        connection.alive = true;
        return;
      case 'ping':
        connection.alive = true;
        return sendTo(connection, JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
      case 'reject':
        return reject(connection, verdict.code, verdict.message);
      case 'close':
        countError(verdict.error);
        return drop(connection, verdict.code, { limit: maxMessageSize });
    }
  };

  const onFrame = (connection: Connection, data: WSMessageReceive): void => {
    if (!spendFrame(connection, maxInboundRate, maxInboundBurst, performance.now())) {
      counters.messages_received++;
      countError('rate_limited');
      drop(connection, CloseCode.RATE_LIMITED, { rate: maxInboundRate, burst: maxInboundBurst });
      return;
    }
    if (connection.established) {
      receive(connection, data);
      return;
    }
    // The broker is still subscribing (Redis). A client has no reason to send much before
    // it hears from the server, so a few frames are held and a flood is refused.
    connection.early ??= [];
    if (connection.early.push(data) > MAX_EARLY_FRAMES) {
      counters.messages_received += connection.early.length;
      countError('rate_limited');
      drop(connection, CloseCode.RATE_LIMITED, { early_frames: connection.early.length });
    }
  };

  const answerEarlyFrames = (connection: Connection) => {
    const early = connection.early;
    connection.early = undefined;
    if (early) for (const data of early) if (connection.open) receive(connection, data);
  };

  return { onFrame, answerEarlyFrames };
}
