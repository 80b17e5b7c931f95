import {
  type AgentState,
  applyUpdate,
  createAgentState,
  type HeldUpdate,
  shrinkState,
  snapshotTasks,
} from './agent-state.ts';
import { heldBytes } from './encode.ts';
import type { AgentUpdate, StatusUpdate, TaskUpdate, UnsequencedUpdate } from './schemas.ts';
import type { EvictionKind, HubStats } from './stats.ts';

/** A value, or a promise of it: in-memory brokers answer synchronously, networked ones do not. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * What the hub tells a broker when it starts it.
 *
 * Every byte limit counts what the store really holds for an update, so the limits bound its
 * memory: a broker that stores UTF-8 (Redis) counts the JSON's UTF-8 bytes (`sizeOf`) and its
 * own bookkeeping; the in-memory broker counts the JSON string as the process holds it
 * (`heldBytes`: twice its length when it has a character beyond U+00FF) plus its bookkeeping in
 * the totals.
 */
export interface BrokerContext {
  /** Most updates kept per agent while no instance has a connection for it. */
  readonly maxQueueSize: number;
  /**
   * Most bytes (the updates' JSON) kept per agent's queue; the oldest updates are dropped
   * first. An update larger than this on its own is dropped at once.
   */
  readonly maxQueueBytes: number;
  /**
   * Most bytes all queues together may hold: per process for the in-memory broker, across the
   * cluster for a networked one. When one more update would pass it, whole queues are dropped,
   * the one that waited longest since its last update first.
   */
  readonly maxTotalQueueBytes: number;
  /**
   * Milliseconds a queue may wait for a client of its agent; after that it is dropped whole.
   * Counted from the queue's newest update. 0 keeps queues until they are taken.
   */
  readonly queueTtl: number;
  /** Most updates of each agent's history kept for resuming clients (`?since=`). */
  readonly historySize: number;
  /** Most bytes of each agent's history. */
  readonly maxHistoryBytes: number;
  /**
   * Most bytes of history all agents together may hold (per process in memory, cluster-wide in
   * a networked broker). Over it, the history of the agents published to least recently goes
   * first; their `seq` and `epoch` stay, only older resumes fail.
   */
  readonly maxTotalHistoryBytes: number;
  /**
   * Most bytes of each agent's state: its latest status and task updates (see `applyUpdate` in
   * `agent-state.ts`) and its stream record (id, epoch, `seq`). Over it, the least recently
   * updated entries go first, never the newest update; a task update over it on its own is kept
   * without its `result` (`withoutResult`), and reported as a `result` eviction. Optional for
   * contexts built before it existed; `createAgentHub` always sets it (absent: the in-memory and
   * Redis brokers leave it unbounded, another broker may apply a default of its own).
   */
  readonly maxStateBytes?: number;
  /**
   * Most bytes of state all agents together may hold (per process in memory, cluster-wide in a
   * networked broker). Over it, the agents touched least recently go first: one no instance
   * watches is forgotten whole (it gets a new epoch if it comes back), one being watched keeps
   * only its newest update. Reported as `state` evictions. Optional as `maxStateBytes` is.
   */
  readonly maxTotalStateBytes?: number;
  /**
   * The JSON the hub serialised an update to at the door, before it was numbered: a networked
   * broker appends `seq` and `epoch` to it instead of serialising the update again.
   */
  readonly bodyOf?: (update: UnsequencedUpdate) => string;
  /** The byte size the limits above count for an update: its JSON, UTF-8. */
  readonly sizeOf: (update: AgentUpdate) => number;
  /**
   * The numbered update's wire JSON, serialised once: a broker that keeps it as this string
   * shares one copy with every frame, queue, history and state that has the update.
   */
  readonly jsonOf?: (update: AgentUpdate) => string;
  /**
   * Reads back an update a broker kept as its wire JSON, and remembers that string as its JSON:
   * handing it to the hub then costs no second serialisation and no second copy.
   */
  readonly parse?: (json: string) => AgentUpdate;
  /**
   * Reports data the broker gave up to stay within its byte limits, so the hub counts it by
   * kind (`evictions_by_kind`) and logs it (rate-limited): `count` agents (or, for `task`, state
   * entries). Whole queues dropped over `maxTotalQueueBytes` are reported here as `queue` as well
   * as through `onDropped`.
   */
  readonly onEvicted?: (agentId: string, kind: EvictionKind, count: number) => void;
  /**
   * Reports updates the broker dropped, so the hub counts them and logs them (rate-limited):
   * `count` (over `maxQueueSize`), `bytes` (over `maxQueueBytes`), `total_bytes` (over
   * `maxTotalQueueBytes`), `expired` (`queueTtl`), `agents` (the in-memory broker's
   * `maxQueuedAgents`).
   */
  readonly onDropped: (agentId: string, count: number, reason?: DropReason) => void;
  /**
   * The hub's instance id (as in the stats); a networked broker registers the instance under it
   * so cluster figures and `instance_id` name the same instance. Optional: the fields below were
   * added for networked brokers, and brokers that need none of them ignore them.
   */
  readonly instanceId?: string;
  /**
   * Reports a failure the broker met on its own, outside any call from the hub (connection lost,
   * heartbeat failed): the hub counts it as `broker_error` and logs it. Failures of `subscribe`,
   * `unsubscribe` and `publish` are reported by rejecting instead.
   */
  readonly onError?: (operation: string, error: unknown, agentId?: string) => void;
  /** This instance's live figures, which a networked broker shares for the cluster-wide stats. */
  readonly localFigures?: () => LocalFigures;
}

