import type { Broker, Joined } from './broker.ts';
import type { Channel, Connection } from './channel.ts';
import { CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Delivery } from './delivery.ts';
import type { Departure } from './departure.ts';
import type { Establish } from './establish.ts';
import type { AgentUpdate } from './schemas.ts';

/**
 * Milliseconds after a channel took its offline queue during which joining connections get it
 * too: watchers that open together (a dashboard with several panes, a reconnect storm) all see
 * the same queue, not only the first.
 */
export const QUEUE_HANDOVER_MS = 1000;

/**
 * How a connection gets in: its agent's channel joins the broker (subscription, offline queue,
 * stream position), then each connection is admitted with `connection_established`, the
 * snapshot and what it missed (the `resume` replay or the `queue` handover).
 *
 * @internal
 */
export interface Admission {
  /** Subscribes a new channel at the broker; its connections are admitted when it answers. */
  join(channel: Channel): void;
  /**
   * Admits a connection to a live channel: reads what it missed when it asks to resume (the
   * channel pauses meanwhile, so nothing is sent twice or skipped), then establishes it.
   */
  admit(connection: Connection): void;
}

/**
 * Creates the admission of one hub.
 *
 * @internal
 */
export function createAdmission(
  core: HubCore,
  departure: Departure,
  delivery: Delivery,
  establish: Establish,
): Admission {
  const { broker, brokerFailed, contained, liveStates, remember } = core;
  const { removeConnection, leave, drop } = departure;
  const { deliver, resumeFlushing } = delivery;

  const admit = (connection: Connection) => {
    const { channel } = connection;
    const resume = connection.resume;
    if (!resume || resume.epoch !== channel.epoch || resume.since > channel.flushedSeq)
      return establish(connection, undefined);
    if (resume.since === channel.flushedSeq) return establish(connection, []);
    let history: ReturnType<Broker['history']>;
    try {
      history = broker.history(channel.agentId, resume.since, resume.epoch);
    } catch (error) {
      brokerFailed('history', channel.agentId, error);
      return establish(connection, undefined);
    }
    if (!(history instanceof Promise)) return establish(connection, history);
    channel.pauses++;
    const done = contained('resume', channel.agentId, (missed: AgentUpdate[] | undefined) => {
      channel.pauses--;
      if (connection.open) establish(connection, missed);
      resumeFlushing(channel);
    });
    history.then(done, (error) => {
      brokerFailed('history', channel.agentId, error);
      done(undefined);
    });
  };

  const completeJoin = (channel: Channel, joined: Joined) => {
    channel.epoch = joined.epoch;
    channel.headSeq = joined.seq;
    channel.flushedSeq = joined.seq;
    liveStates.release(channel, channel.agent);
    if (joined.status) remember(channel, joined.status);
    for (const task of joined.tasks) remember(channel, task);
    // Updates that arrived while joining: a networked broker may repeat some the position covers.
    const live = channel.pending.filter((update) => update.epoch !== joined.epoch || update.seq > joined.seq);
    channel.pending = [];
    // A client that closed while the broker answered takes nothing with it.
    for (const connection of channel.connections) {
      if (!connection.binding.isOpen(connection.socket)) removeConnection(connection);
    }
    if (channel.state === 'gone') {
      // Every connection left while the broker answered: hand everything back to the queue.
      liveStates.release(channel, channel.agent);
      leave(channel.agentId, [...joined.queue, ...live]);
      return;
    }
    channel.state = 'live';
    if (joined.queue.length > 0) {
      channel.handover = { updates: [...joined.queue], until: performance.now() + QUEUE_HANDOVER_MS };
    }
    // connection_established goes out only now that the broker has subscribed, so a client that
    // has it gets every later update live.
    for (const connection of channel.connections) admit(connection);
    for (const update of live) deliver(channel, update);
  };

  const join = (channel: Channel) => {
    let joined: Joined | Promise<Joined>;
    const onUpdate = contained('deliver', channel.agentId, (update: AgentUpdate) => deliver(channel, update));
    const complete = contained('join', channel.agentId, (result: Joined) => completeJoin(channel, result));
    try {
      joined = broker.subscribe(channel.agentId, onUpdate);
    } catch (error) {
      joined = Promise.reject(error);
    }
    if (!(joined instanceof Promise)) return complete(joined);
    joined.then(complete, (error) => {
      brokerFailed('subscribe', channel.agentId, error);
      for (const connection of channel.connections) drop(connection, CloseCode.INTERNAL_ERROR, {});
    });
  };

  return { join, admit };
}
