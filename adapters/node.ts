/**
 * Node binding: `@hono/node-server` (v2, built-in WebSocket support) with the `ws` package.
 *
 * @module
 */
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  type Http2Bindings,
  type HttpBindings,
  upgradeWebSocket as nodeUpgradeWebSocket,
  type ServerType,
  serve,
} from '@hono/node-server';
import type { Context, Hono } from 'hono';
import type { WSContext, WSEvents } from 'hono/ws';
import { type WebSocket, WebSocketServer } from 'ws';
import { type AgentHub, type RoutesOptions, type RuntimeBinding, SERVE_DEFAULTS } from '../plugin/index.ts';
import { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';
import { acceptUpgrade, handleUpgrades, serveAsPlainHttp, type UpgradeWebSocketOptions } from './node-upgrade.ts';

export { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';

/**
 * `@hono/node-server`'s `upgradeWebSocket`, minus a per-connection leak of memory: its event
 * handlers are closures over the context they were given, which they keep for the socket's
 * lifetime, and with the request's Hono context go its `Request`, headers, URLs and the
 * `IncomingMessage` (docs/runtimes.md, "Memory per connection"; measured by bench/heap.ts).
 * So the events are made with the real context, and the handler is given a stand-in holding only
 * what it reads: the `Upgrade` header, the URL and the server's `env`, whose `IncomingMessage` is
 * dropped once the upgrade is answered (nothing reads it after).
 */
export const upgradeWebSocket = ((...args: unknown[]) => {
  const upgrade = nodeUpgradeWebSocket as (...args: unknown[]) => unknown;
  if (typeof args[0] !== 'function') return upgrade(...args);
  const [createEvents, options] = args as [(c: Context) => WSEvents | Promise<WSEvents>, unknown];
  // No `async`: under `serveNode` an accepted upgrade is answered without a promise, and a
  // reconnect storm runs this once per client.
  const answer = (
    c: Context,
    next: () => Promise<void>,
    events: WSEvents,
  ): Response | Promise<Response | undefined> => {
    const header = c.req.header('upgrade');
    // What the two-argument form does without an upgrade: nothing, on to the next handler.
    if (header?.toLowerCase() !== 'websocket') return next() as Promise<undefined>;
    // Under `serveNode`, its own upgrade path (adapters/node-upgrade.ts) completes the handshake.
    const accepted = acceptUpgrade(c.env, events as WSEvents<WebSocket>, options as UpgradeWebSocketOptions);
    if (accepted) return accepted;
    const env = c.env as { incoming?: unknown };
    return (upgrade(new StandIn(c.req.url, env), events, options) as Promise<Response>).then((response) => {
      env.incoming = undefined;
      return response;
    });
  };
  return (c: Context, next: () => Promise<void>) => {
    const events = createEvents(c);
    return events instanceof Promise ? events.then((resolved) => answer(c, next, resolved)) : answer(c, next, events);
  };
}) as typeof nodeUpgradeWebSocket;

/**
 * The context `@hono/node-server`'s handler is given, and keeps: one object, its own `req`, with
 * the URL and `env`. `header()` is asked only for `upgrade`, checked before.
 */
class StandIn {
  readonly url: string;
  readonly env: unknown;
  constructor(url: string, env: unknown) {
    this.url = url;
    this.env = env;
  }
  get req(): StandIn {
    return this;
  }
  header(): string {
    return 'websocket';
  }
}

/**
 * The Node details: each frame is encoded to UTF-8 once and the same bytes are written to every
 * socket of the agent as a text frame, instead of `ws` encoding the string again for each socket.
 * Also right for `@hono/node-ws` (`ws` underneath): `hub.routes(upgradeWebSocket, routesOptions)`.
 */
export const routesOptions: RoutesOptions = {
  prepareFrame: (frame) => Buffer.from(frame),
  sendFrame: (socket: WSContext, bytes) => (socket.raw as WebSocket).send(bytes as Buffer, { binary: false }),
};

/**
 * The Node binding (`@hono/node-server` v2 with `ws`): `app.route('/agents', hub.routes(node))`.
 */
export const node: RuntimeBinding = { upgradeWebSocket, ...routesOptions };

/**
 * Options of `serveNode`.
 */
export interface ServeNodeOptions {
  /** The app, with the hub's routes mounted. */
  fetch: Hono['fetch'];
  /** The hub, closed first on `close()`. */
  hub: AgentHub;
  /** Port; 0 picks a free one. Default `SERVE_DEFAULTS.port` (8787). */
  port?: number;
  /** Interface to bind. Default `SERVE_DEFAULTS.hostname` (127.0.0.1). */
  hostname?: string;
  /**
   * How much of a request body nobody read the server discards after answering (an oversized
   * ingest's 413), so the client gets the answer, and for how long; past either, the socket is
   * destroyed. Default `LINGER_LIMITS` (16 MiB, 5 s); see `answerDiscardingBody`.
   */
  linger?: LingerLimits;
  /**
   * Ms a client has to send a request's headers (Node's default: 60 s). Default 10000: Node caps
   * headers at 16 KB, so 10 s is ample on a slow link, and it caps how long a client that dribbles
   * headers (slowloris), or connects and sends nothing, holds a socket. It gets 408.
   */
  headersTimeout?: number;
  /**
   * Ms a client has to send a whole request, body included (Node's default: 5 min). Default
   * 30000: the largest body is an ingest of `maxIngestBytes` (1 MiB), i.e. 35 KB/s at worst.
   * WebSocket connections are not affected once upgraded.
   */
  requestTimeout?: number;
  /** Ms an idle keep-alive connection stays open between requests. Default 5000 (Node's). */
  keepAliveTimeout?: number;
  /**
   * How often Node checks the two timeouts above, so a slow client is cut within the timeout
   * plus this. Default 1000 (Node's default of 30 s would make the bounds 40 s and 60 s).
   */
  connectionsCheckingInterval?: number;
}

/**
 * `serveNode`'s timeouts, for the `serverOptions` of `serve()` if you call it yourself (see
 * `ServeNodeOptions` for why each).
 */
export const serverTimeouts = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  connectionsCheckingInterval: 1_000,
} as const;

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
 * Makes sure every request Node hands to the server's `upgrade` listeners gets an answer.
 *
 * WHY: once any `upgrade` listener exists, Node gives it every request with `Connection: Upgrade`
 * and an `Upgrade` header, detached from the HTTP parser, whatever the protocol asked for.
 * `@hono/node-server` handles only `Upgrade: websocket` and returns without touching the socket
 * otherwise (`h2c`, `foo`), so nobody answers, reads or closes it: the file descriptor stays
 * taken after the client is gone, and a few hundred such requests exhaust the process's limit.
 *
 * This takes over the listeners installed so far (call it right after `serve()` returns, as
 * `serveNode` does) and dispatches: `websocket` upgrades (compared as `@hono/node-server` does,
 * case-insensitively) go to them as before; any other request is put back into Node's HTTP parser without its `Upgrade` and `Connection`
 * headers, plus `Connection: close`, so the app answers it as the plain HTTP request it now is
 * (the hub's WebSocket route answers 426, the stats route 200) and Node closes the connection
 * after the response, with the usual `headersTimeout`/`requestTimeout` and body handling. A
 * listener that throws or rejects mid-way has its socket destroyed rather than left open (and
 * the process is not ended by an unhandled rejection). Calling it twice does nothing more.
 * Listeners of the server's `connection` event see such a socket a second time.
 *
 * @param server The server `serve()` returned. Tested on plain HTTP; on HTTPS the request is
 *   re-injected through `secureConnection` (checked by hand, not in the test suite).
 *
 * @returns The same server.
 */
export function guardUpgrades<T extends ServerType>(server: T): T {
  const target = server as unknown as GuardedServer;
  if (target[guarded]) return server;
  target[guarded] = true;
  const upstream = target.listeners('upgrade') as UpgradeListener[];
  target.removeAllListeners('upgrade');
  // One listener: `@hono/node-server` answers a refused upgrade only while it is the sole one.
  target.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (socket.destroyed) return;
    if (upstream.length === 0 || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      serveAsPlainHttp(target, req, socket, head);
      return;
    }
    for (const listener of upstream) {
      try {
        Promise.resolve(listener.call(target, req, socket, head)).catch(() => socket.destroy());
      } catch {
        socket.destroy();
      }
    }
  });
  return server;
}

