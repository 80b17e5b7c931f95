/**
 * Bun binding: `Bun.serve` with `hono/bun`'s `upgradeWebSocket` and `websocket` handler.
 *
 * Bun reports queued bytes through `getBufferedAmount()`, not `bufferedAmount` (absorbed by
 * `routesOptions`). It also hands a fresh context with a frozen `readyState` to every event;
 * harmless, as the hub keeps its state in a closure and never reads `readyState`.
 *
 * @module
 */
import type { Hono } from 'hono';
// `hono/bun` is marked deprecated in favour of `@hono/bun`; it is the one hono 4 ships.
import { upgradeWebSocket, websocket } from 'hono/bun';
import type { WSContext } from 'hono/ws';
import { type AgentHub, type RoutesOptions, type RuntimeBinding, SERVE_DEFAULTS } from '../plugin/index.ts';

/** The part of Bun's global this file uses: `tsc` checks it without Bun's type package. */
declare const Bun: {
  serve(options: {
    port: number;
    hostname: string;
    fetch: Hono['fetch'];
    websocket: ReturnType<typeof bunWebSocket>;
  }): { readonly port: number; stop(closeActiveConnections?: boolean): Promise<void> };
};

export { upgradeWebSocket };

/**
 * The Bun details: Bun's `ServerWebSocket` has no `bufferedAmount` property (without this the
 * slow-consumer limit would never trip), and its native topics fan frames out. Part of `bun`.
 */
export const routesOptions: RoutesOptions = {
  bufferedAmount: (socket: WSContext) => raw(socket).getBufferedAmount(),
  // uWebSockets answers a close frame and calls the close handler in the same step.
  closeReported: true,
  // Bun's own pub/sub fans a frame out in one native call. A socket's `publish` skips the socket
  // itself, so the hub's chosen socket gets its copy with `send`.
  topics: {
    subscribe: (socket, topic) => raw(socket).subscribe(topic),
    unsubscribe: (socket, topic) => raw(socket).unsubscribe(topic),
    publish(via, topic, frame) {
      const socket = raw(via);
      socket.send(frame as string);
      socket.publish(topic, frame as string);
    },
  },
};

/**
 * The Bun binding: `app.route('/agents', hub.routes(bun))`, served with `serveBun` (or
 * `Bun.serve({ fetch: app.fetch, websocket: bunWebSocket(hub) })`).
 */
export const bun: RuntimeBinding = { upgradeWebSocket, ...routesOptions };

/** The part of Bun's `ServerWebSocket` the hub uses. */
interface BunSocket {
  getBufferedAmount(): number;
  send(data: string): number;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  publish(topic: string, data: string): number;
}

/** Bun's socket behind hono's context (a fresh context per event, the same socket). */
const raw = (socket: WSContext) => socket.raw as BunSocket;

/**
 * The `websocket` option of `Bun.serve()`: hono's handler, with frames over four times the
 * hub's `maxMessageSize` refused by Bun itself (close 1009) before they are buffered whole, as
 * on Node. The hub answers smaller oversized frames itself, with the same code.
 *
 * @param hub The hub.
 *
 * @returns The `websocket` option of `Bun.serve()`.
 */
export function bunWebSocket(hub: AgentHub): typeof websocket & { maxPayloadLength: number } {
  return { ...websocket, maxPayloadLength: 4 * hub.options.maxMessageSize };
}

/** Options of `serveBun`. */
export interface ServeBunOptions {
  /** The app, with the hub's routes mounted with `bun`. */
  fetch: Hono['fetch'];
  /** The hub, closed first on `close()`. */
  hub: AgentHub;
  /** Port; 0 picks a free one. Default `SERVE_DEFAULTS.port` (8787). */
  port?: number;
  /** Interface to bind. Default `SERVE_DEFAULTS.hostname` (127.0.0.1). */
  hostname?: string;
}

/** A running Bun server. */
export interface BunServer {
  /** The port actually bound. */
  readonly port: number;
  /** Closes the hub (flushing batches, closing sockets with 1001), then the HTTP server. */
  close(): Promise<void>;
}

/**
 * Serves an app with the hub on Bun and resolves once it listens (`Bun.serve` binds at once).
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export async function serveBun(options: ServeBunOptions): Promise<BunServer> {
  const server = Bun.serve({
    port: options.port ?? SERVE_DEFAULTS.port,
    hostname: options.hostname ?? SERVE_DEFAULTS.hostname,
    fetch: options.fetch,
    websocket: bunWebSocket(options.hub),
  });
  return {
    port: server.port,
    async close() {
      await options.hub.close();
      await server.stop();
    },
  };
}
