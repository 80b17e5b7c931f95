import type { AgentUpdate } from './schemas.ts';
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
   * @param onUpdate Called with every update published for the agent from now on, in order.
   *
   * @returns The queued updates, oldest first; they are removed from the queue.
   */
  subscribe(agentId: string, onUpdate: (update: AgentUpdate) => void): MaybePromise<AgentUpdate[]>;
  /**
   * Stops delivering `agentId`'s updates to this instance.
   *
   * @param agentId The agent.
   * @param undelivered Updates this instance accepted but could not send before its last
   *   connection closed; they go to the front of the queue if no instance has a connection.
   *
   * @returns How many of them were queued (the hub counts them in `messages_queued`).
   */
  unsubscribe(agentId: string, undelivered: readonly AgentUpdate[]): MaybePromise<UnsubscribeReceipt | void>;
  /**
   * Delivers an update to every instance subscribed to its agent, or queues it if none is.
   *
   * @param agentId The agent.
   * @param update The complete message.
   *
   * @returns Whether it was queued (overflow is reported through `BrokerContext.onDropped`).
   */
  publish(agentId: string, update: AgentUpdate): MaybePromise<PublishReceipt>;
  /** Number of updates queued across all agents, when the broker can tell cheaply. */
  queuedCount?(): number;
  /**
   * Cluster-wide figures, for a broker shared by several instances; the stats route awaits it
   * and serves the result as `cluster`. Absent on single-process brokers.
   */
  clusterStats?(): Promise<ClusterStats>;
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
  return ({ maxQueueSize, maxQueueBytes, maxTotalQueueBytes, queueTtl, sizeOf, onDropped }) => {
    const subscribers = new Map<string, (update: AgentUpdate) => void>();
    const queues = new Map<string, Queue>();
    let queued = 0;
    let queuedBytes = 0;

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
        return queue ? remove(agentId, queue) : [];
      },
      unsubscribe(agentId, undelivered) {
        subscribers.delete(agentId);
        if (undelivered.length === 0) return NOTHING_QUEUED;
        enqueue(agentId, undelivered, true);
        return { queued: undelivered.length };
      },
      publish(agentId, update) {
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
      close() {
        subscribers.clear();
        queues.clear();
        queued = 0;
        queuedBytes = 0;
      },
    };
  };
}
