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
 *   (undelivered when the last client left) slot in before newer ones, in publish order. It is
 *   bounded in updates (`maxQueueSize`) and bytes (`maxQueueBytes`), all queues together in
 *   bytes (`maxTotalQueueBytes`, whole queues dropped, the one waiting longest first, as in
 *   the in-memory broker), and in time (`queueTtl`, swept by the scripts rather than left to key
 *   expiry, so the cluster-wide counters stay exact). Bytes are those of the stored JSON, which
 *   is what `sizeOf` counts; the scripts measure it themselves.
 * Each step that decides "deliver or queue" is one Lua script, so a publish and a join cannot
 * interleave: an update is either published to a present instance or queued, never both.
 *
 * A queue is handed over in one of two ways. A client joining on an instance that is alone on
 * the agent's channel takes it as one reply (its clients get one `source: "queue"` batch). A
 * queue that filled while instances still listened on the channel (their presence lapsed: a
 * Redis freeze, or a frozen instance) is instead re-published on the channel by the script that
 * finds it (the heartbeat of any holding instance, or a join), so every listening instance gets
 * it, in order, before anything published later: Redis runs one script at a time.
 *
 * Every command is bounded by `commandTimeout` (node-redis does not time out a command once it
 * is written). After a timeout the broker fails every call at once, without writing to Redis,
 * until Redis answers a probe; then it re-registers at once. While Redis is unreachable,
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
import { createHash } from 'node:crypto';
import { createClient } from '@redis/client';
import type { AgentUpdate, Broker, BrokerFactory, ClusterStats, DropReason, PublishReceipt } from '../plugin/index.ts';

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
}

/** Agents refreshed per heartbeat script call: bounds how long one call blocks Redis. */
const HEARTBEAT_CHUNK = 500;
/** Expired queues dropped per publish and per heartbeat: bounds the work of one call. */
const SWEEP_ON_PUBLISH = 10;
const SWEEP_ON_HEARTBEAT = 200;
/** Whole queues dropped per call to get back under `maxTotalQueueBytes`; the next call goes on. */
const EVICT_PER_CALL = 100;

/** Redis's clock, in milliseconds: every instance compares expiry times on the same clock. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * The queue bookkeeping every script shares; `base` (the key prefix) and `now` must be set.
 *
 * Per agent: `queue:<agent>`, a sorted set of `seq:json` items. Across agents: `queued` and
 * `queued-bytes` (cluster-wide totals), `queue-bytes` (hash: bytes per queue), `queues` (sorted
 * set: queued agents in the order they were last added to), `queue-expiry` (sorted set: agents
 * by the time their queue expires), `queue-shared` (set: queues that filled while some instance
 * listened on the agent's channel). Every change goes through these functions, so the totals
 * stay exact; no queue key expires by itself.
 * Drops are collected in `drops` as {agent, count, reason} and returned to the caller.
 */
