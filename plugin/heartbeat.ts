import type { Connection } from './channel.ts';
import { CloseCode } from './close-codes.ts';
import type { HubCore } from './core.ts';
import type { Departure } from './departure.ts';
import type { FanOut } from './fanout.ts';

/**
 * The heartbeat of one hub: one sweep timer pings every established connection and drops those
 * that did not answer the previous ping.
 *
 * @internal
 */
export interface Heartbeat {
  /** Stops the timer. */
  stop(): void;
}

/**
 * Starts the heartbeat of one hub (none when `heartbeatInterval` is 0).
 *
 * A sweep judges only connections that had a fair chance to answer. When the event loop runs
 * late (the process is overloaded, or the previous sweep took most of the interval), the pongs
 * of healthy clients may still sit unread in the socket buffers, and dropping those clients
 * would turn an overload into a reconnect storm. Such a sweep is skipped (and logged), but
 * never twice in a row, so a dead client is still dropped within three intervals.
 *
 * @internal
 */
export function startHeartbeat(core: HubCore, departure: Departure, fanOut: FanOut<Connection>): Heartbeat {
  const { heartbeatInterval } = core.config;
  const { connections, countError, internalError } = core;
  const { drop, releaseClosing } = departure;
  const { preparer, sendPrepared } = fanOut;

  const pingAll = () => {
    const prepare = preparer(JSON.stringify({ type: 'ping', timestamp: new Date().toISOString() }));
    for (const connection of connections) {
      try {
        // Not yet established (the broker is subscribing): neither pinged nor timed out.
        if (!connection.established) continue;
        if (!connection.binding.isOpen(connection.socket)) {
          releaseClosing(connection.channel);
          continue;
        }
        if (!connection.alive) {
          countError('heartbeat_timeout');
          drop(connection, CloseCode.HEARTBEAT_TIMEOUT, {});
          continue;
        }
        connection.alive = false;
        sendPrepared(connection, prepare(connection));
      } catch (error) {
        internalError('heartbeat', error, connection.channel.agentId);
      }
    }
  };

  let lastSweepStart = performance.now();
  let lastSweepEnd = lastSweepStart;
  let skippedLast = false;
  const sweep = () => {
    const started = performance.now();
    const late = started - lastSweepStart - heartbeatInterval;
    const quiet = started - lastSweepEnd;
    lastSweepStart = started;
    if (!skippedLast && (late > heartbeatInterval / 2 || quiet < heartbeatInterval / 2)) {
      skippedLast = true;
      lastSweepEnd = started;
      core.throttle.note('heartbeat_late', 'warn', 'heartbeat_sweep_skipped', {
        late_ms: Math.round(late),
        quiet_ms: Math.round(quiet),
        interval_ms: heartbeatInterval,
      });
      return;
    }
    skippedLast = false;
    try {
      pingAll();
    } finally {
      lastSweepEnd = performance.now();
    }
  };

  const timer = heartbeatInterval > 0 ? setInterval(sweep, heartbeatInterval) : undefined;
  return {
    stop() {
      if (timer !== undefined) clearInterval(timer);
    },
  };
}
