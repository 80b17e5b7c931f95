import { type AgentState, applyUpdate, createAgentState, snapshotTasks } from './agent-state.ts';
import type { AgentUpdate, StatusUpdate, TaskUpdate, UnsequencedUpdate } from './schemas.ts';
import type { HubStats } from './stats.ts';

/** A value, or a promise of it: in-memory brokers answer synchronously, networked ones do not. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * What the hub tells a broker when it starts it.
 */
export interface BrokerContext {
  /** Most updates kept per agent while no instance has a connection for it. */
  readonly maxQueueSize: number;
  /**
   * Most bytes (the updates' JSON, UTF-8) kept per agent's queue; the oldest updates are dropped
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
   * Most bytes of history all agents together may hold (per process in memory; a networked
   * broker may bound it by other means). Over it, the history of the agents published to least
   * recently goes first; their `seq` and `epoch` stay, only older resumes fail.
   */
  readonly maxTotalHistoryBytes: number;
  /**
   * Most bytes (its updates' JSON) of each agent's snapshot state: its latest status and the
   * latest update of each task it holds. Optional: a broker reads it with a default of its own
   * when a hub passes none.
   */
  readonly maxStateBytes?: number;
  /** Most bytes of snapshot state all agents together may hold; optional as `maxStateBytes`. */
  readonly maxTotalStateBytes?: number;
  /**
   * The JSON the hub serialised an update to at the door, before it was numbered: a networked
   * broker appends `seq` and `epoch` to it instead of serialising the update again.
   */
  readonly bodyOf?: (update: UnsequencedUpdate) => string;
  /** The byte size the limits above count for an update: its JSON, UTF-8. */
  readonly sizeOf: (update: AgentUpdate) => number;
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
   * to least recently is forgotten, and gets a new epoch if it comes back. Default 10000.
   */
  maxAgents?: number;
}

/**
 * One agent's stream: its numbering, history and state.
 *
 * @internal
 */
interface Stream {
  readonly epoch: string;
  seq: number;
  history: AgentUpdate[];
  sizes: number[];
  head: number;
  bytes: number;
  readonly state: AgentState;
}

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
 * One agent's offline queue: oldest first, with its byte size.
 *
 * @internal
 */
