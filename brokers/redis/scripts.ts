/**
 * The Redis broker's Lua scripts and key layout. Every decision the broker makes ("number this
 * update, keep it, deliver or queue it", "join: position, state and queue", "hand a queue over")
 * is one script: Redis runs one script at a time, so instances never race each other.
 *
 * Keys, all under the prefix (`haw:` by default). Per agent:
 * - `agent:<id>` (hash): the agent's stream: `epoch`, `seq` (its last update's number), `hbytes`
 *   (bytes of its history), `sbytes` (bytes of its state and record, what `maxStateBytes`
 *   bounds), `status` (its latest status update's JSON) and `t:<task id>` (the latest update's
 *   JSON of each task its snapshot holds; without its `result` when that was too large). The epoch and the numbering live in
 *   one key, so Redis can never lose one without the other; when the key is missing (Redis
 *   restarted without persistence, the stream expired, or it was evicted) the next publish or
 *   join creates it with a new epoch, and whatever is left of the old stream is deleted.
 * - `open:<id>`, `ended:<id>` (sorted sets): task ids of the snapshot's open and ended tasks,
 *   scored by the `seq` of their latest update, at most `MAX_SNAPSHOT_OPEN_TASKS` and
 *   `MAX_SNAPSHOT_FINAL_TASKS`: the least recently updated go first (as `applyUpdate`).
 * - `history:<id>` (list): the latest updates' wire JSON, oldest first, consecutive `seq`s up to
 *   the agent's `seq`, at most `historySize` of them and `maxHistoryBytes` bytes (the oldest are
 *   popped first). A list, not a Stream or a sorted set, because the history is an append-only
 *   run of consecutive numbers (the position of `seq` s is `s - first`) and a list is what costs
 *   least: measured on Redis 7.0 with ~200-byte updates, 1 update takes 352 bytes (a Stream
 *   4728: Redis preallocates its 4 KB head node; a sorted set 1136) and 1000 take 1.05 times
 *   their JSON (a Stream 1.22, a sorted set 1.55). Each entry ends with its own `"seq":N`, so a
 *   read checks that it got exactly the run it asked for.
 * - `presence:<id>` (sorted set, while some instance holds a connection for the agent) and
 *   `queue:<id>` (sorted set of `seq:json`, while updates wait for a client): see `QUEUES`.
 * Across agents: `agent-ids` (every agent holding a stream, all scored 0: listed by id),
 * `streams` (agents by the time their stream expires, `streamTtl` after it was
 * last published to, joined or watched), `histories` (agents holding history, least recently
 * published first: evicted first over `maxTotalHistoryBytes`), `history-bytes` (their total),
 * `states` (agents by when their stream was last published to or joined: evicted first over
 * `maxTotalStateBytes`), `state-bytes` (the total of every `sbytes`), and
 * the queue bookkeeping of `QUEUES`. Streams and queues are swept by the scripts rather than left
 * to key expiry, so the totals stay exact. Pub/sub channel per agent: `updates:<id>`.
 *
 * @module
 */
import { MAX_SNAPSHOT_FINAL_TASKS, MAX_SNAPSHOT_OPEN_TASKS } from '../../plugin/agent-state.ts';

/** A Lua script; the connection loads it and runs it by its SHA1. */
export interface Script {
  readonly name: string;
  readonly source: string;
}

/** Agents refreshed per heartbeat script call: bounds how long one call blocks Redis. */
export const HEARTBEAT_CHUNK = 500;
/** Expired queues and streams dropped per publish and per heartbeat: bounds the work of one call. */
const SWEEP_ON_PUBLISH = 10;
const SWEEP_ON_HEARTBEAT = 200;
/** Whole queues (or histories, or states) dropped per call to get back under a total; the next call goes on. */
const EVICT_PER_CALL = 100;
/**
 * What the state bounds count besides the JSON, in bytes of Redis memory (rounded up): each entry
 * of a state (its hash field and sorted-set member), and an agent's stream record besides four
 * times its id (the `agent:` hash, the `open:`/`ended:` sets, its place in `agent-ids`,
 * `streams` and `states`).
 */