/**
 * Why queued updates were dropped; see `BrokerContext.onDropped`.
 */
export type DropReason = 'count' | 'bytes' | 'total_bytes' | 'expired' | 'agents';

/**
 * What one instance contributes to the cluster-wide stats.
 */
export interface LocalFigures {
  /** Connections open on this instance now. */
  readonly active_connections: number;
}

/**
 * Cluster-wide figures: the `cluster` object of the stats.
 */
export type ClusterStats = NonNullable<HubStats['cluster']>;

/**
 * Where an agent's stream stands, and its state: what a subscription starts from.
 */
export interface StreamPosition {
  /** The agent's current epoch (a new one is made for an agent never seen). */
  readonly epoch: string;
  /** The latest `seq` published (0 if none). */
  readonly seq: number;
  /** The agent's latest status update, or null. */
  readonly status: StatusUpdate | null;
  /** The snapshot's tasks (see `SnapshotSchema`), oldest update first. */
  readonly tasks: readonly TaskUpdate[];
}

/**
 * What `subscribe` hands the hub: the stream's position and state at the moment the
 * subscription started (every later update reaches `onUpdate`), and the offline queue.
 */
export interface Joined extends StreamPosition {
  /** The queued updates, oldest first; they are removed from the queue. */
  readonly queue: AgentUpdate[];
}

/**
 * One agent a broker holds a stream for, as `listAgents` reports it.
 */
export interface AgentListing {
  readonly agent_id: string;
  /** The agent's current epoch. */
  readonly epoch: string;
  /** The latest `seq` published (0 if none). */
  readonly seq: number;
  /** The agent's latest status update, or null. */
  readonly status: StatusUpdate | null;
  /** Its open tasks, most recently updated first, at most the `maxTasks` asked for. */
  readonly open_tasks: readonly TaskUpdate[];
  /** How many open tasks it has (its snapshot holds at most `MAX_SNAPSHOT_OPEN_TASKS`). */
  readonly open_tasks_total: number;
  /** Updates waiting in its offline queue. */
  readonly queued: number;
  /**
   * Live instances holding a connection for it, when the broker spans several instances;
   * absent on single-process brokers (the hub then reports 1 or 0 from its own connections).
   */
  readonly instances?: number;
}

/**
 * One page of `listAgents`.
 */
export interface AgentPage {
  /** Agents in ascending `agent_id` order (UTF-16 code units, which for agent ids is byte order). */
  readonly agents: readonly AgentListing[];
  /** The last agent id of the page when more may follow, else null. */
  readonly next: string | null;
}

/**
 * Outcome of one publish.
 */
export interface PublishReceipt {
  /** `true` when no instance had a connection for the agent and the update was queued. */
  readonly queued: boolean;
}

/**
 * Outcome of one unsubscribe.
 */
export interface UnsubscribeReceipt {
  /** Undelivered updates put back in the queue (none when another instance holds the agent). */
  readonly queued: number;
}

/**
 * Moves updates between publishers and the instances that hold the agents' connections, and
 * keeps each agent's offline queue while no instance holds one.
 *
 * The hub subscribes to an agent when its first local connection opens and unsubscribes when
 * the last one closes. The in-memory broker is the default; a networked broker (Redis) makes
 * many instances behave as one hub.
 */