const QUEUES = `local drops = {}
local K_COUNT, K_TOTAL = base .. 'queued', base .. 'queued-bytes'
local K_SIZES, K_INDEX = base .. 'queue-bytes', base .. 'queues'
local K_EXPIRY, K_SHARED = base .. 'queue-expiry', base .. 'queue-shared'
local function queue_key(agent) return base .. 'queue:' .. agent end
local function channel(agent) return base .. 'updates:' .. agent end
-- Bytes an item counts for: its JSON, after the 'seq:' prefix.
local function size(item) return #item - (string.find(item, ':', 1, true) or 0) end
local function listeners(agent) return redis.call('PUBSUB', 'NUMSUB', channel(agent))[2] end
local function expired(agent)
  local deadline = redis.call('ZSCORE', K_EXPIRY, agent)
  return deadline and tonumber(deadline) <= now
end
-- Removes an agent's queue whole; returns its items, oldest first.
local function remove(agent)
  local queue = queue_key(agent)
  local items = redis.call('ZRANGE', queue, 0, -1)
  local bytes = tonumber(redis.call('HGET', K_SIZES, agent) or '0') or 0
  redis.call('DEL', queue)
  redis.call('ZREM', K_INDEX, agent)
  redis.call('ZREM', K_EXPIRY, agent)
  redis.call('HDEL', K_SIZES, agent)
  redis.call('SREM', K_SHARED, agent)
  if #items > 0 then redis.call('DECRBY', K_COUNT, #items) end
  if bytes ~= 0 then redis.call('DECRBY', K_TOTAL, bytes) end
  return items
end
local function drop(agent, reason)
  local n = #remove(agent)
  if n > 0 then drops[#drops + 1] = {agent, n, reason} end
end
-- Drops the n oldest items of a queue.
local function trim(agent, n, reason)
  local queue = queue_key(agent)
  local bytes = 0
  for _, item in ipairs(redis.call('ZRANGE', queue, 0, n - 1)) do bytes = bytes + size(item) end
  redis.call('ZREMRANGEBYRANK', queue, 0, n - 1)
  redis.call('HINCRBY', K_SIZES, agent, -bytes)
  redis.call('DECRBY', K_COUNT, n)
  redis.call('DECRBY', K_TOTAL, bytes)
  drops[#drops + 1] = {agent, n, reason}
end
-- Drops up to limit queues whose time ran out.
local function sweep(limit)
  for _, agent in ipairs(redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, limit)) do
    drop(agent, 'expired')
  end
end
-- Adds items[first..] ('seq:json', scored by seq so older ones go first) to an agent's queue and
-- applies every bound. limits: {maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl};
-- a byte bound of -1 is none (a hub that does not pass it); a ttl of 0 never expires.
local function enqueue(agent, items, first, limits, shared)
  local max_count, max_bytes, max_total, ttl = limits[1], limits[2], limits[3], limits[4]
  local queue = queue_key(agent)
  if expired(agent) then drop(agent, 'expired') end
  local added, added_bytes, too_large = 0, 0, 0
  for i = first, #items do
    local item = items[i]
    local bytes = size(item)
    if max_bytes >= 0 and bytes > max_bytes then
      too_large = too_large + 1
    elseif redis.call('ZADD', queue, tonumber(string.match(item, '^(%d+):')) or 0, item) == 1 then
      added = added + 1
      added_bytes = added_bytes + bytes
    end
  end
  if too_large > 0 then drops[#drops + 1] = {agent, too_large, 'bytes'} end
  if added == 0 then return end
  -- Queues in the order they were last added to: the one waiting longest goes first.
  redis.call('ZADD', K_INDEX, redis.call('INCR', base .. 'sequence'), agent)
  if ttl > 0 then
    redis.call('ZADD', K_EXPIRY, 'GT', now + ttl, agent)
  else
    redis.call('ZREM', K_EXPIRY, agent)
  end
  if shared then redis.call('SADD', K_SHARED, agent) end
  local bytes = redis.call('HINCRBY', K_SIZES, agent, added_bytes)
  redis.call('INCRBY', K_COUNT, added)
  redis.call('INCRBY', K_TOTAL, added_bytes)
  local count = redis.call('ZCARD', queue)
  if count > max_count then
    trim(agent, count - max_count, 'count')
    bytes = tonumber(redis.call('HGET', K_SIZES, agent) or '0') or 0
  end
  if max_bytes >= 0 and bytes > max_bytes then
    local n, freed = 0, 0
    for _, item in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
      if bytes - freed <= max_bytes then break end
      n = n + 1
      freed = freed + size(item)
    end
    trim(agent, n, 'bytes')
  end
  if redis.call('EXISTS', queue) == 0 then remove(agent) end
  if max_total >= 0 then
    local function over() return (tonumber(redis.call('GET', K_TOTAL) or '0') or 0) > max_total end
    if not over() then return end
    -- Whole queues, the one waiting longest first, this one last.
    local others = redis.call('ZRANGE', K_INDEX, 0, ${EVICT_PER_CALL})
    for _, other in ipairs(others) do
      if other ~= agent then drop(other, 'total_bytes') end
      if not over() then return end
    end
    if #others <= ${EVICT_PER_CALL} then drop(agent, 'total_bytes') end
  end
end
-- Takes an agent's queue whole (nothing if it expired).
local function take(agent)
  if expired(agent) then
    drop(agent, 'expired')
    return {}
  end
  return remove(agent)
end
local function republish(agent, items)
  for _, item in ipairs(items) do redis.call('PUBLISH', channel(agent), item) end
end`;

/** The four bounds, as the scripts read them from ARGV[first..first + 3]. */
const LIMITS = (first: number) =>
  `{tonumber(ARGV[${first}]), tonumber(ARGV[${first + 1}]), tonumber(ARGV[${first + 2}]), tonumber(ARGV[${first + 3}])}`;

/**
 * KEYS presence, sequence; ARGV prefix, agent id, update JSON, then the four limits.
 * Publishes to the present instances, or queues when none is present or none is listening
 * (a present instance whose subscriber connection is down: its next heartbeat takes the queue).
 * Returns {queued 0|1, drops}.
 */
const PUBLISH = `${NOW}
local base = ARGV[1]
${QUEUES}
local agent = ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local message = string.format('%d', redis.call('INCR', KEYS[2])) .. ':' .. ARGV[3]
local queued = 0
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('PUBLISH', channel(agent), message) == 0 then
  queued = 1
  enqueue(agent, {message}, 1, ${LIMITS(4)}, listeners(agent) > 0)
end
sweep(${SWEEP_ON_PUBLISH})
return {queued, drops}`;