const STATE_ENTRY_BYTES = 64;
const STREAM_RECORD_BYTES = 512;

/**
 * `seq_of(json)`: the `seq` of an update's wire JSON, which ends with `,"seq":N,"epoch":"E"}`
 * (an epoch is at most 64 characters: the last 120 hold both).
 */
const SEQ_OF = `local function seq_of(json)
  return tonumber(string.match(string.sub(json, -120), ',"seq":(%d+),"epoch":"[%w_-]*"}$'))
end`;

/** Redis's clock, in milliseconds: every instance compares expiry times on the same clock. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * The queue bookkeeping every script shares; `base` (the key prefix) and `now` must be set.
 *
 * Per agent: `queue:<agent>`, a sorted set of `seq:json` items scored by the update's `seq`, so
 * updates handed back (undelivered when the last client left) slot in before newer ones. Across
 * agents: `queued` and `queued-bytes` (cluster-wide totals), `queue-bytes` (hash: bytes per
 * queue), `queues` (sorted set: queued agents in the order they were last added to),
 * `queue-expiry` (sorted set: agents by the time their queue expires), `queue-shared` (set:
 * queues that filled while some instance listened on the agent's channel). Every change goes
 * through these functions, so the totals stay exact; no queue key expires by itself.
 * Drops are collected in `drops` as {agent, count, reason} and returned to the caller.
 */
const QUEUES = `local drops = {}
local K_COUNT, K_TOTAL = base .. 'queued', base .. 'queued-bytes'
local K_SIZES, K_INDEX = base .. 'queue-bytes', base .. 'queues'
local K_EXPIRY, K_SHARED = base .. 'queue-expiry', base .. 'queue-shared'
local function queue_key(agent) return base .. 'queue:' .. agent end
local function presence_key(agent) return base .. 'presence:' .. agent end
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
-- Returns how many items were added.
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
  if added == 0 then return added end
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
    if not over() then return added end
    -- Whole queues, the one waiting longest first, this one last.
    local others = redis.call('ZRANGE', K_INDEX, 0, ${EVICT_PER_CALL})
    for _, other in ipairs(others) do
      if other ~= agent then drop(other, 'total_bytes') end
      if not over() then return added end
    end
    if #others <= ${EVICT_PER_CALL} then drop(agent, 'total_bytes') end
  end
  return added
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

/**
 * The streams every script shares (after `QUEUES`): numbering, history, snapshot state and
 * their expiry. See the module comment for the keys.
 */
const STREAMS = `local K_STREAMS, K_HISTORIES, K_HTOTAL = base .. 'streams', base .. 'histories', base .. 'history-bytes'
local K_IDS, K_STATES, K_STOTAL = base .. 'agent-ids', base .. 'states', base .. 'state-bytes'
local function meta_key(agent) return base .. 'agent:' .. agent end
local function open_key(agent) return base .. 'open:' .. agent end
local function ended_key(agent) return base .. 'ended:' .. agent end
local function history_key(agent) return base .. 'history:' .. agent end
${SEQ_OF}
-- Drops an agent's history; its epoch, seq and state stay (older resumes fail). Returns the
-- bytes of history left across agents.
local function drop_history(agent)
  local bytes = tonumber(redis.call('HGET', meta_key(agent), 'hbytes') or '0') or 0
  redis.call('DEL', history_key(agent))
  redis.call('ZREM', K_HISTORIES, agent)
  if bytes == 0 then return tonumber(redis.call('GET', K_HTOTAL) or '0') or 0 end
  redis.call('HSET', meta_key(agent), 'hbytes', 0)
  return redis.call('DECRBY', K_HTOTAL, bytes)
end
-- Forgets an agent's stream whole: its next publish or join starts a new epoch.
local function forget(agent)
  drop_history(agent)
  local held = tonumber(redis.call('HGET', meta_key(agent), 'sbytes') or '0') or 0
  if held ~= 0 then redis.call('DECRBY', K_STOTAL, held) end
  redis.call('ZREM', K_STATES, agent)
  redis.call('DEL', meta_key(agent), open_key(agent), ended_key(agent))
  redis.call('ZREM', K_STREAMS, agent)
  redis.call('ZREM', K_IDS, agent)
