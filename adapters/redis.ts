/**
 * Redis broker: many server instances sharing one Redis behave as one hub.
 *
 * ```ts
 * import { redisBroker } from 'hono-agent-ws/redis';
 * const hub = createAgentHub({ broker: redisBroker({ url: process.env.REDIS_URL }) });
 * ```
 *
 * How it works, per agent:
 * - presence: a sorted set of the instances holding a connection for the agent, each scored
 *   with its expiry time (Redis's clock). Every instance refreshes its entries from one timer
 *   (`presenceTtl / 3`); entries of an instance that stopped refreshing (killed, frozen, cut
 *   off) expire after `presenceTtl`, and the agent counts as offline again.
 * - live updates: a pub/sub channel the holding instances subscribe to.
 * - offline queue: a sorted set scored by a global sequence number, so updates handed back
 *   (undelivered when the last client left) slot in before newer ones, in publish order.
 * Each step that decides "deliver or queue" is one Lua script, so a publish and a join cannot
 * interleave: an update is either published to a present instance or queued, never both, and
 * a queue is taken by exactly one joining instance.
 *
 * While Redis is unreachable, `publish` rejects at once (the hub answers 503 on ingest and
 * rejects `publishStatus`/`publishTask`), new connections are closed with 1011, existing ones
 * stay open; the clients reconnect by themselves and the next heartbeat re-registers presence
 * and hands over what was queued meanwhile. Nothing is buffered in the process.
 *
 * Standalone Redis (or a Sentinel-managed primary) 6.2 or newer; not Redis Cluster (the
 * scripts touch keys of several agents). Works on Node, Bun and Deno through `@redis/client`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createClient } from '@redis/client';
import type { AgentUpdate, Broker, BrokerFactory, ClusterStats, PublishReceipt } from '../plugin/index.ts';

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
  /** Milliseconds a Redis command may take before it fails. Default 5000. */
  commandTimeout?: number;
  /** Longest wait between two reconnection attempts, in milliseconds. Default 1000. */
  maxReconnectDelay?: number;
}

/** Agents refreshed per heartbeat script call: bounds how long one call blocks Redis. */
const HEARTBEAT_CHUNK = 500;

/** Redis's clock, in milliseconds: every instance compares expiry times on the same clock. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Adds `seq:json` items to a queue (scored by their sequence number, so older ones go first),
 * keeps the newest `max`, keeps the cluster-wide count right, and returns how many were dropped.
 */
const ENQUEUE = `local function enqueue(queue, counter, items, first, max)
  local added = 0
  for i = first, #items do
    local seq = tonumber(string.match(items[i], '^(%d+):')) or 0
    added = added + redis.call('ZADD', queue, seq, items[i])
  end
  local dropped = math.max(0, redis.call('ZCARD', queue) - max)
  if dropped > 0 then redis.call('ZREMRANGEBYRANK', queue, 0, dropped - 1) end
  redis.call('INCRBY', counter, added - dropped)
  return dropped
end`;

/** Takes a queue whole, oldest first. */
const TAKE = `local function take(queue, counter)
  local items = redis.call('ZRANGE', queue, 0, -1)
  if #items > 0 then
    redis.call('DEL', queue)
    redis.call('DECRBY', counter, #items)
  end
  return items
end`;

/**
 * KEYS presence, queue, sequence, queued counter; ARGV channel, update JSON, maxQueueSize.
 * Publishes to the present instances, or queues when none is present or none is listening
 * (a present instance whose subscriber connection is down: its next heartbeat takes the queue).
 * Returns {queued 0|1, dropped}.
 */
const PUBLISH = `${NOW}
${ENQUEUE}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local message = string.format('%d', redis.call('INCR', KEYS[3])) .. ':' .. ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('PUBLISH', ARGV[1], message) > 0 then
  return {0, 0}
end
return {1, enqueue(KEYS[2], KEYS[4], {message}, 1, tonumber(ARGV[3]))}`;

/**
 * KEYS presence, queue, instance's agent set, queued counter; ARGV instance id, ttl, agent id.
 * Registers the instance as present and takes the queue, in one step.
 */
const JOIN = `${NOW}
${TAKE}
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ttl)
return take(KEYS[2], KEYS[4])`;

/**
 * KEYS presence, queue, instance's agent set, queued counter; ARGV instance id, agent id,
 * maxQueueSize, then `seq:json` items. Withdraws the instance; if no instance is left, the items
 * go back to the queue, before anything queued later. Returns how many were dropped.
 */
const LEAVE = `${NOW}
${ENQUEUE}
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if #ARGV < 4 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return enqueue(KEYS[2], KEYS[4], ARGV, 4, tonumber(ARGV[3]))`;

