import { heldTasks } from './agent-state.ts';
import type { Channel, Connection } from './channel.ts';
import type { HubCore } from './core.ts';
import type { FanOut } from './fanout.ts';
import { observe } from './metrics.ts';
import type { Receiver } from './receiver.ts';
import type { AgentUpdate } from './schemas.ts';

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
 * Starts a connection: `connection_established`, the snapshot, then what it missed (the
 * `resume` batch when recovered, else the `queue` handover), and from then on every update.
 *
 * @param missed The updates after the client's `since` (up to at least `flushedSeq`), or
 *   `undefined` when it did not ask to resume or they are not all held.
 *
 * @internal
 */
export type Establish = (connection: Connection, missed: readonly AgentUpdate[] | undefined) => void;

/**
 * Creates how one hub establishes its connections.
 *
 * @internal
 */
export function createEstablish(core: HubCore, fanOut: FanOut<Connection>, receiver: Receiver): Establish {
  const { encoder, counters, batchSize, config, updateFailed } = core;
  const { sendTo, topicOf } = fanOut;

  const snapshotFrame = (channel: Channel, timestamp: string): string => {
    const { status } = channel.agent;
    // The state holds the updates' JSON: a snapshot costs no re-serialisation of what it shows.
    const tasks = heldTasks(channel.agent).map((task) => task.json);
    return `{"type":"snapshot","agent_id":"${channel.agentId}","epoch":"${channel.epoch}","seq":${channel.flushedSeq},"status":${status ? status.json : 'null'},"tasks":[${tasks.join(',')}],"timestamp":"${timestamp}"}`;
  };

  /** Marks the connection established, on its agent's native topic where the runtime has one. */
  const enter = (connection: Connection, recovered: boolean, timestamp: string) => {
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
        timestamp,
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

  return (connection, missed) => {
    const { channel } = connection;
    const handover = channel.handover && performance.now() < channel.handover.until ? channel.handover : undefined;
    // The history, or else the queue just handed over (it may reach further back than a short history).
    const resume = connection.resume
      ? (gapFrom(connection, missed) ?? gapFrom(connection, handover?.updates))
      : undefined;
    const recovered = resume !== undefined;
    // One clock read for both frames: they describe the same moment.
    const timestamp = new Date().toISOString();
    enter(connection, recovered, timestamp);
    if (!connection.open) return;
    if (config.snapshot) sendTo(connection, snapshotFrame(channel, timestamp));
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
}
