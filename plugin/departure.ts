import type { UnsubscribeReceipt } from './broker.ts';
import type { Channel, Connection } from './channel.ts';
import { CLOSE_REASONS, CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import { agentTopic } from './fanout.ts';
import type { AgentUpdate } from './schemas.ts';

/**
 * How connections leave a hub: closed by their client, dropped by the hub, or found closing;
 * and how an agent whose last connection left hands what it held back to the broker.
 *
 * @internal
 */
export interface Departure {
  /**
   * Stops counting a connection; when it was its agent's last, the channel goes and its pending
   * updates go back to the broker's queue.
   *
   * @returns Whether it was still counted (false: someone else removed it first).
   */
  removeConnection(connection: Connection): boolean;
  /** Closes a connection the hub gave up on; the close event that follows finds it removed. */
  drop(connection: Connection, code: CloseCode, details: Record<string, unknown>): void;
  /** Unsubscribes an agent, handing the broker what its channel could not deliver. */
  leave(agentId: string, undelivered: readonly AgentUpdate[]): void;
  /**
   * Stops counting connections whose socket is closing: a close frame was received or sent, so
   * a frame written now would be lost.
   *
   * @returns Whether the channel still has connections to send to.
   */
  releaseClosing(channel: Channel): boolean;
  /** `releaseClosing` for every agent, at most once a second (the stats call it). */
  releaseAllClosing(): void;
  /** Unsubscribes still under way: `close()` waits for them. */
  readonly pendingLeaves: ReadonlySet<Promise<void>>;
}

/**
 * Creates how connections leave one hub.
 *
 * @internal
 */
export function createDeparture(core: HubCore): Departure {
  const { broker, counters, connections, channels, log, brokerFailed } = core;
  const pendingLeaves = new Set<Promise<void>>();

  const leave = (agentId: string, undelivered: readonly AgentUpdate[]) => {
    const countQueued = (receipt: UnsubscribeReceipt | undefined) => {
      if (receipt) counters.messages_queued += receipt.queued;
    };
    try {
      const result = broker.unsubscribe(agentId, undelivered);
      if (!(result instanceof Promise)) countQueued(result);
      else {
        const settled = result.then(countQueued, (error) => brokerFailed('unsubscribe', agentId, error));
        pendingLeaves.add(settled);
        settled.finally(() => pendingLeaves.delete(settled));
      }
    } catch (error) {
      brokerFailed('unsubscribe', agentId, error);
    }
  };

  const removeConnection = (connection: Connection) => {
    if (!connection.open) return false;
    connection.open = false;
    connections.delete(connection);
    const { channel } = connection;
    if (connection.established && connection.binding.topics) {
      try {
        connection.binding.topics.unsubscribe(connection.socket, agentTopic(core.idPrefix, channel.agentId));
      } catch {
        // Already closed: the runtime dropped its subscriptions with it.
      }
    }
    channel.connections.delete(connection);
    if (channel.connections.size === 0) {
      channels.delete(channel.agentId);
      core.liveStates.release(channel, channel.agent);
      const wasLive = channel.state === 'live';
      channel.state = 'gone';
      if (wasLive) {
        const undelivered = channel.pending;
        channel.pending = [];
        leave(channel.agentId, undelivered);
      }
    }
    return true;
  };

  const drop = (connection: Connection, code: CloseCode, details: Record<string, unknown>) => {
    if (!removeConnection(connection)) return;
    // Shutting down is routine; every other drop is a failure worth a warning.
    log(code === CloseCode.GOING_AWAY ? 'info' : 'warn', 'connection_dropped', {
      agent_id: connection.channel.agentId,
      connection_id: connection.id,
      code,
      reason: CLOSE_REASONS[code],
      ...details,
    });
    try {
      connection.socket.close(code, CLOSE_REASONS[code]);
    } catch {
      // Already closed underneath us: nothing left to release.
    }
  };

  const releaseClosing = (channel: Channel): boolean => {
    // Every socket on a binding whose runtime reports the close as soon as a close frame is
    // read or sent: a closing socket has already been removed by its close event.
    if (channel.topicBinding?.closeReported) return channel.state === 'live';
    for (const connection of channel.connections) {
      if (connection.binding.isOpen(connection.socket)) continue;
      if (removeConnection(connection)) {
        log('info', 'connection_close', {
          agent_id: channel.agentId,
          connection_id: connection.id,
          code: 'closing',
        });
      }
    }
    return channel.state === 'live';
  };

  /**
   * A runtime reports a close only once TCP is gone (`ws` waits up to 30 s for a peer that keeps
   * it open), and sends find such sockets only for agents that get updates; the stats look at
   * all of them, at most once a second.
   */
  let releasedAt = Number.NEGATIVE_INFINITY;
  const releaseAllClosing = () => {
    const now = performance.now();
    if (now - releasedAt < 1000) return;
    releasedAt = now;
    for (const connection of connections) {
      if (connection.established && !connection.binding.isOpen(connection.socket)) releaseClosing(connection.channel);
    }
  };

  return { removeConnection, drop, leave, releaseClosing, releaseAllClosing, pendingLeaves };
}
