/**
 * What one agent's object counts: the hub's counters (named as in `HubStats`), what its
 * storage holds (queue, history) and when its alarm's duties are due (sweep, report), kept as one JSON row of the object's SQLite storage so that
 * they survive evictions and are written once per event, not once per counter.
 *
 * @module
 */
import { createEvictionCounters, type EvictionKind } from '../../plugin/figures.ts';
import { BATCH_SIZE_BUCKETS, createHistogram, type Histogram, SEND_DELAY_BUCKETS } from '../../plugin/metrics.ts';
import { createErrorCounters, type ErrorKind } from '../../plugin/stats.ts';
import type { ObjectDropReason } from './shared.ts';

/** The counters of `ObjectFigures` that only grow. */
export interface Counters {
  total_connections: number;
  messages_sent: number;
  messages_received: number;
  updates_published: number;
  batches_sent: number;
  messages_queued: number;
  alarms: number;
}

/**
 * Everything an object counts: its counters, and the size of what its tables hold (so a bound
 * is checked without reading the rows).
 */
export interface Tally {
  /** The counters that only grow, named as in `ObjectFigures`. */
  readonly counters: Counters;
  /** Queued updates dropped, by why (`dropped_by_reason`). */
  readonly dropped: Record<ObjectDropReason, number>;
  /** Errors by kind (`errors_by_kind`). */
  readonly errors: Record<ErrorKind, number>;
  /** Data given up to stay within the byte limits (`evictions_by_kind`). */
  readonly evictions: Record<EvictionKind, number>;
  /** The offline queue: updates, their bytes, and `Date.now()` of its newest (`queueTtl` counts from it). */
  readonly queue: { count: number; bytes: number; touchedAt: number };
  /** The history: updates and their bytes. */
  readonly history: { count: number; bytes: number };
  /** Updates per `batch_update` built, with the hub's buckets (`batch_size` of `ObjectFigures`). */
  readonly batchSize: Histogram;
  /** Seconds from an update accepted to the live frame carrying it written, with the hub's buckets. */
  readonly sendDelay: Histogram;
  /** When the last update was published (ISO), or null. */
  lastUpdateAt: string | null;
  /** `Date.now()` when the next heartbeat sweep is due; 0 for none (no socket, or no heartbeat). */
  sweepAt: number;
  /** `Date.now()` when `onFigures` asked to be called again; 0 for none. */
  reportAt: number;
}

/**
 * A zeroed tally.
 *
 * @returns Every counter 0, nothing held.
 */
export const createTally = (): Tally => ({
  counters: {
    total_connections: 0,
    messages_sent: 0,
    messages_received: 0,
    updates_published: 0,
    batches_sent: 0,
    messages_queued: 0,
    alarms: 0,
  },
  dropped: { count: 0, bytes: 0, expired: 0 },
  errors: createErrorCounters(),
  evictions: createEvictionCounters(),
  queue: { count: 0, bytes: 0, touchedAt: 0 },
  history: { count: 0, bytes: 0 },
  batchSize: createHistogram(BATCH_SIZE_BUCKETS),
  sendDelay: createHistogram(SEND_DELAY_BUCKETS),
  lastUpdateAt: null,
  sweepAt: 0,
  reportAt: 0,
});

/**
 * A tally read back from its row: every field the current version knows, from a zeroed tally
 * where the row has none (a row written by an older version), so a counter added later starts at 0.
 *
 * @param json The row's JSON, or `undefined` for a new object.
 *
 * @returns The tally.
 */
export function readTally(json: string | undefined): Tally {
  const tally = createTally();
  if (json === undefined) return tally;
  const stored = JSON.parse(json) as Partial<Record<keyof Tally, unknown>>;
  for (const key of ['counters', 'dropped', 'errors', 'evictions', 'queue', 'history'] as const) {
    const part = stored[key];
    if (typeof part !== 'object' || part === null) continue;
    const target = tally[key] as Record<string, number>;
    for (const name of Object.keys(target)) {
      const value = (part as Record<string, unknown>)[name];
      if (typeof value === 'number' && Number.isFinite(value)) target[name] = value;
    }
  }
  for (const key of ['batchSize', 'sendDelay'] as const) readHistogram(tally[key], stored[key]);
  if (typeof stored.lastUpdateAt === 'string') tally.lastUpdateAt = stored.lastUpdateAt;
  for (const key of ['sweepAt', 'reportAt'] as const) {
    const value = stored[key];
    if (typeof value === 'number' && Number.isFinite(value)) tally[key] = value;
  }
  return tally;
}

/** Copies a stored histogram into `into` when it has the same buckets (else it starts again at 0). */
const readHistogram = (into: Histogram, stored: unknown): void => {
  const histogram = stored as Partial<Histogram> | null | undefined;
  if (!histogram || !Array.isArray(histogram.counts) || histogram.counts.length !== into.counts.length) return;
  if (!histogram.counts.every((count) => Number.isInteger(count) && count >= 0)) return;
  if (typeof histogram.sum !== 'number' || !Number.isFinite(histogram.sum)) return;
  if (typeof histogram.count !== 'number' || !Number.isInteger(histogram.count)) return;
  histogram.counts.forEach((count, i) => {
    into.counts[i] = count;
  });
  into.sum = histogram.sum;
  into.count = histogram.count;
};

/**
 * The sum of a tally's counts by kind.
 *
 * @param counts One count per kind.
 *
 * @returns Their sum.
 */
export const sumOf = (counts: Readonly<Record<string, number>>): number =>
  Object.values(counts).reduce((sum, count) => sum + count, 0);
