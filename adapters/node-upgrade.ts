/**
 * The Node server's own WebSocket upgrade path, which `serveNode` installs in place of
 * `@hono/node-server`'s: the server's `upgrade` event is answered here, through the app's
 * `fetch` (so every middleware, the hub's checks and `authorize` run as before), then completed
 * with `ws`'s `handleUpgrade`.
 *
 * WHY: a reconnect storm (every watcher back at once after a restart) pays the handshake's cost
 * N times over. `@hono/node-server`'s path writes the `101` in one syscall and the first frames
 * (`connection_established`, the snapshot, the resume batch) in another, and per upgrade adds a
 * waiter map entry, a promise, a `wss` `connection` round trip, two `wss` listeners added and
 * removed and a context of closures over the request. Here the socket is corked from the `101`
 * until the hub has written what it sends first (the same tick, when the broker answers at
 * once, as the in-memory broker does, and the SQLite broker unless it hands over a queue), so
 * both leave in one `writev`; the socket's context is one object (`NodeContext`) that keeps
 * nothing of the request.
 *
 * What stays exactly as with `@hono/node-server`: the `Request` the app sees (the same URL,
 * rules and 400 for a bad `Host` or target, the same headers), a refusal's answer (the app's
 * status and headers, no body, `Connection: close`; 500 when the app throws), the headers the
 * app set on its answer carried on the `101`, and `ws`'s own checks of the handshake.
 * What differs: `@hono/node-server`'s own `upgradeWebSocket` does not work on this path (it
 * answers 500: it waits for its own listener, which is not installed); use `upgradeWebSocket`
 * from `adapters/node.ts`, which works on both. The app's answer must be a 200 for the upgrade
 * to happen: a middleware that turns the handler's answer into another status refuses it (with
 * `@hono/node-server` it would upgrade anyway).
 *
 * @module
 */
import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { RequestError } from '@hono/node-server';
import { WSContext, type WSContextInit, type WSEvents } from 'hono/ws';
import type { RawData, WebSocket, WebSocketServer } from 'ws';

/** The options of an upgrade helper this path reads, as `@hono/node-server`'s: who hears a listener's failure. */
export interface UpgradeWebSocketOptions {
  onError?: (error: unknown) => void;
}

/** Where the app's `upgradeWebSocket` leaves the events of an upgrade it accepted (`c.env[UPGRADE]`). */
export const UPGRADE: unique symbol = Symbol('hono-agent-ws.node-upgrade');

/** What one upgrade's handler left: the socket's events and options, once it accepted. */
export interface UpgradeSlot {
  events: WSEvents<WebSocket> | undefined;
  options: UpgradeWebSocketOptions | undefined;
}

/** The `env` the app's `fetch` is given for an upgrade: `@hono/node-server`'s fields and the slot. */
interface UpgradeEnv {
  incoming: IncomingMessage | undefined;
  outgoing: undefined;
  wss: WebSocketServer;
  [UPGRADE]: UpgradeSlot;
}

/**
 * The upgrade helper's side of this path: when `env` comes from it, records the events and
 * answers the marker the path completes the handshake on (an empty 200).
 *
 * @param env The context's `env`.
 * @param events The socket's events.
 * @param options The helper's options (`onError`).
 *
 * @returns The answer to return from the handler, or `undefined` when `env` is not this path's.
 */
export function acceptUpgrade(
  env: unknown,
  events: WSEvents<WebSocket>,
  options: UpgradeWebSocketOptions | undefined,
): Response | undefined {
  const slot = (env as Partial<UpgradeEnv> | undefined)?.[UPGRADE];
  if (slot === undefined) return undefined;
  slot.events = events;
  slot.options = options;
  return new Response(null);
}

/**
 * A socket's one context: the `ws` socket and the request URL (parsed on first read), the same
 * fields as `@hono/node-server`'s `ctx`. Not built by `WSContext`'s constructor (its fields would
 * have to be deleted to make `url` lazy, which turns an object's properties into a dictionary,
 * slower to read on every frame); `instanceof WSContext` holds, and every member `WSContext`
 * defines is here.
 */