end
-- Keeps an agent's stream for ttl more (a ttl of 0 keeps it for good).
local function touch(agent, ttl)
  if ttl > 0 then redis.call('ZADD', K_STREAMS, 'GT', now + ttl, agent) end
end
-- Forgets up to limit streams whose time ran out; one still watched or with a queue is kept.
local function sweep_streams(limit, ttl)
  if ttl <= 0 then return end
  for _, agent in ipairs(redis.call('ZRANGEBYSCORE', K_STREAMS, '-inf', now, 'LIMIT', 0, limit)) do
    if redis.call('EXISTS', queue_key(agent), presence_key(agent)) > 0 then
      touch(agent, ttl)
    else
      forget(agent)
    end
  end
end
-- The agent's epoch and seq. A stream Redis does not hold starts now, in the candidate epoch:
-- what is left of an old one (keys evicted apart, a queue numbered in it) goes first.
local function stream(agent, candidate, ttl)
  local held = redis.call('HMGET', meta_key(agent), 'epoch', 'seq')
  -- Indexed by id for the listing (a stream older than the index gets in on its next use).
  redis.call('ZADD', K_IDS, 0, agent)
  if held[1] then return held[1], tonumber(held[2]) or 0 end
  forget(agent)
  redis.call('ZADD', K_IDS, 0, agent)
  if redis.call('EXISTS', queue_key(agent)) == 1 then drop(agent, 'expired') end
  local record_bytes = ${STREAM_RECORD_BYTES} + 4 * #agent
  redis.call('HSET', meta_key(agent), 'epoch', candidate, 'seq', 0, 'sbytes', record_bytes)
  redis.call('INCRBY', K_STOTAL, record_bytes)
  redis.call('ZADD', K_STATES, redis.call('INCR', base .. 'sequence'), agent)
  touch(agent, ttl)
  return candidate, 0
