/**
 * What the Worker and the agents' objects share: the structural Workers types (only what is
 * used, so the package needs no `@cloudflare/workers-types` to type-check), the header and origin
 * of the object's own routes, and the checks both sides run.
 *
 * @module
 */
import * as v from 'valibot';
import type { DropReason } from '../../plugin/broker.ts';
import type { ErrorKind } from '../../plugin/error-kinds.ts';
import type { EvictionKind } from '../../plugin/figures.ts';
import type { Histogram } from '../../plugin/metrics.ts';
import { EpochSchema, type StatusUpdate, type TaskUpdate } from '../../plugin/schemas.ts';

/** A server-side socket of workerd, as the hibernation API hands it back. */
export interface WorkersWebSocket {
  send(message: string): void;
  close(code?: number, reason?: string): void;
  serializeAttachment(value: unknown): void;
  deserializeAttachment(): unknown;
  readonly readyState: number;
}

/** The SQL cursor of `ctx.storage.sql.exec`: iterating it reads the rows one by one, as needed. */
export interface SqlCursor extends Iterable<Record<string, unknown>> {
  toArray(): Record<string, unknown>[];
}

/** What the object uses of `DurableObjectState` (`this.ctx`). */
export interface AgentObjectState {
  acceptWebSocket(socket: WorkersWebSocket, tags?: string[]): void;
  getWebSockets(tag?: string): WorkersWebSocket[];
  readonly storage: {
    readonly sql: { exec(query: string, ...bindings: unknown[]): SqlCursor };
    transactionSync<T>(body: () => T): T;
    getAlarm(): Promise<number | null>;
    setAlarm(time: number): Promise<void>;
    deleteAlarm(): Promise<void>;
  };
}

/** What the Worker uses of a Durable Object namespace binding. */
export interface AgentObjectNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

/** The header the Worker names the agent in when it forwards a request to its object. */
export const AGENT_HEADER = 'X-Agent-WS-Agent';

/** The paths of the object's own routes (never reachable from outside: the Worker builds them). */
export const OBJECT_ORIGIN = 'https://agent-ws.object';

/** The agent-id pattern of `AgentIdSchema`, to skip valibot on the common path. */
export const AGENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Where a client asks to resume: the last `seq` it has, in `epoch`. */
export interface ResumePoint {
  readonly since: number;
  readonly epoch: string;
}

/**
 * The resume point of `?since=<seq>&epoch=<epoch>`, read as the hub's routes read it:
 * `undefined` without `since`, `null` when malformed (both are needed, `since` a whole number).
 */
export const resumePointOf = (query: URLSearchParams): ResumePoint | null | undefined => {
  const since = query.get('since');
  if (since === null) return undefined;
  const epoch = query.get('epoch') ?? '';
  if (!/^\d{1,15}$/.test(since) || !v.is(EpochSchema, epoch)) return null;
  return { since: Number(since), epoch };
};

/** `value`, checked to be a whole number, 0 or more; `name` is the option it is. */
export const wholeNumber = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, 0 or more`);
  return value;
};

/** Why an object dropped queued updates: over `maxQueueSize`, over `maxQueueBytes`, past `queueTtl`. */
export type ObjectDropReason = Extract<DropReason, 'count' | 'bytes' | 'expired'>;

/**
 * One agent's figures, as its object keeps them (`GET /figures` of the object): each counter
 * named as the matching field of the hub's stats (`HubStats`, plugin/figures.ts), so that the
 * sum over the objects is the stats of the Worker, plus what the agents listing shows of the
 * agent (`AgentSummary`). Counters count since the object was first created: they are kept in
 * its storage and survive evictions.
 */
export interface ObjectFigures {
  /** The agent. */
  readonly agent_id: string;
  /** Its stream's epoch. */
  readonly epoch: string;
  /** The last `seq` given out. */
  readonly seq: number;
  /** The latest status update, as the snapshot holds it, or null. */
  readonly status: StatusUpdate | null;
  /** The latest update of each open task, most recently updated first, at most `AGENT_TASKS_MAX`. */
  readonly open_tasks: TaskUpdate[];
  /** Open tasks the snapshot state holds. */
  readonly open_tasks_total: number;
  /** When the last update was published (ISO), or null if none ever was. */
  readonly last_update_at: string | null;
  /** Connections accepted. */
  readonly total_connections: number;
  /** Connections open now (an agent's watchers). */
  readonly active_connections: number;
  /** Frames written to sockets, one per socket. */
  readonly messages_sent: number;
  /** Frames received from clients. */
  readonly messages_received: number;
  /** Updates accepted (`/publish`). */
  readonly updates_published: number;
  /** `batch_update` frames built (once, however many sockets get it). */
  readonly batches_sent: number;
  /** Updates put in the offline queue. */
  readonly messages_queued: number;
  /** Updates in the offline queue now. */
  readonly queued_messages: number;
  /** Bytes of the offline queue now (the updates' JSON, UTF-8). */
  readonly queued_bytes: number;
  /** Queued updates dropped, the sum of `dropped_by_reason`. */
  readonly messages_dropped: number;
  /** Queued updates dropped, by why. */
  readonly dropped_by_reason: Record<ObjectDropReason, number>;
  /** Errors by kind, as the hub's `errors_by_kind` (kinds the Worker counts stay 0 here). */
  readonly errors_by_kind: Record<ErrorKind, number>;
  /** Data given up to stay within the byte limits, as the hub's `evictions_by_kind`. */
  readonly evictions_by_kind: Record<EvictionKind, number>;
  /** Updates in the history now. */
  readonly history_updates: number;
  /** Bytes of the history now (the updates' JSON, UTF-8). */
  readonly history_bytes: number;
  /** Bytes of the snapshot state now (as `maxStateBytes` counts them). */
  readonly state_bytes: number;
  /** Times the object was constructed: the first start and each wake after an eviction. */
  readonly wakes: number;
  /** Alarms run (window flushes, heartbeat sweeps, queue expiry, reports). */
  readonly alarms: number;
  /** Updates per `batch_update` built (window, resume and queue), the hub's `batch_size` buckets. */
  readonly batch_size: Histogram;
  /**
   * Seconds from an update accepted to the live frame carrying it written to the sockets (once
   * per frame, from its oldest update), the hub's `send_delay` buckets.
   */
  readonly send_delay: Histogram;
}
