import type { WSContext } from 'hono/ws';
import type { SocketBinding } from './binding.ts';

/**
 * One socket the fan-out writes to.
 *
 * @internal
 */
export interface Recipient {
  readonly socket: WSContext;
  readonly binding: SocketBinding;
  /** Admitted: it has had `connection_established`, and gets every frame from then on. */
  readonly established: boolean;
}

/**
 * The sockets of one agent.
 *
 * @internal
 */
export interface Audience<R extends Recipient> {
  readonly agentId: string;
  readonly connections: ReadonlySet<R>;
  /**
   * The binding whose native pub/sub fans this agent's frames out, while every connection
   * shares it; `null` once connections of different bindings mix (then: one write per socket).
   */
  topicBinding: SocketBinding | null | undefined;
  /** Characters broadcast to the agent since its sockets' send buffers were last looked at. */
  unchecked: number;
}

/**
 * What the fan-out reports to the hub; the hub decides what a failure costs.
 *
 * @internal
 */
export interface FanOutContext<R extends Recipient> {
  /** Bytes that may wait in a send buffer; 0 disables the check. */
  readonly maxBufferedAmount: number;
  /** Prefix of native topics, unique per hub (several hubs may share one server). */
  readonly topicPrefix: string;
  /** Frames written, one per socket. */
  readonly sent: (count: number) => void;
  /** A write threw. */
  readonly failed: (recipient: R, error: unknown) => void;
  /** A send buffer holds more than `maxBufferedAmount`. */
  readonly slow: (recipient: R) => void;
  /** The native fan-out failed as a whole; the audience falls back to one write per socket. */
  readonly topicFailed: (agentId: string, error: unknown) => void;
}

/**
 * Writes frames to sockets: each frame serialised once by the caller, prepared once per binding,
 * and written once per socket or once per agent through a runtime's native topics.
 *
 * @internal
 */
export interface FanOut<R extends Recipient> {
  /** One frame to one socket. */
  sendTo(recipient: R, frame: string): void;
  /** One frame, already prepared by the recipient's binding, to one socket. */
  sendPrepared(recipient: R, prepared: unknown): void;
  /** Prepares one frame for many sockets: once per binding, not once per socket. */
  preparer(frame: string): (recipient: R) => unknown;
  /** One frame to every admitted socket of an agent. */
  broadcast(audience: Audience<R>, frame: string): void;
  /** The native topic of an agent. */
  topicOf(agentId: string): string;
}

/**
 * The native topic of an agent's frames, for a hub whose topics start with `prefix`.
 *
 * @internal
 */
export const agentTopic = (prefix: string, agentId: string): string => `${prefix}:${agentId}`;

/**
 * Creates the fan-out of one hub.
 *
 * @internal
 */
export function createFanOut<R extends Recipient>(context: FanOutContext<R>): FanOut<R> {
  const { maxBufferedAmount, topicPrefix } = context;
  /**
   * Broadcasts look at an agent's send buffers once per this many characters sent to it, not
   * per frame: reading a buffer is a call into the runtime per socket (on Bun's native topics,
   * the only per-socket work left). A buffer at or under the limit at one look has grown by at
   * most this plus one frame by the next, so a slow consumer is dropped before its buffer holds
   * more than 17/16 of `maxBufferedAmount` plus one frame.
   */
  const checkEvery = Math.floor(maxBufferedAmount / 16);
  /** Whether this broadcast looks at the buffers; counts the frame. */
  const dueForCheck = (audience: Audience<R>, frame: string): boolean => {
    if (maxBufferedAmount === 0) return false;
    audience.unchecked += frame.length;
    if (audience.unchecked < checkEvery) return false;
    audience.unchecked = 0;
    return true;
  };

  const checkSlow = (recipient: R) => {
    if (maxBufferedAmount > 0 && recipient.binding.bufferedAmount(recipient.socket) > maxBufferedAmount) {
      context.slow(recipient);
    }
  };

  const sendPrepared = (recipient: R, prepared: unknown) => {
    try {
      recipient.binding.send(recipient.socket, prepared);
    } catch (error) {
      context.failed(recipient, error);
      return;
    }
    context.sent(1);
    checkSlow(recipient);
  };

  const preparer = (frame: string) => {
    let binding: SocketBinding | undefined;
    let prepared: unknown;
    return (recipient: R) => {
      if (recipient.binding !== binding) {
        binding = recipient.binding;
        prepared = binding.prepare(frame);
      }
      return prepared;
    };
  };

  const topicOf = (agentId: string) => agentTopic(topicPrefix, agentId);

  const broadcast = (audience: Audience<R>, frame: string): void => {
    const binding = audience.topicBinding;
    if (binding?.topics) {
      let via: R | undefined;
      let admitted = 0;
      for (const recipient of audience.connections) {
        if (!recipient.established) continue;
        via ??= recipient;
        admitted++;
      }
      if (!via) return;
      try {
        binding.topics.publish(via.socket, topicOf(audience.agentId), binding.prepare(frame));
      } catch (error) {
        context.topicFailed(audience.agentId, error);
        audience.topicBinding = null;
        broadcast(audience, frame);
        return;
      }
      context.sent(admitted);
      if (dueForCheck(audience, frame)) for (const recipient of audience.connections) checkSlow(recipient);
      return;
    }
    const check = dueForCheck(audience, frame);
    let current: SocketBinding | undefined;
    let prepared: unknown;
    let sent = 0;
    for (const recipient of audience.connections) {
      // Not admitted yet: it gets connection_established first, and what it missed with it.
      if (!recipient.established) continue;
      if (recipient.binding !== current) {
        current = recipient.binding;
        prepared = current.prepare(frame);
      }
      try {
        current.send(recipient.socket, prepared);
      } catch (error) {
        context.failed(recipient, error);
        continue;
      }
      sent++;
      if (check) checkSlow(recipient);
    }
    if (sent > 0) context.sent(sent);
  };

  return {
    sendTo: (recipient, frame) => sendPrepared(recipient, recipient.binding.prepare(frame)),
    sendPrepared,
    preparer,
    broadcast,
    topicOf,
  };
}