class NodeContext {
  binaryType: BinaryType = 'arraybuffer';
  protocol: string | null;
  #url: URL | null | undefined = undefined;
  constructor(
    readonly raw: WebSocket,
    /** The request URL, parsed when `url` is first read. */
    readonly href: string,
  ) {
    this.protocol = raw.protocol;
  }
  get url(): URL | null {
    if (this.#url === undefined) this.#url = new URL(this.href);
    return this.#url;
  }
  set url(value: URL | null) {
    this.#url = value;
  }
  send(source: string | ArrayBuffer | Uint8Array<ArrayBuffer>, options?: { compress?: boolean }): void {
    this.raw.send(source, { compress: options?.compress });
  }
  close(code?: number, reason?: string): void {
    this.raw.close(code, reason);
  }
  get readyState(): WSContextInit['readyState'] {
    return this.raw.readyState as WSContextInit['readyState'];
  }
}
Object.setPrototypeOf(NodeContext.prototype, WSContext.prototype);

/** Node has no global `CloseEvent` before 23 nor `ErrorEvent`: what the events receive there. */
const CloseEventOf: new (type: string, init: { code: number; reason: string }) => CloseEvent =
  globalThis.CloseEvent ??
  class extends Event {
    readonly code: number;
    readonly reason: string;
    readonly wasClean = false;
    constructor(type: string, init: { code: number; reason: string }) {
      super(type);
      this.code = init.code;
      this.reason = init.reason;
    }
  };
const ErrorEventOf: new (type: string, init: { error: unknown }) => ErrorEvent =
  globalThis.ErrorEvent ??
  class extends Event {
    readonly error: unknown;
    readonly message: string;
    constructor(type: string, init: { error: unknown }) {
      super(type);
      this.error = init.error;
      this.message = String((init.error as Error | undefined)?.message ?? '');
    }
  };

/** A message's data as `@hono/node-server` hands it over: text as a string, binary as an `ArrayBuffer`. */
const received = (data: RawData, isBinary: boolean): string | ArrayBuffer => {
  const bytes = Array.isArray(data) ? Buffer.concat(data) : data;
  if (!isBinary) return Buffer.isBuffer(bytes) ? bytes.toString('utf8') : Buffer.from(bytes).toString('utf8');
  if (bytes instanceof ArrayBuffer) return bytes;
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
};

/**
 * The `open` event every socket's `onOpen` is given: one for all, as nothing dispatches it (an
 * `Event` per connect is a measurable part of a handshake's cost).
 */
const OPEN = new Event('open');

/**
 * Hands a `ws` socket's events to the route's. Every call is contained as `@hono/node-server`
 * contains it (the options' `onError`, else `console.error`). One object per socket holds the
 * events, the context and the options, nothing of the request; its listeners are the three
 * closures `ws` needs.
 */
class Relay {
  constructor(
    readonly events: WSEvents<WebSocket>,
    readonly context: WSContext<WebSocket>,
    readonly options: UpgradeWebSocketOptions | undefined,
  ) {}
  failed(error: unknown): void {
    (this.options?.onError ?? console.error)(error);
  }
  open(): void {
    try {
      this.events.onOpen?.(OPEN, this.context);
    } catch (error) {
      this.failed(error);
    }
  }
  message(data: RawData, isBinary: boolean): void {
    try {
      this.events.onMessage?.(new MessageEvent('message', { data: received(data, isBinary) }), this.context);
    } catch (error) {
      this.failed(error);
    }
  }
  close(code: number, reason: Buffer): void {
    try {
      this.events.onClose?.(new CloseEventOf('close', { code, reason: reason.toString() }), this.context);
    } catch (error) {
      this.failed(error);
    }
  }
  error(error: Error): void {
    try {
      this.events.onError?.(new ErrorEventOf('error', { error }), this.context);
    } catch (failure) {
      this.failed(failure);
    }
  }
}

/** Opens the socket for the route's events: `onOpen` at once, then every event of `ws`. */
function open(ws: WebSocket, events: WSEvents<WebSocket>, options: UpgradeWebSocketOptions | undefined, href: string) {
  const relay = new Relay(events, new NodeContext(ws, href) as unknown as WSContext<WebSocket>, options);
  relay.open();
  ws.on('message', (data, isBinary) => relay.message(data, isBinary));
  ws.on('close', (code, reason) => relay.close(code, reason));
  ws.on('error', (error) => relay.error(error));
}

// The URL rules of `@hono/node-server`'s `buildUrl` (src/url.ts), so the app sees the same URL
// and a bad `Host` or request target gets the same 400 as on its path.
const VALID_TARGET = /^\/[!#$&-;=?-[\]_a-z~]*$/;
const DOT_SEGMENT = /\/\.\.?(?:[/?#]|$)/;
const VALID_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;

const checkTarget = (target: string): void => {
  const backslash = target.indexOf('\\');
  if (backslash !== -1) {
    const query = target.indexOf('?');
    if (query === -1 || backslash < query) throw new RequestError('Backslash in request path');
  }
};

/** The request's URL, as `@hono/node-server` builds it; throws `RequestError` for a bad one. */
function requestUrl(incoming: IncomingMessage): string {
  const target = incoming.url ?? '/';
  if (target[0] !== '/' && (target.startsWith('http://') || target.startsWith('https://'))) {
    checkTarget(target);
    return new URL(target).href;
  }
  const host = incoming.headers.host ?? 'localhost';
  const url = `${(incoming.socket as TLSSocket).encrypted ? 'https' : 'http'}://${host}${target}`;
  if (!VALID_HOST.test(host)) {
    checkTarget(target);
    const parsed = new URL(url);
    const bare = (host.includes(':') ? host.replace(/:\d+$/, '') : host).toLowerCase();
    if (parsed.hostname.length !== host.length && parsed.hostname !== bare) {
      throw new RequestError('Invalid host header');
    }
    return parsed.href;
  }
  if (target.length === 0) return `${url}/`;
  if (target.charCodeAt(0) !== 47) throw new RequestError('Invalid URL');
  if (!VALID_TARGET.test(target) || DOT_SEGMENT.test(target)) {
    checkTarget(target);
    return new URL(url).href;
  }
  return url;
}

/**
 * Adds to `target`'s prototype every member of `source`'s prototype not listed in `own`, each
 * answered by the standard object `native()` returns: accessors read from it, methods called on it.
 */
function delegate(target: { prototype: object }, source: { prototype: object }, own: readonly string[]): void {
  for (const name of Object.getOwnPropertyNames(source.prototype)) {
    if (name === 'constructor' || own.includes(name)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(source.prototype, name) as PropertyDescriptor;
    Object.defineProperty(
      target.prototype,
      name,
      typeof descriptor.value === 'function'
        ? {
            configurable: true,
            writable: true,
            value(this: { native(): Record<string, (...args: unknown[]) => unknown> }, ...args: unknown[]) {
              const native = this.native();
              return (native[name] as (...args: unknown[]) => unknown).apply(native, args);
            },
          }
        : {
            configurable: true,
            get(this: { native(): Record<string, unknown> }) {
              return this.native()[name];
            },
          },
    );
  }
  const iterator = Object.getOwnPropertyDescriptor(source.prototype, Symbol.iterator);
  if (iterator && typeof iterator.value === 'function') {
    Object.defineProperty(target.prototype, Symbol.iterator, {
      configurable: true,
      writable: true,
      value(this: { native(): Iterable<unknown> }) {
        return this.native()[Symbol.iterator]();
      },
    });
  }
  Object.setPrototypeOf(target.prototype, source.prototype);
}

/**
 * An upgrade's request headers: `get` and `has` read Node's parsed headers (each name's first
 * value, as `@hono/node-server` copies them), anything else (`forEach`, `set`, ...) a standard
 * `Headers` with the same values, built on first use and read from then on. `instanceof Headers`
 * holds.
 */
class UpgradeHeaders {
  #fields: IncomingMessage['headers'];
  #native: Headers | undefined = undefined;
  constructor(fields: IncomingMessage['headers']) {
    this.#fields = fields;
  }
  get(name: string): string | null {
    if (this.#native !== undefined) return this.#native.get(name);
    const value = this.#fields[String(name).toLowerCase()];
    if (!value) return null;
    return Array.isArray(value) ? (value[0] as string) : value;
  }
  has(name: string): boolean {
    return this.get(name) !== null;
  }
  /** The standard `Headers` answering everything else. */
  native(): Headers {
    if (this.#native === undefined) {
      const headers = new Headers();
      const fields = this.#fields;
      for (const name in fields) {
        const value = fields[name];
        if (value) headers.append(name, Array.isArray(value) ? (value[0] as string) : value);
      }
      this.#native = headers;
    }
    return this.#native;
  }
}
delegate(UpgradeHeaders, Headers, ['get', 'has']);

/** The runtime's own `Request` (undici's), before `@hono/node-server` puts its subclass in its place. */
const NativeRequest = globalThis.Request;

/**
 * The `Request` the app sees for an upgrade: `url`, `method` and `headers` (a standard `Headers`
 * with `@hono/node-server`'s values: each name's first value) are its own, built when first
 * read; anything else (`signal`, `clone()`, `cache`, ...) is answered by a standard `Request`
 * with the same URL, method and headers, built then. WHY: Hono and the hub read only the three;
 * a standard `Request` (its `Headers`, `AbortSignal` and their bookkeeping for the collector)
 * was the largest allocation of a handshake. `instanceof Request` holds. Not supported:
 * `new Request(c.req.raw)` (the runtime's constructor takes only its own objects); pass
 * `c.req.raw.clone()` instead.
 */
class UpgradeRequest {
  #incoming: IncomingMessage;
  #headers: Headers | undefined = undefined;
  #native: Request | undefined = undefined;
  readonly url: string;
  constructor(incoming: IncomingMessage) {
    this.#incoming = incoming;
    this.url = requestUrl(incoming);
  }
  get method(): string {
    return this.#incoming.method ?? 'GET';
  }
  get headers(): Headers {
    this.#headers ??= new UpgradeHeaders(this.#incoming.headers) as unknown as Headers;
    return this.#headers;
  }
  /** The standard `Request` answering everything else. */
  native(): Request {
    const headers = (this.headers as unknown as UpgradeHeaders).native();
    this.#native ??= new NativeRequest(this.url, { method: this.method, headers });
    return this.#native;
  }
}

delegate(UpgradeRequest, NativeRequest, ['url', 'method', 'headers']);

/** Response headers never copied onto the `101` or a refusal (hop-by-hop, or the handshake's own). */
const SKIPPED = new Set([
  'connection',
  'content-length',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'sec-websocket-accept',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
]);

const headerLines = (headers: Headers | undefined): string[] => {
  const lines: string[] = [];
  headers?.forEach((value, name) => {
    if (!SKIPPED.has(name.toLowerCase())) lines.push(`${name}: ${value}`);
  });
  return lines;
};

/** A refused upgrade, as `@hono/node-server` answers it: status and headers, no body, closed. */
function refuse(socket: Socket, status: number, headers?: Headers): void {
  if (socket.destroyed) return;
  const lines = ['Connection: close', 'Content-Length: 0', ...headerLines(headers)];
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines.join('\r\n')}\r\n\r\n`);
}

const ignore = () => {};
/** A `headers` listener of `wss` adding `lines` to the `101`. */
const addLines = (lines: string[]) => (headers: string[]) => {
  headers.push(...lines);
};
const uncork = (socket: Socket) => socket.uncork();

/**
 * Answers one `Upgrade: websocket` request: the app decides; an accepted upgrade is completed
 * by `ws` on a corked socket, uncorked once what the open wrote first is in (next tick). No
 * promise when the app answers at once (the hub's route does, without `authorize`): a
 * reconnect storm runs this once per client.
 */
function answerUpgrade(
  fetch: (request: Request, env: UpgradeEnv) => Response | Promise<Response>,
  wss: WebSocketServer,
  incoming: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  // A client gone mid-way must not crash the process; `ws` takes the socket's errors once it is in.
  socket.on('error', ignore);
  let request: Request;
  try {
    request = new UpgradeRequest(incoming) as unknown as Request;
  } catch (error) {
    refuse(socket, error instanceof RequestError ? 400 : 500);
    return;
  }
  const slot: UpgradeSlot = { events: undefined, options: undefined };
  const env: UpgradeEnv = { incoming, outgoing: undefined, wss, [UPGRADE]: slot };
  const answered = (response: Response) => {
    // Nothing of the request is read after the answer (docs/runtimes.md, "Memory per connection").
    env.incoming = undefined;
    if (socket.destroyed) return;
    const { events, options } = slot;
    if (events === undefined || response.status !== 200) {
      refuse(socket, response.status, response.headers);
      return;
    }
    const extra = headerLines(response.headers);
    const addHeaders = extra.length > 0 ? addLines(extra) : undefined;
    if (addHeaders) wss.on('headers', addHeaders);
    socket.cork();
    try {
      wss.handleUpgrade(incoming, socket, head, (ws) => {
        socket.off('error', ignore);
        open(ws, events, options, request.url);
      });
    } finally {
      if (addHeaders) wss.off('headers', addHeaders);
      process.nextTick(uncork, socket);
    }
  };
  const failed = () => refuse(socket, 500);
  let response: Response | Promise<Response>;
  try {
    response = fetch(request, env);
  } catch {
    failed();
    return;
  }
  if (response instanceof Promise) {
    response.then(answered, failed).catch(() => socket.destroy());
    return;
  }
  answered(response);
}

/**
 * Feeds a request Node took for an upgrade back to the HTTP server as an ordinary one: the
 * header block is rebuilt from what the parser read (`rawHeaders` keep the client's bytes,
 * decoded as latin1), minus the hop-by-hop `Upgrade` and `Connection` headers, which is what
 * made Node treat it as an upgrade, so it cannot loop. `unshift` puts it, and any bytes read past
 * the headers (`head`, e.g. the start of a body), back in front of the socket's data, and
 * emitting the connection event (documented for injecting connections) gives the socket a fresh
 * HTTP parser. `Connection: close` because the client asked to leave HTTP/1.1 on this connection
 * and was refused: it gets one answer, then the socket is released.
 *
 * @param server The HTTP server.
 * @param req The request.
 * @param socket Its socket.
 * @param head Bytes read past its headers.
 */
export function serveAsPlainHttp(
  server: { emit(event: 'connection' | 'secureConnection', socket: Socket): boolean },
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  let block = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name !== 'upgrade' && name !== 'connection') block += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  block += 'Connection: close\r\n\r\n';
  socket.unshift(head.length > 0 ? Buffer.concat([Buffer.from(block, 'latin1'), head]) : Buffer.from(block, 'latin1'));
  // HTTPS servers run the HTTP connection listener on 'secureConnection' (the TLS socket).
  server.emit(socket instanceof TLSSocket ? 'secureConnection' : 'connection', socket);
}

/**
 * Installs this path on `server`: every `Upgrade: websocket` request is answered by `fetch`
 * and completed by `wss` (which must be `noServer`); every other request on the upgrade path is
 * served as plain HTTP (`serveAsPlainHttp`). A failure mid-way destroys the socket, never the
 * process. `wss` is closed with the server.
 *
 * @param server The HTTP server, with no other `upgrade` listener.
 * @param fetch The app's `fetch` (with `serveNode`'s wrapping), given `@hono/node-server`'s `env`.
 * @param wss The `ws` server sockets are upgraded into.
 */
export function handleUpgrades(
  server: Server,
  fetch: (
    request: Request,
    env: { incoming: IncomingMessage | undefined; outgoing: undefined },
  ) => Response | Promise<Response>,
  wss: WebSocketServer,
): void {
  server.on('upgrade', (incoming: IncomingMessage, socket: Socket, head: Buffer) => {
    if (socket.destroyed) return;
    if (incoming.headers.upgrade?.toLowerCase() !== 'websocket') {
      serveAsPlainHttp(server, incoming, socket, head);
      return;
    }
    try {
      answerUpgrade(fetch, wss, incoming, socket, head);
    } catch {
      socket.destroy();
    }
  });
  server.on('close', () => wss.close());
}
