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
  /** Reports updates the broker dropped from a full queue, so the hub counts and logs them. */
  readonly onDropped: (agentId: string, count: number) => void;
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
   */
  unsubscribe(agentId: string, undelivered: readonly AgentUpdate[]): MaybePromise<void>;
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
 * A bounded FIFO that drops its oldest items when full.
 *
 * @internal
 */
class BoundedQueue<T> {
  #items: T[] = [];
  #head = 0;

  constructor(readonly limit: number) {}

  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Appends items, returns how many old ones were dropped. */
  push(items: readonly T[]): number {
    for (const item of items) this.#items.push(item);
    const overflow = Math.max(0, this.size - this.limit);
    this.#head += overflow;
    // Compact once the dropped prefix dominates, so shifting stays amortised O(1).
    if (this.#head > 64 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return overflow;
  }

  /** Prepends items (they are older than what is queued), returns how many were dropped. */
  unshift(items: readonly T[]): number {
    const all = [...items, ...this.#items.slice(this.#head)];
    const overflow = Math.max(0, all.length - this.limit);
    this.#items = all.slice(overflow);
    this.#head = 0;
    return overflow;
  }

  /** Removes and returns everything, oldest first. */
  take(): T[] {
    const items = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return items;
  }
}

/** Shared receipts: publishing allocates nothing on the hot path. */
const NOT_QUEUED: PublishReceipt = Object.freeze({ queued: false });
const QUEUED: PublishReceipt = Object.freeze({ queued: true });

/**
 * Creates the in-memory broker: one process, no dependencies. The default of `createAgentHub`.
 *
 * @param options The broker options.
 *
 * @returns A broker factory.
 */
export function memoryBroker(options: MemoryBrokerOptions = {}): BrokerFactory {
  const maxQueuedAgents = options.maxQueuedAgents ?? 10_000;
  return ({ maxQueueSize, onDropped }) => {
    const subscribers = new Map<string, (update: AgentUpdate) => void>();
    // Insertion order is creation order, which is what eviction needs.
    const queues = new Map<string, BoundedQueue<AgentUpdate>>();
    let queued = 0;

    const enqueue = (agentId: string, updates: readonly AgentUpdate[], front: boolean): void => {
      let queue = queues.get(agentId);
      if (!queue) {
        if (queues.size >= maxQueuedAgents) {
          const [oldestAgent, oldestQueue] = queues.entries().next().value as [string, BoundedQueue<AgentUpdate>];
          queues.delete(oldestAgent);
          queued -= oldestQueue.size;
          onDropped(oldestAgent, oldestQueue.size);
        }
        queue = new BoundedQueue(maxQueueSize);
        queues.set(agentId, queue);
      }
      const before = queue.size;
      const dropped = front ? queue.unshift(updates) : queue.push(updates);
      queued += queue.size - before;
      if (dropped > 0) onDropped(agentId, dropped);
    };

    return {
      subscribe(agentId, onUpdate) {
        subscribers.set(agentId, onUpdate);
        const queue = queues.get(agentId);
        if (!queue) return [];
        queues.delete(agentId);
        queued -= queue.size;
        return queue.take();
      },
      unsubscribe(agentId, undelivered) {
        subscribers.delete(agentId);
        if (undelivered.length > 0) enqueue(agentId, undelivered, true);
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
      queuedCount: () => queued,
      close() {
        subscribers.clear();
        queues.clear();
        queued = 0;
      },
    };
  };
}