/**
 * KEYS presence, instance's agent set; ARGV prefix, instance id, ttl, agent id.
 * Registers the instance as present and takes the queue, in one step. When the queue filled
 * while other instances listened on the channel and some still listen, it is re-published on
 * the channel (for them and for the joiner) instead of returned. Returns {items, drops}.
 */
const JOIN = `${NOW}
local base = ARGV[1]
${QUEUES}
local ttl, agent = tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], agent)
redis.call('PEXPIRE', KEYS[2], ttl)
local shared = redis.call('SISMEMBER', K_SHARED, agent) == 1
local items = take(agent)
if #items > 0 and shared and listeners(agent) > 1 then
  republish(agent, items)
  items = {}
end
return {items, drops}`;

/**
 * KEYS presence, instance's agent set; ARGV prefix, instance id, agent id, the four limits,
 * then `seq:json` items. Withdraws the instance; if no instance is left, the items go back to
 * the queue, before anything queued later. Returns drops.
 */
const LEAVE = `${NOW}
local base = ARGV[1]
${QUEUES}
local agent = ARGV[3]
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], agent)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if #ARGV < 8 or redis.call('EXISTS', KEYS[1]) == 1 then return drops end
enqueue(agent, ARGV, 8, ${LIMITS(4)}, listeners(agent) > 0)
return drops`;

/**
 * KEYS instances, instance hash, instance's agent set, then the presence of each agent; ARGV
 * prefix, instance id, ttl, active connections, first chunk 0|1, agent ids. Refreshes the
 * instance and its presence, and hands over any queue that filled while it was present (its
 * presence lapsed, or Redis restarted empty) by re-publishing it on the agent's channel, so every
 * listening instance gets it before anything published later. The first chunk also resets the
 * agent set and sweeps expired queues. Returns drops.
 */
const HEARTBEAT = `${NOW}
local base = ARGV[1]
${QUEUES}
local id, ttl = ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[2], 'active_connections', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[3])
  sweep(${SWEEP_ON_HEARTBEAT})
end
for j = 6, #ARGV do
  local agent, presence = ARGV[j], KEYS[j - 2]
  redis.call('ZADD', presence, now + ttl, id)
  redis.call('PEXPIRE', presence, ttl)
  redis.call('SADD', KEYS[3], agent)
  if redis.call('EXISTS', queue_key(agent)) == 1 then
    if expired(agent) then
      drop(agent, 'expired')
    elseif listeners(agent) > 0 then
      -- Nobody listening (this instance's subscriber is reconnecting): left for a later call.
      republish(agent, remove(agent))
    end
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
return drops`;

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

/** What the queue scripts report: {agent id, updates dropped, reason}. */
type Drops = [string, number, string][];

/** Shared receipts: publishing allocates nothing extra. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });

/**
 * Thrown while the broker has no working connection to Redis, and when a command timed out
 * (`commandTimeout`) or was refused because an earlier one did and Redis has not answered since.
 */
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

/** A bound from the hub, as the scripts read it: a whole number, or `none` when it is not set. */
const bound = (value: number | undefined, none: number): string =>
  String(typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : none);

/**
 * Races `promise` against a timer: rejects with `RedisUnavailableError` after `ms` and calls
 * `onTimeout`. The command itself is not cancelled (Redis may still run it later).
 */