/**
 * KEYS instances, instance hash, instance's agent set, queued counter, then presence and queue
 * of each agent; ARGV instance id, ttl, active connections, reset agent set 0|1, agent ids.
 * Refreshes the instance and its presence, and takes any queue that filled while it was
 * present (its presence lapsed, or Redis restarted empty). Returns {{agent index, items...}}.
 */
const HEARTBEAT = `${NOW}
${TAKE}
local id, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[2], 'active_connections', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[4] == '1' then redis.call('DEL', KEYS[3]) end
local out = {}
for j = 1, #ARGV - 4 do
  local presence, queue = KEYS[3 + 2 * j], KEYS[4 + 2 * j]
  redis.call('ZADD', presence, now + ttl, id)
  redis.call('PEXPIRE', presence, ttl)
  redis.call('SADD', KEYS[3], ARGV[4 + j])
  local items = take(queue, KEYS[4])
  if #items > 0 then
    local entry = {j}
    for _, item in ipairs(items) do entry[#entry + 1] = item end
    out[#out + 1] = entry
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
return out`;

/**
 * KEYS instances, instance hash, queued counter; ARGV key prefix, instance id, active
 * connections, ttl. Refreshes this instance's figures, then sums the live instances'.
 * Returns {instances, active connections, agents connected, queued}.
 */
const CLUSTER_STATS = `${NOW}
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[2], 'active_connections', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local connections, agents, seen = 0, 0, {}
for _, id in ipairs(ids) do
  connections = connections + (tonumber(redis.call('HGET', ARGV[1] .. 'instance:' .. id, 'active_connections')) or 0)
  for _, agent in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'agents:' .. id)) do
    if not seen[agent] then
      seen[agent] = true
      agents = agents + 1
    end
  end
end
local queued = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
return {#ids, connections, agents, math.max(0, queued)}`;

/** KEYS instances, instance hash, instance's agent set; ARGV instance id. A clean goodbye. */
const DEREGISTER = `redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 0`;

interface Script {
  readonly source: string;
  readonly sha1: string;
}
const script = (source: string): Script => ({ source, sha1: createHash('sha1').update(source).digest('hex') });
const SCRIPTS = {
  publish: script(PUBLISH),
  join: script(JOIN),
  leave: script(LEAVE),
  heartbeat: script(HEARTBEAT),
  clusterStats: script(CLUSTER_STATS),
  deregister: script(DEREGISTER),
};

/** Shared receipts: publishing allocates nothing extra. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });

/** Thrown while the broker has no working connection to Redis. */
export class RedisUnavailableError extends Error {
  constructor(what: string) {
    super(`hono-agent-ws/redis: Redis is unavailable (${what})`);
    this.name = 'RedisUnavailableError';
  }
}

/**
 * One agent this instance holds connections for.
 *
 * @internal
 */
interface Subscription {
  readonly onUpdate: (update: AgentUpdate) => void;
  /** `leaving` from the moment the hub unsubscribes: the hub must not hear from it any more. */
  state: 'joining' | 'live' | 'leaving';
  /** Live updates held while a heartbeat may hand over this agent's queue, which goes first. */
  held: AgentUpdate[] | undefined;
  /** Updates that arrived after the hub unsubscribed; they go back to the queue. */
  late: AgentUpdate[];
}

const integerOption = (name: string, value: number | undefined, fallback: number, min: number): number => {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > 2 ** 31 - 1) {
    throw new TypeError(`redisBroker: ${name} must be a whole number of milliseconds >= ${min}, got ${value}`);
  }
  return result;
};

