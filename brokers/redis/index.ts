/**
 * Redis broker: many server instances sharing one Redis behave as one hub.
 *
 * ```ts
 * import { redisBroker } from 'hono-agent-ws/redis';
 * const hub = createAgentHub({ broker: redisBroker({ url: process.env.REDIS_URL }) });
 * ```
 *
 * How it works, per agent (keys in `scripts.ts`):
 * - stream: the agent's `epoch` and `seq`, its history (a list) and its snapshot state
 *   (latest status, latest update of each open task, the most recent ended tasks), all in Redis.
 *   A publish numbers the update with the same script that delivers or queues it, so `seq` is
 *   strictly +1 per agent whichever instance publishes, and `seq` order is delivery order. The
 *   epoch changes only when Redis no longer holds the stream (restarted without persistence,
 *   `streamTtl` passed, evicted): a resuming client then gets `recovered: false`. A client may
 *   resume on any instance: the history is in Redis. The state is bounded per agent
 *   (`maxStateBytes`: its least recently updated entries go first, never its newest update; a
 *   task update over it on its own is kept without its `result`, `result_omitted: true`) and
 *   across the cluster (`maxTotalStateBytes`: the agents touched least recently go first, whole,
 *   unless an instance holds them, which keep their newest update), counting the bytes Redis
 *   holds for it: each entry's JSON and field, and the stream record.
 * - presence: a sorted set of the instances holding a connection for the agent, each scored
 *   with its expiry time (Redis's clock). Every instance refreshes its entries from one timer
 *   (`presenceTtl / 3`); entries of an instance that stopped refreshing (killed, frozen, cut
 *   off) expire after `presenceTtl`, and the agent counts as offline again.
 * - live updates: a pub/sub channel the holding instances subscribe to. Each message is the
 *   update's wire JSON (built in Lua from the body the hub serialised), after a `seq:` prefix.
 * - offline queue: a sorted set scored by `seq`, so updates handed back (undelivered when the
 *   last client left) slot in before newer ones. It is bounded in updates (`maxQueueSize`) and
 *   bytes (`maxQueueBytes`), all queues together in bytes (`maxTotalQueueBytes`, whole queues
 *   dropped, the one waiting longest first, as in the in-memory broker), and in time
 *   (`queueTtl`, swept by the scripts rather than left to key expiry, so the cluster-wide
 *   counters stay exact). Bytes are those of the stored JSON, which is what `sizeOf` counts; the
 *   scripts measure it themselves.
 * Each step that decides "deliver or queue" is one Lua script, so a publish and a join cannot
 * interleave: an update is either published to a present instance or queued, never both.
 *
 * A queue is handed over in one of two ways. A client joining takes it as one reply (its clients
 * get one `source: "queue"` batch). A queue that filled while instances still listened on the
 * agent's channel (their presence lapsed: a Redis freeze, or a frozen instance) is also
 * re-published on the channel by the script that finds it (the heartbeat of any holding
 * instance, or a join), so every listening instance gets it, in order, before anything
 * published later: Redis runs one script at a time. An instance that already has an update
 * (the joiner: its position covers the queue) ignores the copy by its `seq`.
 *
 * Every command is bounded by `commandTimeout` (`connection.ts`). While Redis is unreachable,
 * `publish` rejects (the hub answers 503 on ingest and rejects `publishStatus`/`publishTask`),
 * new connections are closed with 1011, existing ones stay open; the clients reconnect by
 * themselves and the next heartbeat re-registers presence and hands over what was queued
 * meanwhile. Nothing is buffered in the process. A command that timed out may still run when
 * a frozen Redis wakes up: an update whose publish was refused may still be delivered.
 *
 * Standalone Redis (or a Sentinel-managed primary) 6.2 or newer; not Redis Cluster (the
 * scripts touch keys of several agents). Works on Node, Bun and Deno through `@redis/client`.
 *
 * @module
 */