const withTimeout = <T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new RedisUnavailableError(`${what} timed out after ${ms} ms`));
    }, ms);
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
    // maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl: ARGV of the queue scripts.
    // A hub older than the byte and time bounds passes none of them: unbounded, never expire.
    const limits = [
      bound(maxQueueSize, 0),
      bound(context.maxQueueBytes, -1),
      bound(context.maxTotalQueueBytes, -1),
      bound(context.queueTtl, 0),
    ];
    const instanceId = context.instanceId ?? crypto.randomUUID();
    const report = (operation: string, error: unknown, agentId?: string) =>
      context.onError?.(operation, error, agentId);
    const reportDrops = (drops: Drops) => {
      for (const [agentId, count, reason] of drops) onDropped(agentId, count, reason as DropReason);
    };
    const key = {
      presence: (agentId: string) => `${base}presence:${agentId}`,
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
    /**
     * Set when a command timed out: Redis is connected but not answering (frozen, overloaded).
     * Calls then fail at once instead of piling up behind the stuck one, until a probe answers.
     */
    let stalled = false;
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

    const usable = () => !closed && !stalled && scriptsLoaded && commands.isReady;
    const whenStarted = async () => {
      if (started) await withTimeout(started, commandTimeout, 'connecting').catch(() => {});
    };

    /** Sends one command on the commands connection, bounded by commandTimeout. */
    const send = (args: string[], what: string): Promise<unknown> =>
      withTimeout(commands.sendCommand(args), commandTimeout, what, stall);

    const run = async (which: Script, keys: readonly string[], args: readonly string[]): Promise<unknown> => {
      await whenStarted();
      if (!usable()) throw new RedisUnavailableError(stalled ? 'not answering' : 'not connected');
      const tail = [String(keys.length), ...keys, ...args];
      try {
        return await send(['EVALSHA', which.sha1, ...tail], 'EVALSHA');
      } catch (error) {
        // Scripts are loaded on every (re)connection; this only happens after a SCRIPT FLUSH.
        if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
        return send(['EVAL', which.source, ...tail], 'EVAL');
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

    const beat = async () => {
      for (const agentId of unfinishedLeaves) {
        if (subscriptions.has(agentId)) continue;
        try {
          reportDrops(
            (await run(
              SCRIPTS.leave,
              [key.presence(agentId), key.agents],
              [base, instanceId, agentId, ...limits],
            )) as Drops,
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
        const chunk = live.slice(start, start + HEARTBEAT_CHUNK).map(([agentId]) => agentId);
        reportDrops(
          (await run(
            SCRIPTS.heartbeat,
            [key.instances, key.instance, key.agents, ...chunk.map(key.presence)],
            [base, instanceId, String(ttl), active, start === 0 ? '1' : '0', ...chunk],
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

    /** Loads the scripts, then registers the instance and re-registers its agents' presence. */
    const prepare = async () => {
      // Loaded before anything runs, so no EVALSHA can miss and be resent out of order.
      await Promise.all(Object.values(SCRIPTS).map((s) => send(['SCRIPT', 'LOAD', s.source], 'SCRIPT LOAD')));
      scriptsLoaded = true;
      if (subscriber.isReady) markStarted();
      // After a Redis restart or freeze this also hands over what was queued meanwhile.
      await heartbeat();
    };

    /** A command timed out: fail fast until Redis answers a probe queued behind it. */
    function stall() {
      if (stalled || closed) return;
      stalled = true;
      // Queued behind the stuck command(s): answered once Redis has run them all.
      Promise.resolve()
        .then(() => commands.sendCommand(['PING']))
        .then(
          () => {
            stalled = false;
            if (closed) return;
            // Redis has run everything sent before the probe; register again at once.
            (scriptsLoaded ? heartbeat() : prepare()).catch((error) => report('redis_connection', error));
          },
          () => {
            // The connection failed: commands fail at once until it is back, and 'ready' prepares.
            stalled = false;
          },
        );
    }

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
    watch(commands, 'redis', prepare);
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
          const subscription: Subscription = { onUpdate, state: 'joining', late: [] };
          subscriptions.set(agentId, subscription);
          unfinishedLeaves.delete(agentId);
          const channel = key.channel(agentId);
          try {
            // Subscribe first, then register presence: from the moment publishers can see this
            // instance, its subscription already listens.
            await withTimeout(subscriber.subscribe(channel, onMessage), commandTimeout, 'SUBSCRIBE');
            staleChannels.delete(channel);
            const [items, drops] = (await run(
              SCRIPTS.join,
              [key.presence(agentId), key.agents],
              [base, instanceId, String(ttl), agentId],
            )) as [string[], Drops];
            subscription.state = 'live';
            reportDrops(drops);
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
          // A heartbeat in flight may still refresh this agent's presence; withdraw after it.
          await beating;
          // Unsubscribe first: what was published before Redis confirms reaches `late`; what is
          // published after finds no listener here and is queued (or reaches other instances).
          const unsubscribed = unsubscribeChannel(key.channel(agentId));
          if (subscriber.isReady) await withTimeout(unsubscribed, commandTimeout, 'UNSUBSCRIBE').catch(() => {});
          if (subscriptions.get(agentId) === subscription) subscriptions.delete(agentId);
          const items = [...undelivered, ...(subscription?.late ?? [])].map(encode);
          try {
            reportDrops(
              (await run(
                SCRIPTS.leave,
                [key.presence(agentId), key.agents],
                [base, instanceId, agentId, ...limits, ...items],
              )) as Drops,
            );
          } catch (error) {
            // The items are lost (the hub logs it); the presence is withdrawn on the next
            // heartbeat, or expires after presenceTtl.
            unfinishedLeaves.add(agentId);
            throw error;
          }
        });
      },

      async publish(agentId, update) {
        const [queued, drops] = (await run(
          SCRIPTS.publish,
          [key.presence(agentId), key.sequence],
          [base, agentId, JSON.stringify(update), ...limits],
        )) as [number, Drops];
        reportDrops(drops);
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