interface Queue {
  items: AgentUpdate[];
  sizes: number[];
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

/**
 * Creates the in-memory broker: one process, no dependencies. The default of `createAgentHub`.
 *
 * Queues are kept in the order they were last added to, so the queue evicted first (over
 * `maxTotalQueueBytes` or `maxQueuedAgents`) is the one that waited longest, and expiry
 * (`queueTtl`) looks only at the front. Expired queues go when the broker is next used.
 *
 * @param options The broker options.
 *
 * @returns A broker factory.
 */
export function memoryBroker(options: MemoryBrokerOptions = {}): BrokerFactory {
  const maxQueuedAgents = options.maxQueuedAgents ?? 10_000;
  const maxAgents = options.maxAgents ?? 10_000;
  return (context) => {
    const { maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl, sizeOf, onDropped } = context;
    const { historySize, maxHistoryBytes, maxTotalHistoryBytes } = context;
    const subscribers = new Map<string, (update: AgentUpdate) => void>();
    const queues = new Map<string, Queue>();
    let queued = 0;
    let queuedBytes = 0;
    // In the order agents were last published to: the front is evicted first.
    const streams = new Map<string, Stream>();
    let historyBytes = 0;

    const newStream = (): Stream => ({
      epoch: newEpoch(),
      seq: 0,
      history: [],
      sizes: [],
      head: 0,
      bytes: 0,
      state: createAgentState(),
    });

    const forgetHistory = (stream: Stream, keep: number) => {
      while (stream.history.length - stream.head > keep) {
        const bytes = stream.sizes[stream.head] as number;
        stream.history[stream.head] = undefined as unknown as AgentUpdate;
        stream.head++;
        stream.bytes -= bytes;
        historyBytes -= bytes;
      }
      if (stream.head > 64 && stream.head * 2 > stream.history.length) {
        stream.history = stream.history.slice(stream.head);
        stream.sizes = stream.sizes.slice(stream.head);
        stream.head = 0;
      }
    };

    /** Numbers the update, records it in history and state, within every bound. */
    const record = (agentId: string, draft: UnsequencedUpdate): AgentUpdate => {
      let stream = streams.get(agentId);
      if (stream) streams.delete(agentId);
      else {
        stream = newStream();
        if (streams.size >= maxAgents) {
          const [oldest, evicted] = streams.entries().next().value as [string, Stream];
          forgetHistory(evicted, 0);
          streams.delete(oldest);
        }
      }
      streams.set(agentId, stream);
      const update = draft as AgentUpdate;
      update.seq = ++stream.seq;
      update.epoch = stream.epoch;
      applyUpdate(stream.state, update);
      if (historySize > 0) {
        const bytes = sizeOf(update);
        stream.history.push(update);
        stream.sizes.push(bytes);
        stream.bytes += bytes;
        historyBytes += bytes;
        while (stream.history.length - stream.head > historySize || stream.bytes > maxHistoryBytes) {
          forgetHistory(stream, stream.history.length - stream.head - 1);
        }
        for (const other of streams.values()) {
          if (historyBytes <= maxTotalHistoryBytes) break;
          forgetHistory(other, 0);
        }
      }
      return update;
    };

    const position = (agentId: string): StreamPosition => {
      let stream = streams.get(agentId);
      if (!stream) {
        // An agent never published to starts its epoch now, so a client that resumes from it
        // later finds the same epoch.
        stream = newStream();
        streams.set(agentId, stream);
      }
      return { epoch: stream.epoch, seq: stream.seq, status: stream.state.status, tasks: snapshotTasks(stream.state) };
    };

    const size = (queue: Queue) => queue.items.length - queue.head;

    const remove = (agentId: string, queue: Queue): AgentUpdate[] => {
      queues.delete(agentId);
      queued -= size(queue);
      queuedBytes -= queue.bytes;
      return queue.items.slice(queue.head);
    };

    const dropQueue = (agentId: string, queue: Queue, reason: DropReason) => {
      const count = size(queue);
      remove(agentId, queue);
      if (count > 0) onDropped(agentId, count, reason);
    };

    /** Drops the oldest updates of one queue while it is over its limits. */
    const trim = (agentId: string, queue: Queue) => {
      let byCount = 0;
      let byBytes = 0;
      while (size(queue) > 0 && (size(queue) > maxQueueSize || queue.bytes > maxQueueBytes)) {
        if (size(queue) > maxQueueSize) byCount++;
        else byBytes++;
        const bytes = queue.sizes[queue.head] as number;
        queue.head++;
        queue.bytes -= bytes;
        queued--;
        queuedBytes -= bytes;
      }
      // Compact once the dropped prefix dominates, so trimming stays amortised O(1).
      if (queue.head > 64 && queue.head * 2 > queue.items.length) {
        queue.items = queue.items.slice(queue.head);
        queue.sizes = queue.sizes.slice(queue.head);
        queue.head = 0;
      }
      if (byCount > 0) onDropped(agentId, byCount, 'count');
      if (byBytes > 0) onDropped(agentId, byBytes, 'bytes');
    };

    const expire = (now: number) => {
      if (queueTtl === 0) return;
      for (const [agentId, queue] of queues) {
        if (queue.touchedAt + queueTtl > now) break;
        dropQueue(agentId, queue, 'expired');
      }
    };

    const enqueue = (agentId: string, updates: readonly AgentUpdate[], front: boolean): void => {
      const now = Date.now();
      expire(now);
      let queue = queues.get(agentId);
      if (queue) queues.delete(agentId);
      else {
        if (queues.size >= maxQueuedAgents) {
          const [oldestAgent, oldestQueue] = queues.entries().next().value as [string, Queue];
          dropQueue(oldestAgent, oldestQueue, 'agents');
        }
        queue = { items: [], sizes: [], head: 0, bytes: 0, touchedAt: now };
      }
      // Re-inserted: the map's order is the order queues were last added to.
      queues.set(agentId, queue);
      queue.touchedAt = now;
      const sizes = updates.map(sizeOf);
      const added = sizes.reduce((sum, bytes) => sum + bytes, 0);
      if (front) {
        queue.items = [...updates, ...queue.items.slice(queue.head)];
        queue.sizes = [...sizes, ...queue.sizes.slice(queue.head)];
        queue.head = 0;
      } else {
        queue.items.push(...updates);
        queue.sizes.push(...sizes);
      }
      queue.bytes += added;
      queued += updates.length;
      queuedBytes += added;
      trim(agentId, queue);
      // Over the total: whole queues go, the one that waited longest first (this one last).
      for (const [otherAgent, other] of queues) {
        if (queuedBytes <= maxTotalQueueBytes) break;
        if (other !== queue) dropQueue(otherAgent, other, 'total_bytes');
      }
      if (queuedBytes > maxTotalQueueBytes) dropQueue(agentId, queue, 'total_bytes');
      else if (size(queue) === 0) remove(agentId, queue);
    };

    return {
      subscribe(agentId, onUpdate) {
        subscribers.set(agentId, onUpdate);
        expire(Date.now());
        const queue = queues.get(agentId);
        return { ...position(agentId), queue: queue ? remove(agentId, queue) : [] };
      },
      history(agentId, since, epoch) {
        const stream = streams.get(agentId);
        if (!stream || stream.epoch !== epoch || since > stream.seq || since < 0) return undefined;
        const held = stream.history.length - stream.head;
        const first = stream.seq - held + 1;
        if (since + 1 < first) return undefined;
        return stream.history.slice(stream.head + (since + 1 - first));
      },
      unsubscribe(agentId, undelivered) {
        subscribers.delete(agentId);
        if (undelivered.length === 0) return NOTHING_QUEUED;
        enqueue(agentId, undelivered, true);
        return { queued: undelivered.length };
      },
      publish(agentId, draft) {
        const update = record(agentId, draft);
        const deliver = subscribers.get(agentId);
        if (deliver) {
          deliver(update);
          return NOT_QUEUED;
        }
        enqueue(agentId, [update], false);
        return QUEUED;
      },
      queuedCount() {
        expire(Date.now());
        return queued;
      },
      listAgents(after, limit, maxTasks) {
        expire(Date.now());
        // Sorting every id costs O(n log n) per page; n is bounded by maxAgents (10000 by default).
        const ids = [...streams.keys()].filter((id) => after === undefined || id > after).sort();
        const page = ids.slice(0, limit);
        const agents = page.map((agentId): AgentListing => {
          const stream = streams.get(agentId) as Stream;
          const open = [...stream.state.open.values()];
          const queue = queues.get(agentId);
          return {
            agent_id: agentId,
            epoch: stream.epoch,
            seq: stream.seq,
            status: stream.state.status,
            open_tasks: maxTasks > 0 ? open.slice(-maxTasks).reverse() : [],
            open_tasks_total: open.length,
            queued: queue ? size(queue) : 0,
          };
        });
        return { agents, next: ids.length > limit ? (page.at(-1) ?? null) : null };
      },
      close() {
        subscribers.clear();
        queues.clear();
        streams.clear();
        queued = 0;
        queuedBytes = 0;
        historyBytes = 0;
      },
    };
  };
}