import { isFinalTask, withoutResult } from '../../plugin/agent-state.ts';
import { type Joined, newEpoch } from '../../plugin/broker.ts';
import type {
  AgentUpdate,
  Broker,
  BrokerFactory,
  ClusterStats,
  DropReason,
  EvictionKind,
  PublishReceipt,
  StatusUpdate,
  TaskUpdate,
} from '../../plugin/index.ts';
import { connectRedis, RedisUnavailableError, withTimeout } from './connection.ts';
import { type Drops, HEARTBEAT_CHUNK, SCRIPTS } from './scripts.ts';

export { RedisUnavailableError } from './connection.ts';

/** One agent of the listAgents script: id, epoch, seq, status JSON or null, open total, queued, instances, task JSONs. */
type ListedRow = [string, string, number, string | null, number, number, number, ...string[]];

/**
 * Options of `redisBroker`.
 */
export interface RedisBrokerOptions {
  /**
   * Where Redis is: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
   * Default `redis://127.0.0.1:6379`.
   */
  url?: string;
  /** Prefix of every key and channel, so several deployments can share one Redis. Default `haw`. */
  prefix?: string;
  /**
   * Milliseconds after which an instance that stopped refreshing its presence (killed, frozen,
   * cut off from Redis) no longer counts: its agents count as offline and their updates are
   * queued. Instances refresh every third of it. At least 300. Default 15000.
   */
  presenceTtl?: number;
  /**
   * Milliseconds a Redis command may take before it fails. After one times out, calls fail at
   * once until Redis answers again. Default 5000.
   */
  commandTimeout?: number;
  /** Longest wait between two reconnection attempts, in milliseconds. Default 1000. */
  maxReconnectDelay?: number;
  /**
   * Milliseconds an agent's stream (epoch, `seq`, history, snapshot state) is kept in Redis after
   * it was last published to or watched; a stream with a queue waiting is kept as long as the
   * queue. After that it is deleted, and the agent starts a new epoch if it comes back (resuming
   * clients get `recovered: false`). 0 keeps streams until Redis loses them. Default 86400000
   * (a day).
   */
  streamTtl?: number;
}

/** Drop reasons the scripts report that are evictions (`BrokerContext.onEvicted`), not queue drops. */
const EVICTIONS = new Set<string>(['history', 'state', 'task', 'result']);

/** Shared receipts: publishing allocates nothing extra. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });

/**
 * One agent this instance holds connections for.
 *
 * @internal
 */
interface Subscription {
  readonly onUpdate: (update: AgentUpdate) => void;
  /** `leaving` from the moment the hub unsubscribes: the hub must not hear from it any more. */
  state: 'joining' | 'live' | 'leaving';
  /** Updates that arrived after the hub unsubscribed; they go back to the queue. */
  late: AgentUpdate[];
}

const integerOption = (
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max = 2 ** 31 - 1,
): number => {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > max) {
    throw new TypeError(`redisBroker: ${name} must be a whole number of milliseconds >= ${min}, got ${value}`);
  }
  return result;
};

/** A bound from the hub, as the scripts read it: a whole number, or `none` when it is not set. */
const bound = (value: number | undefined, none: number): string =>
  String(typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : none);

/**
 * Creates the Redis broker: instances sharing one Redis (and `prefix`) behave as one hub.
 * Each hub opens two connections (commands, and pub/sub).
 *
 * @param options The broker options.
 *
 * @returns A broker factory for `createAgentHub({ broker })`.
 *
 * @throws {TypeError} When an option is invalid.
 */
