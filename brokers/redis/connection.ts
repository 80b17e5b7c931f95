/**
 * The Redis broker's two connections (commands, and pub/sub), and what keeps them honest:
 *
 * - Every command is bounded by `commandTimeout` (node-redis does not time out a command once it
 *   is written). After a timeout every call fails at once, without writing to Redis, until Redis
 *   answers a probe queued behind the stuck command; then the broker registers again at once.
 * - Commands fail at once while disconnected (`disableOfflineQueue`): nothing is buffered in the
 *   process. Both connections reconnect by themselves, with backoff up to `maxReconnectDelay`;
 *   node-redis resubscribes every channel.
 * - The scripts are loaded on every (re)connection of the commands connection, before anything
 *   runs, and run by their SHA1 (the one `SCRIPT LOAD` answers).
 * - A lost connection is reported once per outage and connection, not once per retry.
 *
 * @module
 */
import { createClient } from '@redis/client';
import type { Script } from './scripts.ts';

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
 * Races `promise` against a timer: rejects with `RedisUnavailableError` after `ms` and calls
 * `onTimeout`. The command itself is not cancelled (Redis may still run it later).
 *
 * @internal
 */
export const withTimeout = <T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> => {
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
 * What `connectRedis` needs.
 *
 * @internal
 */
export interface ConnectionOptions {
  readonly url: string;
  readonly commandTimeout: number;
  readonly maxReconnectDelay: number;
  /** Loaded on every (re)connection of the commands connection. */
  readonly scripts: readonly Script[];
  /** Reports a failure met outside any call (a lost connection). */
  readonly report: (operation: string, error: unknown) => void;
  /**
   * Called whenever Redis is usable again (scripts loaded after a (re)connection, or a stall
   * ended): the broker registers its instance and agents again. Its failure is reported.
   */
  readonly onReady: () => Promise<void>;
  /** Called when the pub/sub connection is (re)connected, after node-redis resubscribed. */
  readonly onSubscriberReady: () => Promise<void>;
}

/**
 * The broker's view of its connections.
 *
 * @internal
 */
export interface RedisConnection {
  /**
   * Runs a script, bounded by `commandTimeout`. Waits for the first connection (bounded too);
   * after that fails at once while Redis is unusable.
   *
   * @throws {RedisUnavailableError}
   */
  run(script: Script, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /** Connected, scripts loaded, not stalled, not closed. */
  usable(): boolean;
  /** The pub/sub connection is up. */
  subscriberReady(): boolean;
  /** Resolves once both connections were up once (or after `commandTimeout`). */
  whenStarted(): Promise<void>;
  /** Subscribes a channel, bounded by `commandTimeout`. */
  subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<void>;
  /** Unsubscribes a channel (not bounded: the caller decides how long to wait). */
  unsubscribe(channel: string): Promise<void>;
  /** Closes both connections at once; every later call fails. */
  close(): void;
}

/**
 * Opens the commands and pub/sub connections. The first connection retries for ever
 * (`maxReconnectDelay` between attempts); until it is up, calls wait for it up to
 * `commandTimeout`, so a server that starts listening together with its broker does not refuse
 * its first clients.
 *
 * @internal
 */
export function connectRedis(options: ConnectionOptions): RedisConnection {
  const { url, commandTimeout, maxReconnectDelay, report } = options;
  // Commands fail at once while disconnected instead of waiting in an offline queue: a
  // publish that cannot reach Redis is refused loudly (503), never held in memory.
  const clientOptions = {
    url,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, maxReconnectDelay) },
  };
  const commands = createClient(clientOptions);
  const subscriber = createClient(clientOptions);

  /** SHA1 of each script, as `SCRIPT LOAD` answered; set while the scripts are loaded. */
  const shas = new Map<Script, string>();
  let scriptsLoaded = false;
  let closed = false;
  /**
   * Set when a command timed out: Redis is connected but not answering (frozen, overloaded).
   * Calls then fail at once instead of piling up behind the stuck one, until a probe answers.
   */
  let stalled = false;
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

  /** Loads the scripts, then lets the broker register its instance and agents again. */
  const prepare = async () => {
    // Loaded before anything runs, so no EVALSHA can miss and be resent out of order.
    const loaded = await Promise.all(
      options.scripts.map((script) => send(['SCRIPT', 'LOAD', script.source], 'SCRIPT LOAD')),
    );
    for (const [index, script] of options.scripts.entries()) shas.set(script, String(loaded[index]));
    scriptsLoaded = true;
    if (subscriber.isReady) markStarted();
    // After a Redis restart or freeze this also hands over what was queued meanwhile.
    await options.onReady();
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
          (scriptsLoaded ? options.onReady() : prepare()).catch((error) => report('redis_connection', error));
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
    await options.onSubscriberReady();
  });
  // The first connection retries for ever (reconnectStrategy); until then every call fails fast.
  for (const client of [commands, subscriber]) client.connect().catch(() => {});

  return {
    async run(script, keys, args) {
      await whenStarted();
      const sha = shas.get(script);
      if (!usable() || sha === undefined) throw new RedisUnavailableError(stalled ? 'not answering' : 'not connected');
      const tail = [String(keys.length), ...keys, ...args];
      try {
        return await send(['EVALSHA', sha, ...tail], 'EVALSHA');
      } catch (error) {
        // Scripts are loaded on every (re)connection; this only happens after a SCRIPT FLUSH.
        if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
        return send(['EVAL', script.source, ...tail], 'EVAL');
      }
    },
    usable,
    subscriberReady: () => subscriber.isReady,
    whenStarted,
    subscribe: (channel, listener) => withTimeout(subscriber.subscribe(channel, listener), commandTimeout, 'SUBSCRIBE'),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
    close() {
      closed = true;
      commands.destroy();
      subscriber.destroy();
    },
  };
}
