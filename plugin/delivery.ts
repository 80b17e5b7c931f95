import type { Channel, Connection } from './channel.ts';
import { CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Departure } from './departure.ts';
import { createFanOut, type FanOut } from './fanout.ts';
import { observe } from './metrics.ts';
import type { AgentUpdate } from './schemas.ts';
import { createWindowScheduler, type WindowScheduler } from './windows.ts';

/**
 * The way out of a hub: updates the broker delivers wait in their agent's batching window,
 * then go out as one frame per agent, written to every socket (plugin/fanout.ts).
 *
 * @internal
 */
export interface Delivery {
  /** Writes frames; a failed or slow socket is dropped. */
  readonly fanOut: FanOut<Connection>;
  /** Every channel's open window, on one timer. */
  readonly windows: WindowScheduler<Channel>;
  /** Takes an update the broker delivered for a channel: sent now, or held for its window. */
  deliver(channel: Channel, update: AgentUpdate): void;
  /**
   * Sends what the channel holds: alone if one update, else as one `batch_update`. Nothing held,
   * nothing done.
   */
  flush(channel: Channel): void;
  /** Flushes what waited while the channel was paused, and goes on batching. */
  resumeFlushing(channel: Channel): void;
}

/**
 * Creates the delivery of one hub.
 *
 * @internal
 */
export function createDelivery(core: HubCore, departure: Departure): Delivery {
  const { counters, encoder, batchSize, sendDelay, countError, updateFailed } = core;
  const { batchInterval, maxBufferedAmount } = core.config;
  const { drop, releaseClosing } = departure;

  // plugin/fanout.ts writes; here is decided what a failure costs.
  const fanOut = createFanOut<Connection>({
    maxBufferedAmount,
    topicPrefix: core.idPrefix,
    sent: (count) => {
      counters.messages_sent += count;
    },
    failed: (connection, error) => {
      countError('send_failed');
      drop(connection, CloseCode.INTERNAL_ERROR, { error: String(error) });
    },
    slow: (connection) => {
      countError('slow_consumer');
      drop(connection, CloseCode.SLOW_CONSUMER, {});
    },
    topicFailed: (agentId, error) => {
      countError('send_failed');
      core.log('error', 'send_error', { agent_id: agentId, via: 'topic', error: String(error) });
    },
  });
  const { broadcast } = fanOut;

  /** The one frame of what a channel holds; `undefined` when it could not be serialised. */
  const frameOf = (channel: Channel, updates: AgentUpdate[]): string | undefined => {
    if (updates.length === 1) {
      try {
        return encoder.json(updates[0] as AgentUpdate);
      } catch (error) {
        updateFailed(channel.agentId)(updates[0] as AgentUpdate, error);
        return undefined;
      }
    }
    const frame = encoder.batch(channel.agentId, updates, 'window', updateFailed(channel.agentId));
    if (frame !== undefined) {
      counters.batches_sent++;
      observe(batchSize, updates.length);
    }
    return frame;
  };

  // Releasing closing sockets looks at every socket of the agent, which for every newcomer to a
  // busy agent would make n connections cost O(n²): hence nothing held, nothing done.
  const flush = (channel: Channel) => {
    if (channel.pending.length === 0 || channel.pauses > 0 || !releaseClosing(channel)) return;
    const updates = channel.pending;
    channel.pending = [];
    if (updates.length === 0) return;
    for (const update of updates) core.remember(channel, update);
    channel.flushedSeq = (updates[updates.length - 1] as AgentUpdate).seq;
    if (channel.handover) {
      if (performance.now() < channel.handover.until) channel.handover.updates.push(...updates);
      else channel.handover = undefined;
    }
    const frame = frameOf(channel, updates);
    if (frame === undefined) return;
    broadcast(channel, frame);
    // Once per frame per agent, from its oldest update's timestamp (set when it was accepted,
    // on whichever instance): the window, the broker and the write are all in it.
    const accepted = Date.parse((updates[0] as AgentUpdate).timestamp);
    if (!Number.isNaN(accepted)) observe(sendDelay, Math.max(0, Date.now() - accepted) / 1000);
  };

  // One timer per hub for every window.
  const windows = createWindowScheduler<Channel>(
    batchInterval,
    (channel, now) => {
      // Paused: the resume that paused it flushes when it ends.
      if (channel.state !== 'live' || channel.pending.length === 0 || channel.pauses > 0) return;
      flush(channel);
      // Traffic is flowing: keep batching instead of sending the next update alone.
      if (channel.state === 'live') windows.open(channel, now);
    },
    (channel, error) => core.internalError('flush', error, channel.agentId),
  );

  const deliver = (channel: Channel, update: AgentUpdate) => {
    if (channel.state === 'gone') {
      // A broker must stop calling back once unsubscribed; say so loudly rather than lose it quietly.
      core.brokerFailed('deliver', channel.agentId, new Error('update delivered after unsubscribe'));
      return;
    }
    if (channel.state === 'live') {
      if (update.epoch !== channel.epoch) {
        // The broker lost the history (Redis data loss): a new stream starts; clients see the epoch change.
        channel.epoch = update.epoch;
        channel.headSeq = 0;
        channel.flushedSeq = 0;
        core.liveStates.release(channel, channel.agent);
      }
      // Already held: a networked broker may repeat what the subscription's position covered.
      if (update.seq <= channel.headSeq) return;
      channel.headSeq = update.seq;
    }
    channel.pending.push(update);
    if (channel.state === 'joining' || channel.windowOpen || channel.pauses > 0) return;
    flush(channel);
    if (batchInterval > 0 && channel.state === 'live') windows.open(channel, performance.now());
  };

  const resumeFlushing = (channel: Channel) => {
    if (channel.state !== 'live' || channel.pauses > 0 || channel.pending.length === 0 || channel.windowOpen) return;
    flush(channel);
    if (batchInterval > 0 && channel.state === 'live') windows.open(channel, performance.now());
  };

  return { fanOut, windows, deliver, flush, resumeFlushing };
}