export interface Broker {
  /**
   * Starts delivering `agentId`'s updates to `onUpdate` and takes the agent's offline queue.
   *
   * @param agentId The agent.
   * @param onUpdate Called with every update published for the agent after the returned
   *   position, in `seq` order. (A networked broker may also call it with updates up to the
   *   position; the hub ignores every `seq` it already has.)
   *
   * @returns The stream's position and state, and the queued updates.
   */
  subscribe(agentId: string, onUpdate: (update: AgentUpdate) => void): MaybePromise<Joined>;
  /**
   * The agent's updates after `since` in `epoch`, for a resuming client.
   *
   * @param agentId The agent.
   * @param since The last `seq` the client has.
   * @param epoch The epoch that `seq` belongs to.
   *
   * @returns Every update with a larger `seq`, oldest first, up to the latest; `undefined` when
   *   the epoch is not the agent's current one or some of those updates are no longer held.
   */
  history(agentId: string, since: number, epoch: string): MaybePromise<AgentUpdate[] | undefined>;
  /**
   * Stops delivering `agentId`'s updates to this instance.
   *
   * @param agentId The agent.
   * @param undelivered Updates this instance accepted but could not send before its last
   *   connection closed; they go to the front of the queue if no instance has a connection.
   *
   * @returns How many of them were queued (the hub counts them in `messages_queued`).
   */
  unsubscribe(agentId: string, undelivered: readonly AgentUpdate[]): MaybePromise<UnsubscribeReceipt | undefined>;
  /**
   * Numbers an update (sets its `seq` and `epoch`), keeps it in the agent's history and state,
   * and delivers it to every instance subscribed to its agent, or queues it if none is.
   *
   * @param agentId The agent.
   * @param update The complete message but `seq` and `epoch`, which the broker sets on it.
   *
   * @returns Whether it was queued (overflow is reported through `BrokerContext.onDropped`).
   */
  publish(agentId: string, update: UnsequencedUpdate): MaybePromise<PublishReceipt>;
  /** Number of updates queued across all agents, when the broker can tell cheaply. */
  queuedCount?(): number;
  /**
   * Cluster-wide figures, for a broker shared by several instances; the stats route awaits it
   * and serves the result as `cluster`. Absent on single-process brokers.
   */
  clusterStats?(): Promise<ClusterStats>;
  /**
   * The agents the broker holds a stream for (published to, watched, or with a queue), in
   * ascending `agent_id` order, a page at a time: `GET /ws/agents` serves them. Optional: without
   * it the route lists the agents with a connection on this instance.
   *
   * @param after List agents whose id sorts after this one; `undefined` from the start.
   * @param limit Most agents to return.
   * @param maxTasks Most open tasks to return per agent.
   */
  listAgents?(after: string | undefined, limit: number, maxTasks: number): MaybePromise<AgentPage>;
  /** Releases the broker's resources. */
  close(): MaybePromise<void>;
}

/**
 * Creates a broker for a hub; `createAgentHub` calls it once with its settings.
 */
export type BrokerFactory = (context: BrokerContext) => Broker;

/**
 * Options of the in-memory broker.
 */
export interface MemoryBrokerOptions {
  /**
   * Most agents that may hold an offline queue at once; when one more needs a queue, the agent
   * whose queue was created first loses it (counted as dropped). Bounds memory when clients
   * publish to many agent ids nobody ever watches. Default 10000.
   */
  maxQueuedAgents?: number;
  /**
   * Most agents whose stream (epoch, seq, history, state) is kept; past it, the agent published
   * to or watched least recently is forgotten, and gets a new epoch if it comes back (counted as
   * a `state` eviction). `maxTotalStateBytes` bounds the same streams in bytes. Default 10000.
   */
  maxAgents?: number;
}

/**
 * One agent's stream: its numbering, history and state. The history holds the updates' wire
 * JSON, the same strings the state and the queue hold.
 *
 * @internal
 */
export interface Stream {
  readonly epoch: string;
  seq: number;
  history: string[];
  costs: number[];
  head: number;
  bytes: number;
  readonly state: AgentState;
  /** What it counts against `maxTotalStateBytes`: its state and its record. */
  stateBytes: number;
}

