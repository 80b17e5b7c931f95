import type { WSContext, WSEvents, WSMessageReceive } from 'hono/ws';
import type { Admission } from './admission.ts';
import type { ResumePoint, SocketBinding } from './binding.ts';
import { type Channel, type Connection, createChannel } from './channel.ts';
import { CLOSE_REASONS, CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Delivery } from './delivery.ts';
import type { Departure } from './departure.ts';
import { classifySocketFailure } from './inbound.ts';
import type { Receiver } from './receiver.ts';

/**
 * The life cycle of one socket: the listeners the upgrade hands the runtime, from the open
 * (a connection added to its agent's channel, which joins the broker if new) to the close.
 *
 * @internal
 */
export type Connect = (agentId: string, binding: SocketBinding, resume: ResumePoint | undefined) => WSEvents;

/**
 * Creates the socket listeners of one hub.
 *
 * @returns What the WebSocket route calls for each upgrade.
 *
 * @internal
 */
export function createSockets(
  core: HubCore,
  departure: Departure,
  delivery: Delivery,
  receiver: Receiver,
  admission: Admission,
): Connect {
  const { connections, channels, counters, countError, internalError, log, idPrefix } = core;
  const { maxInboundBurst } = core.config;
  const { removeConnection, drop } = departure;
  const { flush } = delivery;
  const { onFrame } = receiver;
  const { join, admit } = admission;
  let connectionSeq = 0;

  /** A new connection of `agentId` on `socket`, added to its channel (made if new). */
  const addConnection = (
    agentId: string,
    binding: SocketBinding,
    resume: ResumePoint | undefined,
    socket: WSContext,
  ): Connection => {
    let channel: Channel | undefined = channels.get(agentId);
    if (!channel) {
      channel = createChannel(agentId);
      channels.set(agentId, channel);
    }
    const connection: Connection = {
      id: `${idPrefix}-${++connectionSeq}`,
      channel,
      socket,
      binding,
      alive: true,
      open: true,
      established: false,
      early: undefined,
      resume,
      tokens: maxInboundBurst,
      refilledAt: performance.now(),
    };
    connections.add(connection);
    channel.connections.add(connection);
    counters.total_connections++;
    return connection;
  };

  /** Starts a connection `addConnection` made; `isNewChannel` when its channel was made for it. */
  const startConnection = (connection: Connection, isNewChannel: boolean): void => {
    const { channel } = connection;
    log('info', 'connection_open', { agent_id: channel.agentId, connection_id: connection.id });
    // A channel still joining admits its connections when the broker answers. A live one
    // first sends what its window holds, so the newcomer starts exactly where the others are.
    if (channel.state === 'live') {
      flush(channel);
      admit(connection);
    } else if (isNewChannel) join(channel);
  };

  const onClosed = (connection: Connection, code: number): void => {
    const wasOpen = removeConnection(connection);
    if (!wasOpen) return;
    // 1006 (Node, Bun) and 0 (Deno) mean the peer vanished without a close frame. Other codes
    // are the client's own choice, not an error of ours.
    if (code === 1006 || code === 0) countError('abrupt_close');
    log('info', 'connection_close', { agent_id: connection.channel.agentId, connection_id: connection.id, code });
  };

  const onFailed = (connection: Connection, event: Event): void => {
    const error = (event as ErrorEvent).error ?? (event as ErrorEvent).message;
    const failure = classifySocketFailure(error);
    countError(failure.kind);
    drop(connection, failure.code, { error: String(error) });
  };

  /**
   * A connection's listeners: one object per socket holding its state, the methods shared by
   * every socket (a closure per listener would cost four functions and their scope per socket).
   * Every hono adapter calls them as methods (`events.onOpen?.(event, context)`), so `this` is
   * the listeners. Every event is contained: what a client sends, or a runtime reports, never
   * escapes into the runtime's event loop as an uncaught exception.
   */
  class Listeners implements WSEvents {
    connection: Connection | undefined = undefined;
    constructor(
      readonly agentId: string,
      readonly binding: SocketBinding,
      readonly resume: ResumePoint | undefined,
    ) {}
    onOpen(_event: Event, socket: WSContext): void {
      try {
        if (core.closing) {
          socket.close(CloseCode.GOING_AWAY, CLOSE_REASONS[CloseCode.GOING_AWAY]);
          return;
        }
        const isNewChannel = !channels.has(this.agentId);
        this.connection = addConnection(this.agentId, this.binding, this.resume, socket);
        startConnection(this.connection, isNewChannel);
      } catch (error) {
        internalError('open', error, this.agentId);
      }
    }
    onMessage(event: MessageEvent<WSMessageReceive>, _socket: WSContext): void {
      try {
        if (this.connection?.open) onFrame(this.connection, event.data);
      } catch (error) {
        internalError('message', error, this.agentId);
      }
    }
    onClose(event: CloseEvent, _socket: WSContext): void {
      try {
        if (this.connection) onClosed(this.connection, event.code);
      } catch (error) {
        internalError('close', error, this.agentId);
      }
    }
    onError(event: Event, _socket: WSContext): void {
      try {
        if (this.connection?.open) onFailed(this.connection, event);
      } catch (error) {
        internalError('error', error, this.agentId);
      }
    }
  }

  // The agent id is the channel's own string when the agent has one: one string per agent, not
  // one per connection (the route's parameter is a fresh string each time).
  return (agentId, binding, resume) => new Listeners(channels.get(agentId)?.agentId ?? agentId, binding, resume);
}