const guarded = Symbol('hono-agent-ws.guardUpgrades');
type UpgradeListener = (req: IncomingMessage, socket: Socket, head: Buffer) => unknown;
interface GuardedServer {
  [guarded]?: true;
  listeners(event: 'upgrade'): unknown[];
  removeAllListeners(event: 'upgrade'): unknown;
  on(event: 'upgrade', listener: UpgradeListener): unknown;
  emit(event: 'connection' | 'secureConnection', socket: Socket): boolean;
}

/** The `env` of an upgrade request on `serveNode`'s own path: no `ServerResponse`. */
type UpgradeBindings = { incoming: IncomingMessage | undefined; outgoing: undefined };

/**
 * Serves an app with the hub on Node and resolves once it listens. WebSocket upgrades take the
 * adapter's own path (`handleUpgrades`, adapters/node-upgrade.ts: the app's middleware and the
 * hub's checks run as before; the `101` and the first frames leave in one write); every other
 * request on the upgrade path is served as plain HTTP, as `guardUpgrades` does; slow clients are
 * cut (`headersTimeout`, `requestTimeout`).
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export function serveNode(options: ServeNodeOptions): Promise<NodeServer> {
  const websocket = nodeWebSocket(options.hub);
  const linger = options.linger ?? LINGER_LIMITS;
  const serverOptions = {
    headersTimeout: options.headersTimeout ?? serverTimeouts.headersTimeout,
    requestTimeout: options.requestTimeout ?? serverTimeouts.requestTimeout,
    keepAliveTimeout: options.keepAliveTimeout ?? serverTimeouts.keepAliveTimeout,
    connectionsCheckingInterval: options.connectionsCheckingInterval ?? serverTimeouts.connectionsCheckingInterval,
  };
  // A request with `Connection: close` answered before its body was read: Node closes the
  // socket as soon as the answer is written, and the unread body turns the close into a reset
  // that loses the answer.
  // A GET or HEAD has no body to discard: straight to the app (every upgrade is a GET).
  const fetch = (request: Request, env: HttpBindings | Http2Bindings | UpgradeBindings) =>
    request.method === 'GET' || request.method === 'HEAD'
      ? options.fetch(request, env)
      : answerDiscardingBody(
          request,
          (passed) => options.fetch(passed, env),
          linger,
          () => env.outgoing?.destroy(),
        );
  return new Promise((resolve, reject) => {
    // No `websocket` option: upgrades take this adapter's own path (adapters/node-upgrade.ts).
    const server = serve(
      {
        fetch,
        port: options.port ?? SERVE_DEFAULTS.port,
        hostname: options.hostname ?? SERVE_DEFAULTS.hostname,
        serverOptions,
      },
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
    handleUpgrades(server as Server, fetch, websocket.server);
    server.once('error', reject);
  });
}