end
-- The state's bookkeeping: what an entry counts, and the agent's (and the total's) bytes.
local function entry_bytes(field, value) return #field + #value + ${STATE_ENTRY_BYTES} end
local function restate(agent, delta)
  if delta == 0 then return end
  redis.call('HINCRBY', meta_key(agent), 'sbytes', delta)
  redis.call('INCRBY', K_STOTAL, delta)
end
local function state_bytes(agent) return tonumber(redis.call('HGET', meta_key(agent), 'sbytes') or '0') or 0 end
-- Forgets one entry of a state: 'status', or 't:<task id>' with the set it is in.
local function forget_entry(agent, field, set)
  local value = redis.call('HGET', meta_key(agent), field)
  if set then redis.call('ZREM', set, string.sub(field, 3)) end
  if not value then return end
  redis.call('HDEL', meta_key(agent), field)
  restate(agent, -entry_bytes(field, value))
end
-- Forgets the least recently updated entries of an agent's state until it holds at most limit
-- bytes: ended tasks, then open ones, then the status; never the field keep (its newest update).
-- Returns how many.
local function shrink(agent, limit, keep)
  local n = 0
  for _, set in ipairs({ended_key(agent), open_key(agent)}) do
    for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
      if state_bytes(agent) <= limit then return n end
      if 't:' .. id ~= keep then
        forget_entry(agent, 't:' .. id, set)
        n = n + 1
      end
    end
  end
  if state_bytes(agent) > limit and keep ~= 'status' and redis.call('HEXISTS', meta_key(agent), 'status') == 1 then
    forget_entry(agent, 'status')
    n = n + 1
  end
  return n
end
-- The field of an agent's newest update.
local function newest(agent)
  local best, field = -1, nil
  for _, set in ipairs({open_key(agent), ended_key(agent)}) do
    local top = redis.call('ZREVRANGE', set, 0, 0, 'WITHSCORES')
    if top[1] and tonumber(top[2]) > best then best, field = tonumber(top[2]), 't:' .. top[1] end
  end
  local status = redis.call('HGET', meta_key(agent), 'status')
  if status and (seq_of(status) or 0) > best then field = 'status' end
  return field
end
-- Gets the states of all agents back under stotal (-1: none): the agents touched least recently
-- first, this one last. One no instance holds is forgotten whole; a held one keeps its newest update.
local function bound_states(agent, stotal)
  if stotal < 0 then return end
  local function over() return (tonumber(redis.call('GET', K_STOTAL) or '0') or 0) > stotal end
  if not over() then return end
  for _, other in ipairs(redis.call('ZRANGE', K_STATES, 0, ${EVICT_PER_CALL - 1})) do
    if not over() then return end
    if other ~= agent then
      if redis.call('ZCOUNT', presence_key(other), now, '+inf') > 0 then
        if shrink(other, 0, newest(other)) > 0 then drops[#drops + 1] = {other, 1, 'state'} end
        -- Behind the others now: the next call gets further.
        redis.call('ZADD', K_STATES, redis.call('INCR', base .. 'sequence'), other)
      else
        forget(other)
        drops[#drops + 1] = {other, 1, 'state'}
      end
    end
  end
  if over() and shrink(agent, 0, newest(agent)) > 0 then drops[#drops + 1] = {agent, 1, 'state'} end
end
-- Records a numbered update: the agent's state (as applyUpdate), then its history, within
-- every bound. kind 's' (status) or 't' (task, with its id and whether its status is final);
-- stripped: the wire JSON without its result (false when it has none to leave out);
-- hsize, hmax, htotal: historySize, maxHistoryBytes, maxTotalHistoryBytes; smax, stotal:
-- maxStateBytes, maxTotalStateBytes (-1: none).
local function record(agent, seq, wire, stripped, kind, task, final, hsize, hmax, htotal, smax, stotal)
  local meta = meta_key(agent)
  local field = kind == 's' and 'status' or ('t:' .. task)
  local value = wire
  if smax >= 0 and stripped and entry_bytes(field, wire) + ${STREAM_RECORD_BYTES} + 4 * #agent > smax then
    -- Too large to keep on its own: the state keeps it without its result.
    value = stripped
    drops[#drops + 1] = {agent, 1, 'result'}
  end
  local old = redis.call('HGET', meta, field)
  if old then restate(agent, -entry_bytes(field, old)) end
  if kind == 's' then
    redis.call('HSET', meta, 'status', value)
  else
    local set, other, limit = open_key(agent), ended_key(agent), ${MAX_SNAPSHOT_OPEN_TASKS}
    if final then set, other, limit = ended_key(agent), open_key(agent), ${MAX_SNAPSHOT_FINAL_TASKS} end
    redis.call('ZREM', other, task)
    redis.call('ZADD', set, seq, task)
    redis.call('HSET', meta, field, value)
    if redis.call('ZCARD', set) > limit then
      local evicted = redis.call('ZRANGE', set, 0, 0)
      forget_entry(agent, 't:' .. evicted[1], set)
    end
  end
  restate(agent, entry_bytes(field, value))
  redis.call('ZADD', K_STATES, redis.call('INCR', base .. 'sequence'), agent)
  if smax >= 0 and state_bytes(agent) > smax then
    local n = shrink(agent, smax, field)
    if n > 0 then drops[#drops + 1] = {agent, n, 'task'} end
  end
  bound_states(agent, stotal)
  if hsize <= 0 then return end
  local history = history_key(agent)
  if redis.call('LLEN', history) > 0 and seq_of(redis.call('LINDEX', history, -1)) ~= seq - 1 then
    -- Not the run up to this seq (keys evicted apart): the history starts again here.
    drop_history(agent)
  end
  local count = redis.call('RPUSH', history, wire)
  local held = redis.call('HINCRBY', meta, 'hbytes', #wire)
  local total = redis.call('INCRBY', K_HTOTAL, #wire)
  redis.call('ZADD', K_HISTORIES, redis.call('INCR', base .. 'sequence'), agent)
  local freed = 0
  while count > hsize or (hmax >= 0 and held - freed > hmax) do
    local oldest = redis.call('LPOP', history)
    if not oldest then break end
    freed = freed + #oldest
    count = count - 1
  end
  if freed > 0 then
    redis.call('HINCRBY', meta, 'hbytes', -freed)
    total = redis.call('DECRBY', K_HTOTAL, freed)
    if count == 0 then redis.call('ZREM', K_HISTORIES, agent) end
  end
  if htotal >= 0 and total > htotal then
    -- Whole histories, the agent published to least recently first (this one last).
    for _, other in ipairs(redis.call('ZRANGE', K_HISTORIES, 0, ${EVICT_PER_CALL - 1})) do
      drops[#drops + 1] = {other, 1, 'history'}
      if drop_history(other) <= htotal then break end
    end
  end
end
-- The snapshot's state: {status JSON or false, task JSONs (open, then ended)}.
local function snapshot(agent)
  local fields = {'status'}
  for _, set in ipairs({open_key(agent), ended_key(agent)}) do
    for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do fields[#fields + 1] = 't:' .. id end
  end
  return redis.call('HMGET', meta_key(agent), unpack(fields))
end`;

/** The four queue bounds, as the scripts read them from ARGV[first..first + 3]. */
const LIMITS = (first: number) =>
  `{tonumber(ARGV[${first}]), tonumber(ARGV[${first + 1}]), tonumber(ARGV[${first + 2}]), tonumber(ARGV[${first + 3}])}`;

/**
 * KEYS none; ARGV prefix, agent id, body JSON (the update without `seq` and `epoch`), kind
 * (`s`|`t`), task id, final (`0`|`1`), the four queue limits (7-10), historySize,
 * maxHistoryBytes, maxTotalHistoryBytes, streamTtl (11-14), a new epoch in case the agent's
 * stream is not held (15), maxStateBytes, maxTotalStateBytes (16-17), the body without its
 * `result` (`withoutResult`; empty when the broker judged it small enough to keep whole) (18).
 *
 * Numbers the update (its `seq` is allocated in the same script that publishes or queues it, so
 * `seq` order is delivery order), builds its wire JSON (the body with `,"seq":N,"epoch":"E"`
 * before the final `}`), records it in the state and history, then publishes it to the present
 * instances, or queues it when none is present or none is listening (a present instance whose
 * subscriber connection is down: its next heartbeat takes the queue).
 * Returns {queued 0|1, drops, seq, epoch}.
 */
const PUBLISH = `${NOW}
local base = ARGV[1]
${QUEUES}
${STREAMS}
local agent, body = ARGV[2], ARGV[3]
if string.sub(body, -1) ~= '}' then return redis.error_reply('ERR update body is not a JSON object') end
local sttl = tonumber(ARGV[14])
local epoch = stream(agent, ARGV[15], sttl)
local seq = redis.call('HINCRBY', meta_key(agent), 'seq', 1)
local tail = string.format(',"seq":%d,"epoch":"', seq) .. epoch .. '"}'
local wire = string.sub(body, 1, -2) .. tail
local stripped = ARGV[18] ~= '' and (string.sub(ARGV[18], 1, -2) .. tail) or false
record(agent, seq, wire, stripped, ARGV[4], ARGV[5], ARGV[6] == '1', tonumber(ARGV[11]), tonumber(ARGV[12]),
  tonumber(ARGV[13]), tonumber(ARGV[16] or '-1'), tonumber(ARGV[17] or '-1'))
touch(agent, sttl)
local presence = presence_key(agent)
redis.call('ZREMRANGEBYSCORE', presence, '-inf', now)
local message = string.format('%d:', seq) .. wire
local queued = 0
if redis.call('EXISTS', presence) == 0 or redis.call('PUBLISH', channel(agent), message) == 0 then
  queued = 1
  enqueue(agent, {message}, 1, ${LIMITS(7)}, listeners(agent) > 0)
end
sweep(${SWEEP_ON_PUBLISH})
sweep_streams(${SWEEP_ON_PUBLISH}, sttl)
return {queued, drops, seq, epoch}`;

/**
 * KEYS presence, instance's agent set; ARGV prefix, instance id, presence ttl, agent id,
 * streamTtl, a new epoch in case the agent's stream is not held.
 *
 * Registers the instance as present, and reads the stream's position and state and takes the
 * queue, in one step: every update after the returned `seq` reaches the subscription. When the
 * queue filled while other instances listened on the channel and some still listen, it is also
 * re-published on the channel, for them (the joiner ignores the copies: their `seq` is within
 * its position). Returns {items, drops, epoch, seq, {status, tasks...}}.
 */
const JOIN = `${NOW}
local base = ARGV[1]
${QUEUES}
${STREAMS}
local ttl, agent, sttl = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], agent)
redis.call('PEXPIRE', KEYS[2], ttl)
local epoch, seq = stream(agent, ARGV[6], sttl)
touch(agent, sttl)
redis.call('ZADD', K_STATES, redis.call('INCR', base .. 'sequence'), agent)
local shared = redis.call('SISMEMBER', K_SHARED, agent) == 1
local items = take(agent)
if #items > 0 and shared and listeners(agent) > 1 then republish(agent, items) end
return {items, drops, epoch, seq, snapshot(agent)}`;

/**
 * KEYS none; ARGV prefix, agent id, since, epoch.
 * The updates' JSON after `since`, up to the latest, or nil when the epoch is not the agent's
 * current one, `since` is out of range, or some of them are no longer held.
 */
const HISTORY = `local base = ARGV[1]
${SEQ_OF}
local agent, since, epoch = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local held = redis.call('HMGET', base .. 'agent:' .. agent, 'epoch', 'seq')
if held[1] ~= epoch then return false end
local seq = tonumber(held[2]) or 0
if since == nil or since < 0 or since > seq then return false end
if since == seq then return {} end
local history = base .. 'history:' .. agent
local first = seq - redis.call('LLEN', history) + 1
if since + 1 < first then return false end
local updates = redis.call('LRANGE', history, since + 1 - first, -1)
-- A run in order, as long as the gap, from since + 1 to seq: every update missed, once.
if #updates ~= seq - since or seq_of(updates[1]) ~= since + 1 or seq_of(updates[#updates]) ~= seq then
  return false
end
return updates`;

/**
 * KEYS presence, instance's agent set; ARGV prefix, instance id, agent id, the four limits,
 * streamTtl, then `seq:json` items. Withdraws the instance; if no instance is left, the items
 * go back to the queue, before anything queued later. Items numbered in an epoch that is no
 * longer the agent's (Redis lost the stream meanwhile) are dropped as expired: their `seq`
 * would not fit the new stream. Returns {queued, drops}.
 */
const LEAVE = `${NOW}
local base = ARGV[1]
${QUEUES}
${STREAMS}
local agent = ARGV[3]
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], agent)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local epoch = redis.call('HGET', meta_key(agent), 'epoch')
if epoch then touch(agent, tonumber(ARGV[8])) end
if #ARGV < 9 or redis.call('EXISTS', KEYS[1]) == 1 then return {0, drops} end
local tail = epoch and (',"epoch":"' .. epoch .. '"}') or nil
local items, stale = {}, 0
for i = 9, #ARGV do
  local item = ARGV[i]
  if tail and string.sub(item, -#tail) == tail then items[#items + 1] = item else stale = stale + 1 end
end
if stale > 0 then drops[#drops + 1] = {agent, stale, 'expired'} end
local added = enqueue(agent, items, 1, ${LIMITS(4)}, listeners(agent) > 0)
return {added, drops}`;

/**
 * KEYS instances, instance hash, instance's agent set, then the presence of each agent; ARGV
 * prefix, instance id, ttl, active connections, first chunk 0|1, streamTtl, agent ids.
 * Refreshes the instance, its presence and its agents' streams, and hands over any queue that
 * filled while it was present (its presence lapsed, or Redis restarted empty) by re-publishing
 * it on the agent's channel, so every listening instance gets it before anything published
 * later. The first chunk also resets the agent set and sweeps expired queues and streams.
 * Returns drops.
 */
const HEARTBEAT = `${NOW}
local base = ARGV[1]
${QUEUES}
${STREAMS}
local id, ttl, sttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[2], 'active_connections', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[3])
  sweep(${SWEEP_ON_HEARTBEAT})
  sweep_streams(${SWEEP_ON_HEARTBEAT}, sttl)
end
for j = 7, #ARGV do
  local agent, presence = ARGV[j], KEYS[j - 3]
  redis.call('ZADD', presence, now + ttl, id)
  redis.call('PEXPIRE', presence, ttl)
  redis.call('SADD', KEYS[3], agent)
  if sttl > 0 then redis.call('ZADD', K_STREAMS, 'XX', 'GT', now + sttl, agent) end
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

/**
 * KEYS none; ARGV prefix, the agent id to list after (empty: from the start), limit, most open
 * tasks per agent. A page of the agents holding a stream, by id (`agent-ids`, a sorted set of
 * equal scores: ZRANGE BYLEX is O(log n + limit)); ids whose stream is gone are dropped from the
 * index on the way. Returns {more 0|1, {id, epoch, seq, status JSON or false, open tasks total,
 * queued, live instances, open task JSONs (most recent first)...}..., the last id scanned}.
 */
const LIST_AGENTS = `${NOW}
local base = ARGV[1]
local K_IDS = base .. 'agent-ids'
local after, limit, tasks = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local from = after == '' and '-' or ('(' .. after)
local page, more, last = {}, 0, after
-- Stale ids are skipped, a bounded number per call, so one page never scans without end.
local budget = limit * 4 + 16
while #page < limit and budget > 0 do
  local ids = redis.call('ZRANGEBYLEX', K_IDS, from, '+', 'LIMIT', 0, limit - #page + 1)
  if #ids == 0 then break end
  for _, agent in ipairs(ids) do
    if #page == limit then
      more = 1
      break
    end
    budget = budget - 1
    local meta = base .. 'agent:' .. agent
    local held = redis.call('HMGET', meta, 'epoch', 'seq', 'status')
    if held[1] then
      local open = base .. 'open:' .. agent
      local entry = {agent, held[1], tonumber(held[2]) or 0, held[3] or false, redis.call('ZCARD', open),
        redis.call('ZCARD', base .. 'queue:' .. agent),
        redis.call('ZCOUNT', base .. 'presence:' .. agent, now, '+inf')}
      if tasks > 0 then
        for _, task in ipairs(redis.call('ZREVRANGE', open, 0, tasks - 1)) do
          local wire = redis.call('HGET', meta, 't:' .. task)
          if wire then entry[#entry + 1] = wire end
        end
      end
      page[#page + 1] = entry
    else
      redis.call('ZREM', K_IDS, agent)
    end
    from = '(' .. agent
    last = agent
  end
  if more == 1 then break end
  -- Out of budget with ids left: the next page goes on from the last one scanned.
  if budget <= 0 and redis.call('ZLEXCOUNT', K_IDS, from, '+') > 0 then more = 1 end
end
return {more, page, last}`;

/** KEYS instances, instance hash, instance's agent set; ARGV instance id. A clean goodbye. */
const DEREGISTER = `redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 0`;

/** Every script the broker runs; the connection loads them all on each (re)connection. */
export const SCRIPTS = {
  publish: { name: 'publish', source: PUBLISH },
  join: { name: 'join', source: JOIN },
  history: { name: 'history', source: HISTORY },
  leave: { name: 'leave', source: LEAVE },
  heartbeat: { name: 'heartbeat', source: HEARTBEAT },
  clusterStats: { name: 'clusterStats', source: CLUSTER_STATS },
  deregister: { name: 'deregister', source: DEREGISTER },
  listAgents: { name: 'listAgents', source: LIST_AGENTS },
} as const satisfies Record<string, Script>;

/** What the queue and stream scripts report: {agent id, updates dropped, reason}. */
export type Drops = [string, number, string][];