/**
 * What the in-memory broker's bookkeeping counts besides the updates' JSON, estimated for V8 on
 * the generous side (test/memory.test.ts checks the heap after GC against it): `stream`, one stream's record besides its agent id
 * (the stream, its state's maps, its history arrays, its epoch, its slot in the streams map),
 * counted in its state; `queue`, one queue besides its agent id, and `entry`, each update a
 * queue or history holds (its slots, the string's header), counted in the totals.
 *
 * @internal
 */
export const MEMORY_BOOKKEEPING: { readonly stream: number; readonly queue: number; readonly entry: number } =
  Object.freeze({ stream: 640, queue: 320, entry: 48 });
const { stream: STREAM_OVERHEAD, queue: QUEUE_OVERHEAD, entry: ENTRY_OVERHEAD } = MEMORY_BOOKKEEPING;

/**
 * A new epoch: 12 random characters, so epochs of different streams and restarts never meet.
 *
 * @internal
 */
export function newEpoch(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let epoch = '';
  for (const byte of crypto.getRandomValues(new Uint8Array(12))) epoch += alphabet[byte % 36];
  return epoch;
}

/**
 * One agent's offline queue: the updates' wire JSON, oldest first, with what each counts.
 *
 * @internal
 */
export interface Queue {
  items: string[];
  costs: number[];
  head: number;
  bytes: number;
  /** `Date.now()` of the newest update: `queueTtl` counts from here. */
  touchedAt: number;
}

/** Receipts of unsubscribing without handing anything back. */
const NOTHING_QUEUED: UnsubscribeReceipt = Object.freeze({ queued: 0 });

/** Shared receipts: publishing allocates nothing on the hot path. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });

/** Reports evictions through the context, when there are any. */
function reportEvicted(context: BrokerContext, agentId: string, kind: EvictionKind, count: number): void {
  if (count > 0) context.onEvicted?.(agentId, kind, count);
}

/**
 * Updates a queue holds now (the dropped prefix aside).
 *
 * @param queue The queue.
 *
 * @returns How many updates it holds.
 *
 * @internal
 */
export function lengthOf(queue: Queue): number {
  return queue.items.length - queue.head;
}

/**
 * The in-memory broker's streams: each agent's numbering, history and state, and the totals
 * they count against. One per broker; its methods are the broker's hot path, so they allocate
 * nothing the publish does not keep.
 *
 * Exported for the SQLite broker (`brokers/sqlite/books.ts`), which keeps its memory in the same
 * books and mirrors what they hold into its file, so its limits, eviction and listing are this
 * broker's. Not part of the public API.
 *
 * @internal
 */
export class StreamBook {
  /** In the order agents were last published to or watched: the front is evicted first. */
  readonly streams = new Map<string, Stream>();
  /** What all histories hold, bookkeeping included: counted against `maxTotalHistoryBytes`. */
  historyBytes = 0;
  /** What all states and stream records hold: counted against `maxTotalStateBytes`. */
  stateBytes = 0;
  readonly context: BrokerContext;
  /** The broker's subscribers: a watched stream is cut rather than forgotten. */
  readonly subscribers: ReadonlyMap<string, unknown>;
  readonly maxAgents: number;
  readonly maxStateBytes: number;
  readonly maxTotalStateBytes: number;
  readonly jsonOf: (update: AgentUpdate) => string;
  readonly parse: (json: string) => AgentUpdate;

  constructor(context: BrokerContext, subscribers: ReadonlyMap<string, unknown>, maxAgents: number) {
    this.context = context;
    this.subscribers = subscribers;
    this.maxAgents = maxAgents;
    // A hub older than the state bounds passes none: unbounded, as it was.
    this.maxStateBytes = context.maxStateBytes ?? Number.POSITIVE_INFINITY;
    this.maxTotalStateBytes = context.maxTotalStateBytes ?? Number.POSITIVE_INFINITY;
    this.jsonOf = context.jsonOf ?? ((update: AgentUpdate) => JSON.stringify(update));
    this.parse = context.parse ?? ((json: string) => JSON.parse(json) as AgentUpdate);
  }

  /** A new stream of `epoch` (a fresh one unless a stored stream is read back), counted. */
  newStream(agentId: string, epoch: string = newEpoch()): Stream {
    const record = STREAM_OVERHEAD + agentId.length;
    this.stateBytes += record;
    return {
      epoch,
      seq: 0,
      history: [],
      costs: [],
      head: 0,
      bytes: 0,
      state: createAgentState(),
      stateBytes: record,
    };
  }

