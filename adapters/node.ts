/**
 * Node binding: `@hono/node-server` (v2, built-in WebSocket support) with the `ws` package.
 *
 * @module
 */
import type { AddressInfo } from 'node:net';
import { upgradeWebSocket as nodeUpgradeWebSocket, type ServerType, serve } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import type { WSContext } from 'hono/ws';
import { type WebSocket, WebSocketServer } from 'ws';
import type { AgentHub, RoutesOptions } from '../plugin/index.ts';

/**
 * `@hono/node-server`'s `upgradeWebSocket`, minus a per-connection leak of memory: its event
 * handlers keep the request's Hono context alive for the socket's lifetime, and with it the
 * `IncomingMessage`, which nothing reads once the upgrade is answered (about 3 KB per idle
 * connection, measured by `npm run bench`).
 */
export const upgradeWebSocket = ((...args: unknown[]) => {
  const upgrade = nodeUpgradeWebSocket as (...args: unknown[]) => unknown;
  if (typeof args[0] !== 'function') return upgrade(...args);
  const middleware = upgrade(...args) as (c: Context, next: () => Promise<void>) => Promise<Response | undefined>;
  return async (c: Context, next: () => Promise<void>) => {
    const response = await middleware(c, next);
    if (response && c.env) (c.env as { incoming?: unknown }).incoming = undefined;
    return response;
  };
}) as typeof nodeUpgradeWebSocket;

/**
 * Pass as `hub.routes(upgradeWebSocket, routesOptions)`: each frame is encoded to UTF-8 once
 * and the same bytes are written to every socket of the agent as a text frame, instead of `ws`
 * encoding the string again for each socket.
 */
export const routesOptions: RoutesOptions = {
  prepareFrame: (frame) => Buffer.from(frame),
  sendFrame: (socket: WSContext, bytes) => (socket.raw as WebSocket).send(bytes as Buffer, { binary: false }),
};

/**
 * Options of `serveNode`.
 */
export interface ServeNodeOptions {
  /** The app, with the hub's routes mounted. */
  fetch: Hono['fetch'];
  /** The hub, closed first on `close()`. */
  hub: AgentHub;
  /** Port; 0 picks a free one. Default 8787. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1. */
  hostname?: string;
}

/**
 * A running Node server.
 */
export interface NodeServer {
  /** The underlying `http.Server`. */
  readonly server: ServerType;
  /** The port actually bound. */
  readonly port: number;
  /** Closes the hub (flushing batches, closing sockets with 1001), then the HTTP server. */
  close(): Promise<void>;
}

/**
 * Creates the `ws` server `@hono/node-server` upgrades into. Frames over four times the hub's
 * `maxMessageSize` are refused by `ws` itself (close 1009) before they are buffered whole; the
 * hub answers smaller oversized frames itself, with the same code.
 *
 * @param hub The hub.
 *
 * @returns The `websocket` option of `serve()`.
 */
export function nodeWebSocket(hub: AgentHub): { server: WebSocketServer } {
  return { server: new WebSocketServer({ noServer: true, maxPayload: 4 * hub.options.maxMessageSize }) };
}

/**
 * Serves an app with the hub on Node and resolves once it listens.
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export function serveNode(options: ServeNodeOptions): Promise<NodeServer> {
  const websocket = nodeWebSocket(options.hub);
  return new Promise((resolve, reject) => {
    const server = serve(
      { fetch: options.fetch, port: options.port ?? 8787, hostname: options.hostname ?? '127.0.0.1', websocket },
      (info: AddressInfo) => {
        server.off('error', reject);
        resolve({
          server,
          port: info.port,
          async close() {
            await options.hub.close();
            await new Promise<void>((done) => {
              server.close(() => done());
              if ('closeAllConnections' in server) server.closeAllConnections();
            });
            websocket.server.close();
          },
        });
      },
    );
    server.once('error', reject);
  });
}
