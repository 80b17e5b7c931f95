import type { LogEntry } from './logger.ts';

/** Keys tracked at once; past this, new keys share one summary line, so a key spray costs nothing. */
const MAX_KEYS = 1000;

/** Key (with the event after it) under which events beyond `MAX_KEYS` are summed. */
const OVERFLOW_KEY = '*';

interface Pending {
  readonly level: LogEntry['level'];
  readonly event: LogEntry['event'];
  details: Omit<LogEntry, 'level' | 'event' | 'time'>;
  /** Amount noted since the last line for this key. */
  count: number;
  /** When the last line for this key was written. */
  since: number;
}

/**
 * Writes a repeated warning at most once per key per interval: the first at once, the rest as
 * one line per interval with `count`, the amount since the previous line (frames, updates).
 *
 * @internal
 */
export interface LogThrottle {
  /** Notes `amount` occurrences of an event under `key`. */
  note(
    key: string,
    level: LogEntry['level'],
    event: LogEntry['event'],
    details: Omit<LogEntry, 'level' | 'event' | 'time'>,
    amount?: number,
  ): void;
  /** Writes what is pending and stops the timer. */
  close(): void;
}

/**
 * Creates a log throttle with one timer, running only while something is pending.
 *
 * @param interval Milliseconds between two lines of the same key.
 * @param write Writes one entry.
 *
 * @internal
 */
export function createLogThrottle(
  interval: number,
  write: (
    level: LogEntry['level'],
    event: LogEntry['event'],
    details: Omit<LogEntry, 'level' | 'event' | 'time'>,
  ) => void,
): LogThrottle {
  const pending = new Map<string, Pending>();
  let timer: ReturnType<typeof setInterval> | undefined;

  const flush = (all: boolean) => {
    const now = Date.now();
    for (const [key, entry] of pending) {
      if (!all && entry.since + interval > now) continue;
      if (entry.count > 0) write(entry.level, entry.event, { ...entry.details, count: entry.count });
      if (entry.count === 0 || all) pending.delete(key);
      else {
        entry.count = 0;
        entry.since = now;
      }
    }
    if (pending.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    note(key, level, event, details, amount = 1) {
      const overflow = !pending.has(key) && pending.size >= MAX_KEYS;
      // One overflow line per event, so every count stays with its event.
      const slot = overflow ? `${OVERFLOW_KEY}${event}` : key;
      const entry = pending.get(slot);
      if (entry) {
        entry.count += amount;
        if (!overflow) entry.details = details;
        return;
      }
      pending.set(slot, {
        level,
        event,
        details: overflow ? { key: OVERFLOW_KEY } : details,
        count: 0,
        since: Date.now(),
      });
      write(level, event, { ...(overflow ? { key: OVERFLOW_KEY } : details), count: amount });
      timer ??= setInterval(() => flush(false), interval);
    },
    close() {
      flush(true);
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