  /** Drops the oldest history entries until `keep` are left. */
  forgetHistory(stream: Stream, keep: number): void {
    while (stream.history.length - stream.head > keep) {
      const bytes = stream.costs[stream.head] as number;
      stream.history[stream.head] = '';
      stream.head++;
      stream.bytes -= bytes;
      this.historyBytes -= bytes + ENTRY_OVERHEAD;
    }
    if (stream.head > 64 && stream.head * 2 > stream.history.length) {
      stream.history = stream.history.slice(stream.head);
      stream.costs = stream.costs.slice(stream.head);
      stream.head = 0;
    } else if (stream.head === stream.history.length && stream.head > 0) {
      stream.history = [];
      stream.costs = [];
      stream.head = 0;
    }
  }

  forgetStream(agentId: string, stream: Stream): void {
    this.forgetHistory(stream, 0);
    this.streams.delete(agentId);
    this.stateBytes -= stream.stateBytes;
  }

  /** Cuts a stream's state to its newest update. */
  shrinkToNewest(agentId: string, stream: Stream): void {
    const had = stream.state.bytes;
    if (shrinkState(stream.state, 0) > 0) reportEvicted(this.context, agentId, 'state', 1);
    stream.stateBytes -= had - stream.state.bytes;
    this.stateBytes -= had - stream.state.bytes;
  }

  /** Moves streams to the back (touched last), in their order. */
  moveToBack(moved: readonly [string, Stream][]): void {
    for (const [agentId, stream] of moved) {
      this.streams.delete(agentId);
      this.streams.set(agentId, stream);
    }
  }

  /**
   * Gets every stream's state back under the total: the streams touched least recently first,
   * `current` last. One nobody watches is forgotten whole; a watched one keeps its newest update.
   */
  boundStates(current: string): void {
    const watched: [string, Stream][] = [];
    for (const [agentId, stream] of this.streams) {
      if (this.stateBytes <= this.maxTotalStateBytes) break;
      if (agentId === current) continue;
      if (this.subscribers.has(agentId)) {
        this.shrinkToNewest(agentId, stream);
        watched.push([agentId, stream]);
      } else {
        this.forgetStream(agentId, stream);
        reportEvicted(this.context, agentId, 'state', 1);
      }
    }
    // Cut to their newest update, watched streams go behind the others: the next call gets further.
    this.moveToBack(watched);
    if (this.stateBytes <= this.maxTotalStateBytes) return;
    const stream = this.streams.get(current);
    if (stream) this.shrinkToNewest(current, stream);
  }

  /** Forgets the stream touched least recently that no client watches (none if all are). */
  forgetLeastRecent(): void {
    const watched: [string, Stream][] = [];
    for (const [oldest, gone] of this.streams) {
      if (this.subscribers.has(oldest)) {
        watched.push([oldest, gone]);
        continue;
      }
      this.forgetStream(oldest, gone);
      reportEvicted(this.context, oldest, 'state', 1);
      break;
    }
    this.moveToBack(watched);
  }

  /** The agent's stream, made if new, moved to the back (touched last). */
  streamOf(agentId: string): Stream {
    let stream = this.streams.get(agentId);
    if (stream) this.streams.delete(agentId);
    else {
      // Past maxAgents only when every stream is watched.
      if (this.streams.size >= this.maxAgents) this.forgetLeastRecent();
      stream = this.newStream(agentId);
    }
    this.streams.set(agentId, stream);
    return stream;
  }

  /** Numbers the update, records it in history and state, within every bound. */
  record(agentId: string, draft: UnsequencedUpdate): [AgentUpdate, string, number] {
    const stream = this.streamOf(agentId);
    const update = draft as AgentUpdate;
    update.seq = ++stream.seq;
    update.epoch = stream.epoch;
    const json = this.jsonOf(update);
    const held = heldBytes(json);
    this.applyState(agentId, stream, update, json, held);
    if (this.context.historySize > 0) this.keepInHistory(stream, json, held);
    return [update, json, held];
  }

