import { applyUpdate, createAgentState } from './agent-state.ts';
import type { Broker, Joined } from './broker.ts';
import type { Channel, Connection } from './channel.ts';
import { CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Delivery } from './delivery.ts';
import type { Departure } from './departure.ts';
import { observe } from './metrics.ts';
import type { Receiver } from './receiver.ts';
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
 * Exactly the updates after `since` up to the channel's `flushedSeq`, taken from `updates`, or
 * `undefined` when they do not cover it (or the client's epoch is not the channel's).
 */
const gapFrom = (connection: Connection, updates: readonly AgentUpdate[] | undefined): AgentUpdate[] | undefined => {
  const { channel, resume } = connection;
  if (!updates || resume?.epoch !== channel.epoch) return undefined;
  const since = resume.since;
  const gap = updates.filter((update) => update.seq > since && update.seq <= channel.flushedSeq);
  const complete =
    gap.length === 0
      ? since === channel.flushedSeq
      : (gap[0] as AgentUpdate).seq === since + 1 && (gap.at(-1) as AgentUpdate).seq === channel.flushedSeq;
  return complete ? gap : undefined;
};

/**
 * Creates the admission of one hub.
 *
 * @internal
 */
export function createAdmission(
  core: HubCore,
  departure: Departure,
  delivery: Delivery,
  receiver: Receiver,
): Admission {
  const { broker, encoder, counters, batchSize, config, brokerFailed, contained, updateFailed } = core;
  const { removeConnection, leave, drop } = departure;
  const { deliver, resumeFlushing } = delivery;
  const { sendTo, topicOf } = delivery.fanOut;

  const snapshotFrame = (channel: Channel): string => {
    const { status, open, ended } = channel.agent;
    const tasks = [...open.values(), ...ended.values()].sort((a, b) => a.seq - b.seq);
    // The updates' JSON is reused: a snapshot costs no re-serialisation of what it shows.
    const json = (update: AgentUpdate) => encoder.json(update);
    return `{"type":"snapshot","agent_id":"${channel.agentId}","epoch":"${channel.epoch}","seq":${channel.flushedSeq},"status":${status ? json(status) : 'null'},"tasks":[${tasks.map(json).join(',')}],"timestamp":"${new Date().toISOString()}"}`;
  };

  /** Marks the connection established, on its agent's native topic where the runtime has one. */
  const enter = (connection: Connection, recovered: boolean) => {
    const { channel, binding } = connection;
    connection.established = true;
    if (channel.topicBinding === undefined) channel.topicBinding = binding.topics ? binding : null;
    else if (channel.topicBinding !== binding) channel.topicBinding = null;
    if (binding.topics) binding.topics.subscribe(connection.socket, topicOf(channel.agentId));
    sendTo(
      connection,
      JSON.stringify({
        type: 'connection_established',
        agent_id: channel.agentId,
        connection_id: connection.id,
        heartbeat_interval: config.heartbeatInterval,
        batch_interval: config.batchInterval,
        epoch: channel.epoch,
        seq: channel.flushedSeq,
        recovered,
        timestamp: new Date().toISOString(),
      }),
    );
  };

  /** Sends what a connection missed as one `batch_update`: `resume` when recovered, else `queue`. */
  const replay = (connection: Connection, backlog: readonly AgentUpdate[], recovered: boolean) => {
    const { agentId } = connection.channel;
    const frame = encoder.batch(agentId, backlog, recovered ? 'resume' : 'queue', updateFailed(agentId));
    if (frame === undefined) return;
    counters.batches_sent++;
    observe(batchSize, backlog.length);
    sendTo(connection, frame);
  };

  /**
   * Starts a connection: `connection_established`, the snapshot, then what it missed (the
   * `resume` batch when recovered, else the `queue` handover), and from then on every update.
   *
   * @param missed The updates after the client's `since` (up to at least `flushedSeq`), or
   *   `undefined` when it did not ask to resume or they are not all held.
   */
  const establish = (connection: Connection, missed: readonly AgentUpdate[] | undefined) => {
    const { channel } = connection;
    const handover = channel.handover && performance.now() < channel.handover.until ? channel.handover : undefined;
    // The history, or else the queue just handed over (it may reach further back than a short history).
    const resume = connection.resume
      ? (gapFrom(connection, missed) ?? gapFrom(connection, handover?.updates))
      : undefined;
    const recovered = resume !== undefined;
    enter(connection, recovered);
    if (!connection.open) return;
    if (config.snapshot) sendTo(connection, snapshotFrame(channel));
    // A client that asked to resume and could not gets no queue: the snapshot is its truth, and
    // older updates after it would roll its state back.
    const backlog = recovered ? resume : connection.resume ? [] : (handover?.updates ?? []);
    if (backlog.length > 0 && connection.open) replay(connection, backlog, recovered);
    if (connection.resume)
      core.log('info', 'connection_resumed', {
        agent_id: channel.agentId,
        connection_id: connection.id,
        since: connection.resume.since,
        recovered,
        replayed: recovered ? resume.length : 0,
      });
    receiver.answerEarlyFrames(connection);
  };

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
    channel.agent = createAgentState();
    if (joined.status) applyUpdate(channel.agent, joined.status);
    for (const task of joined.tasks) applyUpdate(channel.agent, task);
    // Updates that arrived while joining: a networked broker may repeat some the position covers.
    const live = channel.pending.filter((update) => update.epoch !== joined.epoch || update.seq > joined.seq);
    channel.pending = [];
    // A client that closed while the broker answered takes nothing with it.
    for (const connection of channel.connections) {
      if (!connection.binding.isOpen(connection.socket)) removeConnection(connection);
    }
    if (channel.state === 'gone') {
      // Every connection left while the broker answered: hand everything back to the queue.
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