const withTimeout = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hono-agent-ws/redis: ${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
};

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

  return (context) => {
    const { maxQueueSize, onDropped } = context;
    const instanceId = context.instanceId ?? crypto.randomUUID();
    const report = (operation: string, error: unknown, agentId?: string) =>
      context.onError?.(operation, error, agentId);
    const key = {
      presence: (agentId: string) => `${base}presence:${agentId}`,
      queue: (agentId: string) => `${base}queue:${agentId}`,
      channel: (agentId: string) => `${base}updates:${agentId}`,
      sequence: `${base}sequence`,
      queued: `${base}queued`,
      instances: `${base}instances`,
      instance: `${base}instance:${instanceId}`,
      agents: `${base}agents:${instanceId}`,
    };
    const channelPrefix = key.channel('');

    // Commands fail at once while disconnected instead of waiting in an offline queue: a
    // publish that cannot reach Redis is refused loudly (503), never held in memory.
    const clientOptions = {
      url,
      disableOfflineQueue: true,
      socket: { reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, maxReconnectDelay) },
    };
    const commands = createClient(clientOptions);
    const subscriber = createClient(clientOptions);

    const subscriptions = new Map<string, Subscription>();
    /** The encoded form (`seq:json`) of every update handed to the hub, to hand it back in order. */
    const encoded = new WeakMap<AgentUpdate, string>();
    /** Per-agent chain of subscribe/unsubscribe: each waits for the one before. */
    const chains = new Map<string, Promise<unknown>>();
    /** Channels whose UNSUBSCRIBE failed (connection down): retried once the subscriber is back. */
    const staleChannels = new Set<string>();
    /** Agents whose withdrawal failed: retried by the heartbeat so their presence goes at once. */
    const unfinishedLeaves = new Set<string>();
    let scriptsLoaded = false;
    let closed = false;
    // Until the first connection is up, calls wait for it (bounded by commandTimeout) instead of
    // failing: a server that starts listening together with its broker should not refuse its
    // first clients. Once connected, an outage fails calls at once.
    let markStarted: () => void = () => {};
    let started: Promise<void> | undefined = new Promise<void>((resolve) => {
      markStarted = () => {
        started = undefined;
        resolve();
      };
    });

    const usable = () => !closed && scriptsLoaded && commands.isReady;
    const whenStarted = async () => {
      if (started) await withTimeout(started, commandTimeout, 'connecting').catch(() => {});
    };

    const run = async (which: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> => {
      await whenStarted();
      if (!usable()) throw new RedisUnavailableError('not connected');
      const tail = [String(keys.length), ...keys, ...args];
      try {
        return await commands.sendCommand(['EVALSHA', which.sha1, ...tail], { timeout: commandTimeout });
      } catch (error) {
        // Scripts are loaded on every (re)connection; this only happens after a SCRIPT FLUSH.
        if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
        return commands.sendCommand(['EVAL', which.source, ...tail], { timeout: commandTimeout });
      }
    };

    const decode = (message: string): AgentUpdate => {
      const update = JSON.parse(message.slice(message.indexOf(':') + 1)) as AgentUpdate;
      encoded.set(update, message);
      return update;
    };
    // An update the broker never handed out (cannot happen through the hub) goes first.
    const encode = (update: AgentUpdate): string => encoded.get(update) ?? `0:${JSON.stringify(update)}`;

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
      else if (subscription.held) subscription.held.push(update);
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

    const unsubscribeChannel = (channel: string): Promise<void> => {
      const done = subscriber.unsubscribe(channel).then(
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

    // ---- heartbeat: one timer per broker ---------------------------------------------------

    let beating: Promise<void> | undefined;
    let beatAgain = false;

    const release = (subscription: Subscription, taken: readonly AgentUpdate[]) => {
      const held = subscription.held ?? [];
      subscription.held = undefined;
      for (const update of [...taken, ...held]) {
        if (subscription.state === 'leaving') subscription.late.push(update);
        else subscription.onUpdate(update);
      }
    };

    const beat = async () => {
      for (const agentId of unfinishedLeaves) {
        if (subscriptions.has(agentId)) continue;
        try {
          await run(
            SCRIPTS.leave,
            [key.presence(agentId), key.queue(agentId), key.agents, key.queued],
            [instanceId, agentId, String(maxQueueSize)],
          );
          unfinishedLeaves.delete(agentId);
        } catch {
          // Still failing: the refresh below reports it if Redis is really down.
          break;
        }
      }
      const live = [...subscriptions].filter(([, subscription]) => subscription.state === 'live');
      const active = String(context.localFigures?.().active_connections ?? 0);
      for (let start = 0; start === 0 || start < live.length; start += HEARTBEAT_CHUNK) {
        const chunk = live.slice(start, start + HEARTBEAT_CHUNK);
        const keys = [key.instances, key.instance, key.agents, key.queued];
        for (const [agentId, subscription] of chunk) {
          keys.push(key.presence(agentId), key.queue(agentId));
          subscription.held ??= [];
        }
        const taken = new Map<Subscription, AgentUpdate[]>();
        try {
          const reply = (await run(SCRIPTS.heartbeat, keys, [
            instanceId,
            String(ttl),
            active,
            start === 0 ? '1' : '0',
            ...chunk.map(([agentId]) => agentId),
          ])) as [number, ...string[]][];
          for (const [index, ...items] of reply) {
            const entry = chunk[index - 1];
            if (entry) taken.set(entry[1], items.map(decode));
          }
        } finally {
          for (const [, subscription] of chunk) release(subscription, taken.get(subscription) ?? []);
        }
      }
    };

    /** Runs a heartbeat now, or right after the one in flight. */
    const heartbeat = (): Promise<void> => {
      if (beating) {
        beatAgain = true;
        return beating;
      }
      if (!usable()) return Promise.resolve();
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
    const timer = setInterval(() => void heartbeat(), Math.floor(ttl / 3));

    // ---- connections -------------------------------------------------------------------------

    // Counted and logged once per outage and connection, not once per reconnection attempt.
    const watch = (client: typeof commands, name: string, onReady: () => Promise<void>) => {
      let healthy: boolean | undefined;
      client.on('error', (error: unknown) => {
        if (client === commands) scriptsLoaded = false;
        if (healthy !== false && !closed) report(`${name}_connection`, error);
        healthy = false;
      });
      client.on('ready', () => {
        healthy = true;
        onReady().catch((error) => report(`${name}_connection`, error));
      });
    };
    watch(commands, 'redis', async () => {
      // Loaded before anything runs, so no EVALSHA can miss and be resent out of order.
      await Promise.all(Object.values(SCRIPTS).map((s) => commands.sendCommand(['SCRIPT', 'LOAD', s.source])));
      scriptsLoaded = true;
      if (subscriber.isReady) markStarted();
      // Registers the instance and, after a Redis restart, re-registers presence and takes
      // what was queued while it was gone.
      await heartbeat();
    });
    watch(subscriber, 'redis_subscriber', async () => {
      if (scriptsLoaded) markStarted();
      // node-redis has resubscribed every channel by now; drop those nobody wants any more,
      // and take what was queued while no subscription listened.
      for (const channel of staleChannels) {
        if (!subscriptions.has(channel.slice(channelPrefix.length))) void unsubscribeChannel(channel);
      }
      await heartbeat();
    });
    // The first connection retries forever (reconnectStrategy); until then every call fails fast.
    for (const client of [commands, subscriber]) client.connect().catch(() => {});

    return {
      subscribe(agentId, onUpdate) {
        return serialize(agentId, async () => {
          await whenStarted();
          if (!usable() || !subscriber.isReady) throw new RedisUnavailableError('subscribe');
          const subscription: Subscription = { onUpdate, state: 'joining', held: undefined, late: [] };
          subscriptions.set(agentId, subscription);
          unfinishedLeaves.delete(agentId);
          const channel = key.channel(agentId);
          try {
            // Subscribe first, then register presence: from the moment publishers can see this
            // instance, its subscription already listens.
            await withTimeout(subscriber.subscribe(channel, onMessage), commandTimeout, 'SUBSCRIBE');
            staleChannels.delete(channel);
            const items = (await run(
              SCRIPTS.join,
              [key.presence(agentId), key.queue(agentId), key.agents, key.queued],
              [instanceId, String(ttl), agentId],
            )) as string[];
            subscription.state = 'live';
            return items.map(decode);
          } catch (error) {
            subscriptions.delete(agentId);
            void unsubscribeChannel(channel);
            // Presence may have been registered by a join whose reply was lost.
            unfinishedLeaves.add(agentId);
            throw error;
          }
        });
      },

      unsubscribe(agentId, undelivered) {
        const subscription = subscriptions.get(agentId);
        // At once, not when our turn comes: the hub must not hear about this agent any more.
        if (subscription) subscription.state = 'leaving';
        return serialize(agentId, async () => {
          // A heartbeat in flight may still hand over this agent's queue; it lands in `late`.
          await beating;
          // Unsubscribe first: what was published before Redis confirms reaches `late`; what is
          // published after finds no listener here and is queued (or reaches other instances).
          const unsubscribed = unsubscribeChannel(key.channel(agentId));
          if (subscriber.isReady) await withTimeout(unsubscribed, commandTimeout, 'UNSUBSCRIBE').catch(() => {});
          if (subscriptions.get(agentId) === subscription) subscriptions.delete(agentId);
          const items = [...undelivered, ...(subscription?.late ?? [])].map(encode);
          try {
            const dropped = (await run(
              SCRIPTS.leave,
              [key.presence(agentId), key.queue(agentId), key.agents, key.queued],
              [instanceId, agentId, String(maxQueueSize), ...items],
            )) as number;
            if (dropped > 0) onDropped(agentId, dropped);
          } catch (error) {
            // The items are lost (the hub logs it); the presence is withdrawn on the next
            // heartbeat, or expires after presenceTtl.
            unfinishedLeaves.add(agentId);
            throw error;
          }
        });
      },

      async publish(agentId, update) {
        const [queued, dropped] = (await run(
          SCRIPTS.publish,
          [key.presence(agentId), key.queue(agentId), key.sequence, key.queued],
          [key.channel(agentId), JSON.stringify(update), String(maxQueueSize)],
        )) as [number, number];
        if (dropped > 0) onDropped(agentId, dropped);
        return queued === 1 ? QUEUED : NOT_QUEUED;
      },

      async clusterStats(): Promise<ClusterStats> {
        const [instances, connections, agents, queued] = (await run(
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

      async close() {
        if (closed) return;
        clearInterval(timer);
        await Promise.allSettled([...chains.values(), beating]);
        if (usable()) {
          await run(SCRIPTS.deregister, [key.instances, key.instance, key.agents], [instanceId]).catch((error) =>
            report('close', error),
          );
        }
        closed = true;
        subscriptions.clear();
        commands.destroy();
        subscriber.destroy();
      },
    } satisfies Broker;
  };
}