  /** Moves the stream's state forward by one numbered update, within its bound and the total. */
  applyState(agentId: string, stream: Stream, update: AgentUpdate, json: string, held: number): void {
    const before = stream.state.bytes;
    // The record counts against the agent's bytes too: the state has what is left.
    const trim = applyUpdate(stream.state, update, json, this.maxStateBytes - (stream.stateBytes - before), held);
    stream.stateBytes += stream.state.bytes - before;
    this.stateBytes += stream.state.bytes - before;
    reportEvicted(this.context, agentId, 'task', trim.forgotten);
    if (trim.omitted) reportEvicted(this.context, agentId, 'result', 1);
    if (this.stateBytes > this.maxTotalStateBytes) this.boundStates(agentId);
  }

  /** Appends an update to the stream's history, then brings it and the total back in bounds. */
  keepInHistory(stream: Stream, json: string, held: number): void {
    const { historySize, maxHistoryBytes, maxTotalHistoryBytes } = this.context;
    stream.history.push(json);
    stream.costs.push(held);
    stream.bytes += held;
    this.historyBytes += held + ENTRY_OVERHEAD;
    while (stream.history.length - stream.head > historySize || stream.bytes > maxHistoryBytes) {
      this.forgetHistory(stream, stream.history.length - stream.head - 1);
    }
    for (const [otherAgent, other] of this.streams) {
      if (this.historyBytes <= maxTotalHistoryBytes) break;
      const had = other.history.length - other.head;
      this.forgetHistory(other, 0);
      if (had > 0) reportEvicted(this.context, otherAgent, 'history', 1);
    }
  }

  position(agentId: string): StreamPosition {
    // An agent never published to starts its epoch now, so a client that resumes from it
    // later finds the same epoch.
    const stream = this.streamOf(agentId);
    if (this.stateBytes > this.maxTotalStateBytes) this.boundStates(agentId);
    const status = stream.state.status as HeldUpdate | null;
    return {
      epoch: stream.epoch,
      seq: stream.seq,
      status: status ? (this.parse(status.json) as StatusUpdate) : null,
      tasks: snapshotTasks(stream.state, this.parse),
    };
  }

  /** The updates after `since` in `epoch`, or `undefined` (see `Broker.history`). */
  history(agentId: string, since: number, epoch: string): AgentUpdate[] | undefined {
    const stream = this.streams.get(agentId);
    if (!stream || stream.epoch !== epoch || since > stream.seq || since < 0) return undefined;
    const held = stream.history.length - stream.head;
    const first = stream.seq - held + 1;
    if (since + 1 < first) return undefined;
    return stream.history.slice(stream.head + (since + 1 - first)).map(this.parse);
  }

  clear(): void {
    this.streams.clear();
    this.historyBytes = 0;
    this.stateBytes = 0;
  }
}

/**
 * The in-memory broker's offline queues, and the totals they count against. One per broker.
 *
 * Queues are kept in the order they were last added to, so the queue evicted first (over
 * `maxTotalQueueBytes` or `maxQueuedAgents`) is the one that waited longest, and expiry
 * (`queueTtl`) looks only at the front. Updates join a queue only through `add`, and leave it
 * only through `trim` (from the front), `take`, `drop` and `discard` (whole): the SQLite broker
 * follows those to mirror each queue into its file. Exported for it; not part of the public API.
 *
 * @internal
 */
export class QueueBook {
  readonly queues = new Map<string, Queue>();
  /** Updates queued across all agents. */
  count = 0;
  /** What all queues hold, bookkeeping included: counted against `maxTotalQueueBytes`. */
  bytes = 0;
  readonly context: BrokerContext;
  readonly maxQueuedAgents: number;

  constructor(context: BrokerContext, maxQueuedAgents: number) {
    this.context = context;
    this.maxQueuedAgents = maxQueuedAgents;
  }

  /** Removes the agent's queue and hands back its updates, oldest first. */
  take(agentId: string, queue: Queue, parse: (json: string) => AgentUpdate): AgentUpdate[] {
    this.queues.delete(agentId);
    this.count -= lengthOf(queue);
    this.bytes -= queue.bytes + lengthOf(queue) * ENTRY_OVERHEAD + QUEUE_OVERHEAD + agentId.length;
    return queue.items.slice(queue.head).map(parse);
  }