export function redisBroker(options: RedisBrokerOptions = {}): BrokerFactory {
  const url = options.url ?? 'redis://127.0.0.1:6379';
  const base = `${options.prefix ?? 'haw'}:`;
  const ttl = integerOption('presenceTtl', options.presenceTtl, 15_000, 300);
  const commandTimeout = integerOption('commandTimeout', options.commandTimeout, 5_000, 1);
  const maxReconnectDelay = integerOption('maxReconnectDelay', options.maxReconnectDelay, 1_000, 1);
  const streamTtl = String(integerOption('streamTtl', options.streamTtl, 86_400_000, 0, 2 ** 40));

  return (context) => {
    const { maxQueueSize, onDropped } = context;
    // maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl: ARGV of the queue scripts.
    // A hub older than the byte and time bounds passes none of them: unbounded, never expire.
    const limits = [
      bound(maxQueueSize, 0),
      bound(context.maxQueueBytes, -1),
      bound(context.maxTotalQueueBytes, -1),
      bound(context.queueTtl, 0),
    ];
    // historySize (none: no history), maxHistoryBytes, maxTotalHistoryBytes, streamTtl.
    const historyLimits = [
      bound(context.historySize, 0),
      bound(context.maxHistoryBytes, -1),
      bound(context.maxTotalHistoryBytes, -1),
      streamTtl,
    ];
    // maxStateBytes, maxTotalStateBytes (none: unbounded, as a hub older than them passes).
    const stateLimits = [bound(context.maxStateBytes, -1), bound(context.maxTotalStateBytes, -1)];
    const maxStateBytes = context.maxStateBytes ?? Number.POSITIVE_INFINITY;
    const bodyOf = context.bodyOf ?? JSON.stringify;
    const instanceId = context.instanceId ?? crypto.randomUUID();
    const report = (operation: string, error: unknown, agentId?: string) =>
      context.onError?.(operation, error, agentId);
    const reportDrops = (drops: Drops) => {
      for (const [agentId, count, reason] of drops) {
        if (EVICTIONS.has(reason)) context.onEvicted?.(agentId, reason as EvictionKind, count);
        else {
          onDropped(agentId, count, reason as DropReason);
          if (reason === 'total_bytes') context.onEvicted?.(agentId, 'queue', 1);
        }
      }
    };
    const key = {
      presence: (agentId: string) => `${base}presence:${agentId}`,
      channel: (agentId: string) => `${base}updates:${agentId}`,
      queued: `${base}queued`,
      instances: `${base}instances`,
      instance: `${base}instance:${instanceId}`,
      agents: `${base}agents:${instanceId}`,
    };
    const channelPrefix = key.channel('');

    const subscriptions = new Map<string, Subscription>();
    /** The encoded form (`seq:json`) of every update handed to the hub, to hand it back as is. */
    const encoded = new WeakMap<AgentUpdate, string>();
    /** Per-agent chain of subscribe/unsubscribe: each waits for the one before. */
    const chains = new Map<string, Promise<unknown>>();
    /** Channels whose UNSUBSCRIBE failed (connection down): retried once the subscriber is back. */
    const staleChannels = new Set<string>();
    /** Agents whose withdrawal failed: retried by the heartbeat so their presence goes at once. */
    const unfinishedLeaves = new Set<string>();

    const decode = (message: string): AgentUpdate => {
      const update = JSON.parse(message.slice(message.indexOf(':') + 1)) as AgentUpdate;
      encoded.set(update, message);
      return update;
    };
    // An update the broker never handed out (cannot happen through the hub): numbered as it says.
    const encode = (update: AgentUpdate): string =>
      encoded.get(update) ?? `${update.seq ?? 0}:${JSON.stringify(update)}`;

    const onMessage = (message: string, channel: string) => {
      const agentId = channel.slice(channelPrefix.length);
      const subscription = subscriptions.get(agentId);
      if (!subscription) return;
      let update: AgentUpdate;
      try {
        update = decode(message);
      } catch (error) {
        report('deliver', error, agentId);
        return;
      }
      if (subscription.state === 'leaving') subscription.late.push(update);
      else subscription.onUpdate(update);
    };

    const serialize = <T>(agentId: string, operation: () => Promise<T>): Promise<T> => {
      const result = (chains.get(agentId) ?? Promise.resolve()).then(operation);
      const tail = result.catch(() => {});
      chains.set(agentId, tail);
      void tail.then(() => {
        if (chains.get(agentId) === tail) chains.delete(agentId);
      });
      return result;
    };

    // ---- heartbeat: one timer per broker ---------------------------------------------------

    let beating: Promise<void> | undefined;
    let beatAgain = false;

    const leave = async (agentId: string, items: readonly string[]): Promise<number> => {
      const [queued, drops] = (await connection.run(
        SCRIPTS.leave,
        [key.presence(agentId), key.agents],
        [base, instanceId, agentId, ...limits, streamTtl, ...items],
      )) as [number, Drops];
      reportDrops(drops);
      return queued;
    };

    const beat = async () => {
      for (const agentId of unfinishedLeaves) {
        if (subscriptions.has(agentId)) continue;
        try {
          await leave(agentId, []);
          unfinishedLeaves.delete(agentId);
        } catch {
          // Still failing: the refresh below reports it if Redis is really down.
          break;
        }
      }
      const live = [...subscriptions].filter(([, subscription]) => subscription.state === 'live');
      const active = String(context.localFigures?.().active_connections ?? 0);
      for (let start = 0; start === 0 || start < live.length; start += HEARTBEAT_CHUNK) {
        const chunk = live.slice(start, start + HEARTBEAT_CHUNK).map(([agentId]) => agentId);
        reportDrops(
          (await connection.run(
            SCRIPTS.heartbeat,
            [key.instances, key.instance, key.agents, ...chunk.map(key.presence)],
            [base, instanceId, String(ttl), active, start === 0 ? '1' : '0', streamTtl, ...chunk],
          )) as Drops,
        );
      }
    };

    /** Runs a heartbeat now, or right after the one in flight. */
    const heartbeat = (): Promise<void> => {
      if (beating) {
        beatAgain = true;
        return beating;
      }
      if (!connection.usable()) return Promise.resolve();
      beating = beat()
        .catch((error) => report('heartbeat', error))
        .finally(() => {
          beating = undefined;
          if (beatAgain) {
            beatAgain = false;
            void heartbeat();
          }
        });
      return beating;
    };

    const unsubscribeChannel = (channel: string): Promise<void> => {
      const done = connection.unsubscribe(channel).then(
        () => {
          staleChannels.delete(channel);
        },
        () => {
          staleChannels.add(channel);
        },
      );
      staleChannels.add(channel);
      return done;
    };

    const connection = connectRedis({
      url,
      commandTimeout,
      maxReconnectDelay,
      scripts: Object.values(SCRIPTS),
      report: (operation, error) => report(operation, error),
      onReady: heartbeat,
      async onSubscriberReady() {
        // node-redis has resubscribed every channel by now; drop those nobody wants any more,
        // and take what was queued while no subscription listened.
        for (const channel of staleChannels) {
          if (!subscriptions.has(channel.slice(channelPrefix.length))) void unsubscribeChannel(channel);
        }
        await heartbeat();
      },
    });
    const timer = setInterval(() => void heartbeat(), Math.floor(ttl / 3));
    let closed = false;

    return {
      subscribe(agentId, onUpdate) {
        return serialize(agentId, async (): Promise<Joined> => {
          await connection.whenStarted();
          if (!connection.usable() || !connection.subscriberReady()) throw new RedisUnavailableError('subscribe');
          const subscription: Subscription = { onUpdate, state: 'joining', late: [] };
          subscriptions.set(agentId, subscription);
          unfinishedLeaves.delete(agentId);
          const channel = key.channel(agentId);
          try {
            // Subscribe first, then register presence: from the moment publishers can see this
            // instance, its subscription already listens.
            await connection.subscribe(channel, onMessage);
            staleChannels.delete(channel);
            const [items, drops, epoch, seq, state] = (await connection.run(
              SCRIPTS.join,
              [key.presence(agentId), key.agents],
              [base, instanceId, String(ttl), agentId, streamTtl, newEpoch()],
            )) as [string[], Drops, string, number, (string | null)[]];
            subscription.state = 'live';
            reportDrops(drops);
            const [status, ...tasks] = state;
            return {
              queue: items.map(decode),
              epoch,
              seq: Number(seq),
              status: status ? (JSON.parse(status) as StatusUpdate) : null,
              tasks: tasks
                .filter((task): task is string => typeof task === 'string')
                .map((task) => JSON.parse(task) as TaskUpdate)
                .sort((a, b) => a.seq - b.seq),
            };
          } catch (error) {
            subscriptions.delete(agentId);
            void unsubscribeChannel(channel);
            // Presence may have been registered by a join whose reply was lost.
            unfinishedLeaves.add(agentId);
            throw error;
          }
        });
      },

      async history(agentId, since, epoch) {
        const updates = (await connection.run(SCRIPTS.history, [], [base, agentId, String(since), epoch])) as
          | string[]
          | null;
        return updates?.map((json) => JSON.parse(json) as AgentUpdate);
      },

      unsubscribe(agentId, undelivered) {
        const subscription = subscriptions.get(agentId);
        // At once, not when our turn comes: the hub must not hear about this agent any more.
        if (subscription) subscription.state = 'leaving';
        return serialize(agentId, async () => {
          // A heartbeat in flight may still refresh this agent's presence; withdraw after it.
          await beating;
          // Unsubscribe first: what was published before Redis confirms reaches `late`; what is
          // published after finds no listener here and is queued (or reaches other instances).
          const unsubscribed = unsubscribeChannel(key.channel(agentId));
          if (connection.subscriberReady()) {
            await withTimeout(unsubscribed, commandTimeout, 'UNSUBSCRIBE').catch(() => {});
          }
          if (subscriptions.get(agentId) === subscription) subscriptions.delete(agentId);
          const items = [...undelivered, ...(subscription?.late ?? [])].map(encode);
          try {
            return { queued: await leave(agentId, items) };
          } catch (error) {
            // The items are lost (the hub logs it); the presence is withdrawn on the next
            // heartbeat, or expires after presenceTtl.
            unfinishedLeaves.add(agentId);
            throw error;
          }
        });
      },

      async publish(agentId, draft) {
        const task = draft.type === 'task_update' ? draft : undefined;
        const body = bodyOf(draft);
        // The script decides, from the bytes it counts, whether the state keeps it without its
        // result; it gets that form only for an update that might be too large (a few bytes of
        // text take at most three UTF-8 bytes each).
        const stripped =
          task?.result !== undefined && body.length * 3 > maxStateBytes / 2 ? JSON.stringify(withoutResult(task)) : '';
        const [queued, drops, seq, epoch] = (await connection.run(
          SCRIPTS.publish,
          [],
          [
            base,
            agentId,
            body,
            task ? 't' : 's',
            task?.task_id ?? '',
            task && isFinalTask(task) ? '1' : '0',
            ...limits,
            ...historyLimits,
            newEpoch(),
            ...stateLimits,
            stripped,
          ],
        )) as [number, Drops, number, string];
        const update = draft as AgentUpdate;
        update.seq = seq;
        update.epoch = epoch;
        reportDrops(drops);
        return queued === 1 ? QUEUED : NOT_QUEUED;
      },

      async clusterStats(): Promise<ClusterStats> {
        const [instances, connections, agents, queued] = (await connection.run(
          SCRIPTS.clusterStats,
          [key.instances, key.instance, key.queued],
          [base, instanceId, String(context.localFigures?.().active_connections ?? 0), String(ttl)],
        )) as [number, number, number, number];
        return {
          instances,
          active_connections: connections,
          agents_connected: agents,
          queued_messages: queued,
        };
      },

      async listAgents(after, limit, maxTasks) {
        const [more, rows, last] = (await connection.run(
          SCRIPTS.listAgents,
          [],
          [base, after ?? '', String(limit), String(maxTasks)],
        )) as [number, ListedRow[], string];
        const agents = rows.map(([agentId, epoch, seq, status, openTotal, queued, instances, ...tasks]) => ({
          agent_id: agentId,
          epoch,
          seq: Number(seq),
          status: status ? (JSON.parse(status) as StatusUpdate) : null,
          open_tasks: tasks.map((json) => JSON.parse(json) as TaskUpdate),
          open_tasks_total: Number(openTotal),
          queued: Number(queued),
          instances: Number(instances),
        }));
        return { agents, next: more === 1 ? last || null : null };
      },

      async close() {
        if (closed) return;
        closed = true;
        clearInterval(timer);
        await Promise.allSettled([...chains.values(), beating]);
        if (connection.usable()) {
          await connection
            .run(SCRIPTS.deregister, [key.instances, key.instance, key.agents], [instanceId])
            .catch((error) => report('close', error));
        }
        subscriptions.clear();
        connection.close();
      },
    } satisfies Broker;
  };
}
