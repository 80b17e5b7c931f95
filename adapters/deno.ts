/**
 * Deno binding: `Deno.serve` with an `upgradeWebSocket` of its own, built on hono's `hono/ws`
 * helpers: `hono/deno`'s keeps the Hono context and Deno's request alive per socket
 * and registers four `on…` closures; here a socket keeps one context (the socket alone) and one
 * listener object (docs/runtimes.md, "Memory per connection").
 *
 * Nothing else to absorb here: Deno's sockets expose the standard `bufferedAmount` the hub reads
 * by default, and its abrupt close (an error event, then close code 0) is already what the hub
 * treats as a vanished peer. Type-checked by `deno check` (`npm run check:deno`), not `tsc`.
 *
 * @module
 */
import type { Context, Hono } from 'hono';
import { defineWebSocketHelper, type UpgradeWebSocket, WSContext, type WSContextInit, type WSEvents } from 'hono/ws';
import { type AgentHub, type RuntimeBinding, SERVE_DEFAULTS } from '../plugin/index.ts';
import { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';

export { answerDiscardingBody, LINGER_LIMITS, type LingerLimits } from './linger.ts';

/** `WSContext` never reaches it: `DenoContext` overrides every method that would. Shared. */
const NO_INIT: WSContextInit<WebSocket> = {
  send() {},
  close() {},
  readyState: 3,
};

/** A socket's one context: the socket and nothing else (`hono/deno` adds an init object). */
class DenoContext extends WSContext<WebSocket> {
  constructor(override readonly raw: WebSocket) {
    // `url` stays null, as with `hono/deno`: a server-side Deno socket's `url` is ''.
    super(NO_INIT);
    this.protocol = raw.protocol;
  }
  override send(source: string | ArrayBuffer | Uint8Array<ArrayBuffer>): void {
    this.raw.send(source);
  }
  override close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }
  override get readyState(): WSContextInit['readyState'] {
    return this.raw.readyState as WSContextInit['readyState'];
  }
}

/**
 * Hands a socket's events to the route's, with the socket's one context: one listener object
 * per socket, registered for the four events (four `on…` closures would each get a wrapper and
 * an entry in the socket's handler map too). Built outside the upgrade's scope, so nothing of
 * the Hono context or Deno's request stays reachable (`hono/deno`'s listeners keep both alive
 * as long as the socket is open). The events are called as methods, as every hono adapter calls
 * them (the hub's are methods).
 */
class SocketListener {
  constructor(
    readonly events: WSEvents<WebSocket>,
    readonly context: DenoContext,
  ) {}
  handleEvent(event: Event): void {
    const { events, context } = this;
    switch (event.type) {
      case 'open':
        events.onOpen?.(event, context);
        break;
      case 'message':
        events.onMessage?.(event as MessageEvent, context);
        break;
      case 'close':
        events.onClose?.(event as CloseEvent, context);
        break;
      case 'error':
        events.onError?.(event, context);
    }
  }
}

function listen(socket: WebSocket, events: WSEvents<WebSocket>): void {
  const listener = new SocketListener(events, new DenoContext(socket));
  socket.addEventListener('open', listener);
  socket.addEventListener('message', listener);
  socket.addEventListener('close', listener);
  socket.addEventListener('error', listener);
}

/**
 * Deno's `upgradeWebSocket`, as `hono/deno`'s (same options, first offered subprotocol chosen),
 * retaining per socket only the socket, its events and one context.
 */
export const upgradeWebSocket: UpgradeWebSocket<WebSocket, Deno.UpgradeWebSocketOptions> = defineWebSocketHelper<
  WebSocket,
  Deno.UpgradeWebSocketOptions
>((c: Context, events: WSEvents<WebSocket>, options?: Deno.UpgradeWebSocketOptions) => {
  if (c.req.header('upgrade') !== 'websocket') return;
  const protocol = c.req.header('sec-websocket-protocol')?.split(',')[0]?.trim();
  const { response, socket } = Deno.upgradeWebSocket(c.req.raw, { ...(protocol ? { protocol } : {}), ...options });
  listen(socket, events);
  return response;
});

/**
 * The Deno binding: `app.route('/agents', hub.routes(deno))`. Deno's sockets are standard, so
 * it carries only the upgrade.
 */
export const deno: RuntimeBinding = { upgradeWebSocket };

/**
 * Options of `serveDeno`.
 */
export interface ServeDenoOptions {
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
   * ingest's 413), so the client gets the answer, and for how long; past either, the connection
   * is cut. Default `LINGER_LIMITS` (16 MiB, 5 s); see `answerDiscardingBody`.
   */
  linger?: LingerLimits;
}

/**
 * A running Deno server.
 */
export interface DenoServer {
  /** The underlying `Deno.HttpServer`. */
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  /** The port actually bound. */
  readonly port: number;
  /** Closes the hub (flushing batches, closing sockets with 1001), then the HTTP server. */
  close(): Promise<void>;
}

/**
 * Serves an app with the hub on Deno and resolves once it listens. An answer given before the
 * request's body was read is held open while the body is discarded (`answerDiscardingBody`): Deno
 * would otherwise read such a body for as long as the client sends it, and keep a connection
 * whose client dribbles it, without limit.
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export async function serveDeno(options: ServeDenoOptions): Promise<DenoServer> {
  // Deno.serve binds synchronously (and throws when it cannot), so the port is known at once.
  const server = Deno.serve(
    {
      port: options.port ?? SERVE_DEFAULTS.port,
      hostname: options.hostname ?? SERVE_DEFAULTS.hostname,
      // Given, so Deno does not print its own "Listening on" line.
      onListen: () => {},
    },
    (request, info) =>
      answerDiscardingBody(request, (passed) => options.fetch(passed, info), options.linger ?? LINGER_LIMITS),
  );
  return {
    server,
    port: server.addr.port,
    async close() {
      await options.hub.close();
      await server.shutdown();
    },
  };
}