  drop(agentId: string, queue: Queue, reason: DropReason): void {
    const count = lengthOf(queue);
    this.queues.delete(agentId);
    this.count -= count;
    this.bytes -= queue.bytes + count * ENTRY_OVERHEAD + QUEUE_OVERHEAD + agentId.length;
    if (count > 0) this.context.onDropped(agentId, count, reason);
    if (reason === 'total_bytes') reportEvicted(this.context, agentId, 'queue', 1);
  }

  /** Drops the oldest updates of one queue while it is over its limits. */
  trim(agentId: string, queue: Queue): void {
    const { maxQueueSize, maxQueueBytes } = this.context;
    let byCount = 0;
    let byBytes = 0;
    while (lengthOf(queue) > 0 && (lengthOf(queue) > maxQueueSize || queue.bytes > maxQueueBytes)) {
      if (lengthOf(queue) > maxQueueSize) byCount++;
      else byBytes++;
      const bytes = queue.costs[queue.head] as number;
      queue.items[queue.head] = '';
      queue.head++;
      queue.bytes -= bytes;
      this.count--;
      this.bytes -= bytes + ENTRY_OVERHEAD;
    }
    // Compact once the dropped prefix dominates, so trimming stays amortised O(1).
    if (queue.head > 64 && queue.head * 2 > queue.items.length) {
      queue.items = queue.items.slice(queue.head);
      queue.costs = queue.costs.slice(queue.head);
      queue.head = 0;
    }
    if (byCount > 0) this.context.onDropped(agentId, byCount, 'count');
    if (byBytes > 0) this.context.onDropped(agentId, byBytes, 'bytes');
  }

  expire(now: number): void {
    const { queueTtl } = this.context;
    if (queueTtl === 0) return;
    for (const [agentId, queue] of this.queues) {
      if (queue.touchedAt + queueTtl > now) break;
      this.drop(agentId, queue, 'expired');
    }
  }

  /** The agent's queue, made if new, moved to the back (added to last). */
  queueOf(agentId: string, now: number): Queue {
    let queue = this.queues.get(agentId);
    if (queue) this.queues.delete(agentId);
    else {
      if (this.queues.size >= this.maxQueuedAgents) {
        const [oldestAgent, oldestQueue] = this.queues.entries().next().value as [string, Queue];
        this.drop(oldestAgent, oldestQueue, 'agents');
      }
      queue = { items: [], costs: [], head: 0, bytes: 0, touchedAt: now };
      this.bytes += QUEUE_OVERHEAD + agentId.length;
    }
    // Re-inserted: the map's order is the order queues were last added to.
    this.queues.set(agentId, queue);
    queue.touchedAt = now;
    return queue;
  }

  /**
   * Queues updates as their JSON and what each counts (`held`: `heldBytes` of it); `now` is
   * `Date.now()` unless a stored queue is read back with the time it was last added to.
   */
  enqueue(agentId: string, items: readonly string[], held: readonly number[], front: boolean, now = Date.now()): void {
    this.expire(now);
    const queue = this.queueOf(agentId, now);
    this.add(agentId, queue, items, held, front);
    this.trim(agentId, queue);
    this.boundTotal(agentId, queue);
  }

  /** Puts updates at the front or the back of a queue, and counts them. */
  add(_agentId: string, queue: Queue, items: readonly string[], held: readonly number[], front: boolean): void {
    const added = held.reduce((sum, bytes) => sum + bytes, 0);
    if (front) {
      queue.items = [...items, ...queue.items.slice(queue.head)];
      queue.costs = [...held, ...queue.costs.slice(queue.head)];
      queue.head = 0;
    } else {
      queue.items.push(...items);
      queue.costs.push(...held);
    }
    queue.bytes += added;
    this.count += items.length;
    this.bytes += added + items.length * ENTRY_OVERHEAD;
  }

  /** Over the total: whole queues go, the one that waited longest first (`current` last). */
  boundTotal(agentId: string, current: Queue): void {
    const { maxTotalQueueBytes } = this.context;
    for (const [otherAgent, other] of this.queues) {
      if (this.bytes <= maxTotalQueueBytes) break;
      if (other !== current) this.drop(otherAgent, other, 'total_bytes');
    }
    if (this.bytes > maxTotalQueueBytes) this.drop(agentId, current, 'total_bytes');
    else if (lengthOf(current) === 0) this.discard(agentId);
  }

  /** Removes a queue left empty (its updates were trimmed away, each reported). */
  discard(agentId: string): void {
    this.queues.delete(agentId);
    this.bytes -= QUEUE_OVERHEAD + agentId.length;
  }

