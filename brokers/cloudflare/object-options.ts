/**
 * The options of an agent's object: the Node hub's options that apply to one agent's channel,
 * with the hub's names, defaults and checks (the same schema, `HubOptionsSchema`, picked).
 *
 * @module
 */
import * as v from 'valibot';
import { HubOptionsSchema } from '../../plugin/options.ts';

/**
 * Options of an agent's object, named and defaulted as the hub's (`AgentHubOptions`). Give them
 * as a static `options` of a subclass:
 * `export class AgentChannel extends AgentChannelObject { static options = { heartbeatInterval: 10_000 } }`.
 *
 * The hub's totals across agents (`maxTotalQueueBytes`, `maxTotalHistoryBytes`,
 * `maxTotalStateBytes`) have no meaning here: each object holds one agent, in its own storage.
 * `maxBufferedAmount` neither: workerd's server-side socket has no `bufferedAmount`.
 */
export interface AgentChannelOptions {
  /**
   * Milliseconds between pings; a socket that has not answered one by the next is closed with
   * 4000. Each sweep is an alarm of the object, so it wakes the object once per interval while
   * it has sockets. Default 30000; 0 disables the heartbeat.
   */
  heartbeatInterval?: number;
  /**
   * Length of the batching window in milliseconds: an update after a quiet spell goes out at
   * once, those published within the next window go out together at its end as one
   * `batch_update` (`source: window`). The held updates are in the object's storage before the
   * publish is answered, and an alarm ends the window. Default 100; 0 sends each on its own.
   */
  batchInterval?: number;
  /** Updates kept for clients that resume (`?since=&epoch=`); 0 keeps none. Default 1000. */
  historySize?: number;
  /** Bytes (the updates' JSON, UTF-8) of the history; the oldest go first. Default 512 KiB. */
  maxHistoryBytes?: number;
  /** Most updates kept while the agent has no socket; the oldest are dropped. Default 100. */
  maxQueueSize?: number;
  /** Most bytes (the updates' JSON, UTF-8) of that queue; the oldest are dropped. Default 1 MiB. */
  maxQueueBytes?: number;
  /** How long the queue waits for a client, from its newest update; then it is dropped. 0 keeps it. Default 1 hour. */
  queueTtl?: number;
  /**
   * Bytes of the snapshot state (latest status, open and recent ended tasks), counted as the
   * hub counts them; over it, the least recently updated entries go, and a task update over it
   * on its own is kept without its `result` (`result_omitted: true` in snapshots). At least
   * 32 KiB. Default 1 MiB.
   */
  maxStateBytes?: number;
  /** Largest inbound frame in bytes; a larger one closes the socket with 1009. Default 65536. */
  maxMessageSize?: number;
  /** Frames per second a client may send on one socket, on average; more closes it with 1008. 0 disables. Default 20. */
  maxInboundRate?: number;
  /** Frames a client may send at once before `maxInboundRate` applies. Default 60. */
  maxInboundBurst?: number;
  /** Sends each new socket a `snapshot` after `connection_established`. Default true. */
  snapshot?: boolean;
}

/** The hub's options an object takes: checked and defaulted by the hub's own schema. */
const ObjectOptionsSchema = v.pick(HubOptionsSchema, [
  'heartbeatInterval',
  'batchInterval',
  'historySize',
  'maxHistoryBytes',
  'maxQueueSize',
  'maxQueueBytes',
  'queueTtl',
  'maxStateBytes',
  'maxMessageSize',
  'maxInboundRate',
  'maxInboundBurst',
  'snapshot',
]);

/** An object's options with every default applied. */
export type ResolvedChannelOptions = Readonly<Required<AgentChannelOptions>>;

/**
 * Checks an object class's options and applies the hub's defaults.
 *
 * @param options The class's static `options`.
 *
 * @returns The resolved options.
 *
 * @throws {TypeError} When an option is invalid (or not one of these); the message names each.
 */
export function resolveChannelOptions(options: AgentChannelOptions = {}): ResolvedChannelOptions {
  const result = v.safeParse(ObjectOptionsSchema, options);
  if (result.success) return result.output as ResolvedChannelOptions;
  const problems = result.issues.map((issue) => `${v.getDotPath(issue) ?? 'options'}: ${issue.message}`);
  throw new TypeError(`AgentChannelObject: invalid options\n- ${problems.join('\n- ')}`);
}
