/**
 * Bun binding: `Bun.serve` with an `upgradeWebSocket` and a `websocket` handler of its own,
 * built on hono's `hono/ws` helpers.
 *
 * Bun reports queued bytes through `getBufferedAmount()`, not `bufferedAmount` (absorbed by
 * `routesOptions`). `hono/bun` keeps a data object with a parsed `URL` per socket and builds a
 * fresh context (with a second `URL` and a frozen `readyState`) for every event; here a socket's
 * data is its one context, holding the events and the request URL as a string, parsed when
 * `url` is first read (docs/runtimes.md, "Memory per connection").
 *
 * @module
 */
import type { Context, Hono } from 'hono';
import { defineWebSocketHelper, type UpgradeWebSocket, WSContext, type WSContextInit, type WSEvents } from 'hono/ws';
import { type AgentHub, type RoutesOptions, type RuntimeBinding, SERVE_DEFAULTS } from '../plugin/index.ts';
import { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';

export { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';

/** The part of Bun's global this file uses: `tsc` checks it without Bun's type package. */
declare const Bun: {
  serve(options: { port: number; hostname: string; fetch: Hono['fetch']; websocket: BunWebSocketHandler }): {
    readonly port: number;
    stop(closeActiveConnections?: boolean): Promise<void>;
  };
};

/**
 * What a socket carries as `ws.data`: `hono/bun`'s shape (`events`, `url`, `protocol`), so
 * either side's `upgradeWebSocket` and `websocket` handler work together.
 */
export interface BunSocketData {
  /** The route's events. */
  readonly events: WSEvents<BunServerSocket>;
  /** The request URL. */
  readonly url: URL | string | null;
  /** The first subprotocol the client offered, or ''. */
  readonly protocol: string | null;
  /** The context `bunWebSocket` built for a socket `hono/bun` upgraded. */
  context?: WSContext<BunServerSocket>;
}

/** The part of Bun's `ServerWebSocket` this file and the hub use. */
export interface BunServerSocket {
  readonly data: BunSocketData;
  readonly readyState: 0 | 1 | 2 | 3;
  send(data: string | ArrayBuffer | Uint8Array, compress?: boolean): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  publish(topic: string, data: string): number;
}

/** The part of Bun's server `upgradeWebSocket` uses (`Bun.serve` passes it to `fetch`). */
interface BunUpgrader {
  upgrade(request: Request, options: { data: BunSocketData }): boolean;
}

/**
 * `WSContext` never reaches it: `BunContext` overrides every method that would. Shared by every
 * socket, so a context costs no object of its own besides itself.
 */
const NO_INIT: WSContextInit<BunServerSocket> = {
  send() {},
  close() {},
  readyState: 3,
};

/**
 * A socket's one context, which is also its `ws.data`: one object per socket, where `hono/bun`
 * keeps a data object with a parsed `URL` and builds a context (with another `URL`) per event.
 * `raw` is set when the socket opens.
 */
class BunContext extends WSContext<BunServerSocket> implements BunSocketData {
  constructor(
    readonly events: WSEvents<BunServerSocket>,
    /** The request URL, parsed when `url` is first read. */
    readonly href: string,
    protocol: string,
  ) {
    super(NO_INIT);
    this.protocol = protocol;
    // `url` is the prototype's accessor below, parsed on first read: `WSContext` defines it on
    // every instance (null here), which would hide the accessor. Removing it is one shared shape
    // transition, not an accessor per socket.
    delete (this as { url?: unknown }).url;
  }
  override send(source: string | ArrayBuffer | Uint8Array<ArrayBuffer>, options?: { compress?: boolean }): void {
    this.raw?.send(source, options?.compress);
  }
  override close(code?: number, reason?: string): void {
    this.raw?.close(code, reason);
  }
  override get readyState(): WSContextInit['readyState'] {
    return this.raw?.readyState ?? 0;
  }
}

/** `url`: the request URL, parsed on first read (`WSContext` would parse it at once). */
Object.defineProperty(BunContext.prototype, 'url', {
  configurable: true,
  enumerable: true,
  get(this: BunContext): URL {
    const url = new URL(this.href);
    Object.defineProperty(this, 'url', { value: url, writable: true, configurable: true, enumerable: true });
    return url;
  },
  set(this: BunContext, value: URL | null) {
    Object.defineProperty(this, 'url', { value, writable: true, configurable: true, enumerable: true });
  },
});

/**
 * Bun's `upgradeWebSocket`, as `hono/bun`'s (the server from the `fetch` call's second argument,
 * the first offered subprotocol reported), keeping nothing of the Hono context: the socket's
 * data is its context, holding the events and the URL string.
 */
export const upgradeWebSocket: UpgradeWebSocket<BunServerSocket> = defineWebSocketHelper<BunServerSocket>(
  (c: Context, events: WSEvents<BunServerSocket>) => {
    const env = c.env as BunUpgrader | { server: BunUpgrader } | undefined;
    const server = env && 'server' in env ? env.server : env;
    if (!server) throw new TypeError('env has to include the 2nd argument of fetch.');
    const protocol = c.req.header('sec-websocket-protocol')?.split(',')[0]?.trim() ?? '';
    if (server.upgrade(c.req.raw, { data: new BunContext(events, c.req.url, protocol) })) return new Response(null);
  },
);

/** The socket's context: its data, or one built once for a socket `hono/bun` upgraded. */
const contextOf = (ws: BunServerSocket): WSContext<BunServerSocket> => {
  const data = ws.data;
  if (data instanceof BunContext) {
    data.raw ??= ws;
    return data;
  }
  data.context ??= new WSContext<BunServerSocket>({
    send: (source, options) => ws.send(source, options?.compress),
    close: (code, reason) => ws.close(code, reason),
    get readyState() {
      return ws.readyState;
    },
    raw: ws,
    url: data.url,
    protocol: data.protocol,
  });
  return data.context;
};

/**
 * Runs a listener; what it throws (or rejects with) goes to `onError`, or is rethrown without
 * one. Listeners are called as methods of the events (`events.onOpen(...)`), as every hono
 * adapter calls them: the hub's are methods.
 */
const run = (ws: BunServerSocket, listener: () => unknown): void => {
  const fail = (error: unknown) => {
    const events = ws.data.events;
    if (!events.onError) throw error;
    const event = new Event('error');
    (event as Event & { error: unknown }).error = error;
    events.onError(event, contextOf(ws));
  };
  try {
    const result = listener();
    if (result instanceof Promise) result.catch(fail);
  } catch (error) {
    fail(error);
  }
};

/** The `websocket` option of `Bun.serve()`, as `bunWebSocket` returns it. */
export interface BunWebSocketHandler {
  open(ws: BunServerSocket): void;
  message(ws: BunServerSocket, message: string | { buffer: ArrayBufferLike }): void;
  close(ws: BunServerSocket, code?: number, reason?: string): void;
  /** Frames larger than this are refused by Bun (close 1009). */
  maxPayloadLength: number;
}

/** The handlers: one context per socket, reused for every event. */
const handlers: Omit<BunWebSocketHandler, 'maxPayloadLength'> = {
  open(ws) {
    const events = ws.data.events;
    if (events.onOpen) run(ws, () => events.onOpen?.(new Event('open'), contextOf(ws)));
  },
  message(ws, message) {
    const events = ws.data.events;
    if (!events.onMessage) return;
    const data = typeof message === 'string' ? message : (message.buffer as ArrayBuffer);
    run(ws, () => events.onMessage?.(new MessageEvent('message', { data }), contextOf(ws)));
  },
  close(ws, code, reason) {
    const events = ws.data.events;
    if (events.onClose) run(ws, () => events.onClose?.(new CloseEvent('close', { code, reason }), contextOf(ws)));
  },
};

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

/** Bun's socket behind the context. */
const raw = (socket: WSContext) => socket.raw as BunServerSocket;

/**
 * The `websocket` option of `Bun.serve()`: the handlers for `upgradeWebSocket`'s sockets, with
 * frames over four times the hub's `maxMessageSize` refused by Bun itself (close 1009) before
 * they are buffered whole, as on Node. The hub answers smaller oversized frames itself, with the same code.
 *
 * @param hub The hub.
 *
 * @returns The `websocket` option of `Bun.serve()`.
 */
export function bunWebSocket(hub: AgentHub): BunWebSocketHandler {
  return { ...handlers, maxPayloadLength: 4 * hub.options.maxMessageSize };
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
  /**
   * How much of a request body nobody read the server discards after answering (an oversized
   * ingest's 413), so the client gets the answer, and for how long; past either, the connection
   * is cut. Default `LINGER_LIMITS` (16 MiB, 5 s); see `answerDiscardingBody`.
   */
  linger?: LingerLimits;
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
 * An answer given before the request's body was read is held open while the body is discarded
 * (`answerDiscardingBody`): Bun would otherwise close the connection with the body unread, and the
 * client would lose the answer to a reset.
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export async function serveBun(options: ServeBunOptions): Promise<BunServer> {
  const server = Bun.serve({
    port: options.port ?? SERVE_DEFAULTS.port,
    hostname: options.hostname ?? SERVE_DEFAULTS.hostname,
    fetch: (request, server) =>
      answerDiscardingBody(request, (passed) => options.fetch(passed, server), options.linger ?? LINGER_LIMITS),
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