  clear(): void {
    this.queues.clear();
    this.count = 0;
    this.bytes = 0;
  }
}

/**
 * One page of the in-memory broker's `listAgents` (and the SQLite broker's, from the same books).
 *
 * @param after List agents whose id sorts after this one.
 * @param limit Most agents.
 * @param maxTasks Most open tasks per agent.
 *
 * @returns The page.
 *
 * @internal
 */
export function listPage(
  streams: StreamBook,
  queues: QueueBook,
  after: string | undefined,
  limit: number,
  maxTasks: number,
): AgentPage {
  const { parse } = streams;
  // Sorting every id costs O(n log n) per page; n is bounded by maxAgents (10000 by default).
  const ids = [...streams.streams.keys()].filter((id) => after === undefined || id > after).sort();
  const page = ids.slice(0, limit);
  const agents = page.map((agentId): AgentListing => {
    const stream = streams.streams.get(agentId) as Stream;
    const open = [...stream.state.open.values()];
    const queue = queues.queues.get(agentId);
    const status = stream.state.status;
    return {
      agent_id: agentId,
      epoch: stream.epoch,
      seq: stream.seq,
      status: status ? (parse(status.json) as StatusUpdate) : null,
      open_tasks:
        maxTasks > 0
          ? open
              .slice(-maxTasks)
              .reverse()
              .map((held) => parse(held.json) as TaskUpdate)
          : [],
      open_tasks_total: open.length,
      queued: queue ? lengthOf(queue) : 0,
    };
  });
  return { agents, next: ids.length > limit ? (page.at(-1) ?? null) : null };
}

/**
 * Creates the in-memory broker: one process, no dependencies. The default of `createAgentHub`.
 *
 * Queues are kept in the order they were last added to, so the queue evicted first (over
 * `maxTotalQueueBytes` or `maxQueuedAgents`) is the one that waited longest, and expiry
 * (`queueTtl`) looks only at the front. Expired queues go when the broker is next used. Streams
 * are kept in the order they were last published to or watched: over `maxTotalHistoryBytes`,
 * `maxTotalStateBytes` or `maxAgents`, the front goes first.
 *
 * Every update is kept as its wire JSON, one string shared by the queue, the history and the
 * state (a parsed update can take many times its JSON in memory), and every byte limit counts
 * that string as the process holds it (`heldBytes`) plus the bookkeeping around it, so the limits
 * bound the heap, not only the JSON.
 *
 * @param options The broker options.
 *
 * @returns A broker factory.
 */
export function memoryBroker(options: MemoryBrokerOptions = {}): BrokerFactory {
  const maxQueuedAgents = options.maxQueuedAgents ?? 10_000;
  const maxAgents = options.maxAgents ?? 10_000;
  return (context) => {
    const subscribers = new Map<string, (update: AgentUpdate) => void>();
    const streams = new StreamBook(context, subscribers, maxAgents);
    const queues = new QueueBook(context, maxQueuedAgents);
    const { jsonOf, parse } = streams;
    return {
      subscribe(agentId, onUpdate) {
        subscribers.set(agentId, onUpdate);
        queues.expire(Date.now());
        const queue = queues.queues.get(agentId);
        return { ...streams.position(agentId), queue: queue ? queues.take(agentId, queue, parse) : [] };
      },
      history(agentId, since, epoch) {
        return streams.history(agentId, since, epoch);
      },
      unsubscribe(agentId, undelivered) {
        subscribers.delete(agentId);
        if (undelivered.length === 0) return NOTHING_QUEUED;
        const items = undelivered.map(jsonOf);
        queues.enqueue(agentId, items, items.map(heldBytes), true);
        return { queued: undelivered.length };
      },
      publish(agentId, draft) {
        const [update, json, held] = streams.record(agentId, draft);
        const deliver = subscribers.get(agentId);
        if (deliver) {
          deliver(update);
          return NOT_QUEUED;
        }
        queues.enqueue(agentId, [json], [held], false);
        return QUEUED;
      },
      queuedCount() {
        queues.expire(Date.now());
        return queues.count;
      },
      listAgents(after, limit, maxTasks) {
        queues.expire(Date.now());
        return listPage(streams, queues, after, limit, maxTasks);
      },
      close() {
        subscribers.clear();
        queues.clear();
        streams.clear();
      },
    };
  };
}
