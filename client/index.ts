/**
 * `hono-agent-ws/client`: watch one agent's channel from a browser, Node, Deno or Bun, with the
 * standard WebSocket API only. Batches are unpacked into their updates in order, pings are
 * answered, a silent connection is given up after 2 × `heartbeat_interval`, dropped connections
 * come back with exponential backoff and full jitter, and every reconnection resumes with
 * `?since=&epoch=` so no update is delivered twice. See docs/client.md.
 *
 * ```ts
 * import { connectAgent } from 'hono-agent-ws/client';
 * const client = connectAgent('wss://example.com/agents/agent-7/ws', { token });
 * client.on('task_update', (task) => console.log(task.task_id, task.progress));
 * ```
 *
 * @module
 */
import type {
  AgentUpdate,
  ErrorMessage,
  ServerMessage,
  Snapshot,
  StatusUpdate,
  TaskUpdate,
} from '../plugin/schemas.ts';
import {
  backoffDelay,
  LIVENESS_TIMEOUT,
  type ReconnectOptions,
  reconnectAfterClose,
  retryAfterStatus,
  statusFromError,
} from './policy.ts';

export type {
  AgentUpdate,
  ConnectionEstablished,
  ErrorMessage,
  ServerMessage,
  Snapshot,
  StatusUpdate,
  TaskUpdate,
} from '../plugin/schemas.ts';
export {
  backoffDelay,
  LIVENESS_TIMEOUT,
  type ReconnectOptions,
  reconnectAfterClose,
  retryAfterStatus,
  statusFromError,
} from './policy.ts';

/** Where the client is: `reconnecting` covers the wait and every attempt after the first connection or failure. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** How an update arrived: alone (`live`), or in a `batch_update` of that `source`. */
export type UpdateSource = 'live' | 'window' | 'queue' | 'resume';

/** What comes with every update. */
export interface UpdateMeta {
  readonly source: UpdateSource;
}

/** A connection is open: what its `connection_established` said. */
export interface OpenInfo {
  /** The server still held every update after the client's position: they follow, none missed. */
  readonly recovered: boolean;
  readonly epoch: string;
  /** The agent's `seq` this connection starts after. */
  readonly seq: number;
  readonly connectionId: string;
  /** Connections opened before this one by this client (0 for the first). */
  readonly reconnects: number;
  /** The server's heartbeat interval, ms (0: none, and no liveness timer). */
  readonly heartbeatInterval: number;
}

/** A connection ended (or an attempt failed). */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  readonly willReconnect: boolean;
  /** The wait before the next attempt, with `willReconnect`. */
  readonly delayMs?: number;
}

/**
 * Why the client stopped for good; the state then turns `closed`. A refused handshake carries
 * the HTTP `status` and the server's `X-Agent-WS-Error` `code` (`unauthorized`, `forbidden`,
 * `origin_forbidden`, `invalid_agent_id`, ...) whenever the server sent them: `ws` on Node hands
 * over the response; elsewhere (browsers, Deno, Bun) the client reads them with one `fetch` of
 * the same URL (`probe`), so without a probe `code`, and in a browser `status`, stay unknown.
 */
export type FatalError =
  | { readonly kind: 'handshake_refused'; readonly status?: number; readonly code?: string }
  | { readonly kind: 'retries_exhausted' };

/** The events and their handlers. */
export interface AgentClientEvents {
  state: (state: ConnectionState) => void;
  open: (info: OpenInfo) => void;
  snapshot: (snapshot: Snapshot) => void;
  update: (update: AgentUpdate, meta: UpdateMeta) => void;
  status_update: (update: StatusUpdate, meta: UpdateMeta) => void;
  task_update: (update: TaskUpdate, meta: UpdateMeta) => void;
  server_error: (frame: ErrorMessage) => void;
  close: (info: CloseInfo) => void;
  fatal: (error: FatalError) => void;
  /** A frame that was not JSON, or (with `validate`) broke the schema; it was dropped. */
  invalid_frame: (info: { readonly data: unknown; readonly reason: string }) => void;
}

/** What the client needs of a WebSocket: the standard API (browsers, Deno, Bun, Node 22+, `ws`). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor: the global one, or `ws`'s on Node 20. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Options of `connectAgent`. */
export interface ConnectOptions {
  /** Default: `globalThis.WebSocket`. On Node 20, pass the `ws` package's default export. */
  WebSocket?: WebSocketConstructor;
  /** Sent as `?token=` (browsers cannot set headers on a WebSocket). */
  token?: string;
  /** Subprotocols to offer (the server must select one, or browsers fail the handshake). */
  protocols?: string | string[];
  /** Check every frame against the server's valibot schemas (loads valibot lazily). Default false. */
  validate?: boolean;
  /** Backoff: full jitter over `initialDelayMs × 2^attempt`, capped at `maxDelayMs`, `maxRetries` failures in a row. */
  reconnect?: ReconnectOptions;
  /** Start from a known position: the first connection already resumes. */
  resume?: { epoch: string; seq: number };
  /** How long the handshake and `connection_established` may take, ms (default 10000). */
  connectTimeoutMs?: number;
  /**
   * After an attempt that failed before opening without saying why (browsers never expose the
   * HTTP status), `fetch` the same URL over http(s) once to read the status and the
   * `X-Agent-WS-Error` header: 401, 403, 400, 404 stop the client. Default: the global `fetch`;
   * `false` for none.
   */
  probe?: false | typeof fetch;
}

/** One client of one agent's channel. */
export interface AgentClient {
  readonly state: ConnectionState;
  /** The epoch of the last position (undefined before the first connection without `resume`). */
  readonly epoch: string | undefined;
  /** The last `seq` delivered or covered by a snapshot: where the next connection resumes. */
  readonly seq: number;
  /** The open connection's id. */
  readonly connectionId: string | undefined;
  /** Adds a handler; returns a function that removes it. */
  on<E extends keyof AgentClientEvents>(event: E, handler: AgentClientEvents[E]): () => void;
  off<E extends keyof AgentClientEvents>(event: E, handler: AgentClientEvents[E]): void;
  /** Every update from now on, in order; ends once the client is closed (after what it buffered). */
  updates(): AsyncIterableIterator<{ update: AgentUpdate; meta: UpdateMeta }>;
  /** Closes the connection and stops every timer; no event but `close` and `state` follows. */
  close(): void;
}

type Timer = ReturnType<typeof setTimeout>;
const noop = () => {};

/**
 * Opens a client of `url` (`ws(s)://host/agents/<id>/ws`); it keeps itself connected until
 * `close()` or a fatal refusal.
 *
 * The first attempt starts in a microtask, with a `state` event `connecting`: handlers attached
 * in the same turn as the call see every state from the first, and nothing is sent or received
 * before they are. (`client.state` is `connecting` from the start.)
 */
export function connectAgent(url: string, options: ConnectOptions = {}): AgentClient {
  const WS: WebSocketConstructor | undefined = options.WebSocket ?? (globalThis as any).WebSocket;
  if (!WS) throw new TypeError('connectAgent: no global WebSocket; pass one as options.WebSocket');
  const base = new URL(url);
  if (!/^wss?:$/.test(base.protocol)) throw new TypeError(`connectAgent: ${url} is not a ws: or wss: URL`);
  const probe = options.probe ?? (typeof fetch === 'function' ? fetch : false);
  const backoff = options.reconnect ?? {};
  const listeners: { [event: string]: Set<(...args: any[]) => void> | undefined } = {};
  const validator = options.validate ? import('./validate.ts') : undefined;

  let state: ConnectionState = 'connecting';
  let epoch = options.resume?.epoch;
  let seq = options.resume?.seq ?? 0;
  let connectionId: string | undefined;
  let socket: WebSocketLike | undefined;
  /** The one timer running at any time: handshake, liveness, probe or backoff. */
  let timer: Timer | undefined;
  let aborter: AbortController | undefined;
  /** Attempts in a row that failed before `connection_established`. */
  let failures = 0;
  let opened = 0;

  const emit = <E extends keyof AgentClientEvents>(event: E, ...args: Parameters<AgentClientEvents[E]>) => {
    for (const handler of [...(listeners[event] ?? [])]) {
      try {
        handler(...args);
      } catch (error) {
        // A handler's bug is reported like an event listener's, without stopping the client.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  };
  const setState = (next: ConnectionState) => {
    if (state !== next) {
      state = next;
      emit('state', next);
    }
  };
  const arm = (ms: number, then: () => void) => {
    clearTimeout(timer);
    timer = setTimeout(then, ms);
  };
  /** Forgets the socket: its late events change nothing. `terminate` (ws) skips a dead peer's close wait. */
  const detach = (ws: WebSocketLike | undefined, code?: number) => {
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = noop;
    if (socket === ws) socket = undefined;
    try {
      if (code === undefined) ws.close(1000);
      else {
        const { terminate } = ws as { terminate?: () => void };
        terminate ? terminate.call(ws) : ws.close(code);
      }
    } catch {}
  };
  const shutdown = () => {
    clearTimeout(timer);
    aborter?.abort();
    detach(socket);
    setState('closed');
  };
  const fatal = (error: FatalError) => {
    emit('fatal', error);
    shutdown();
  };

  const connect = async () => {
    const validate = validator && (await validator).validateServerMessage;
    if (state === 'closed') return;
    const target = new URL(base);
    if (options.token !== undefined) target.searchParams.set('token', options.token);
    // Only a connection without `since` can be handed the offline queue (see `deliver`).
    const fresh = epoch === undefined;
    if (!fresh) {
      target.searchParams.set('since', String(seq));
      target.searchParams.set('epoch', epoch!);
    }
    let ws: WebSocketLike;
    try {
      ws = new WS(target.href, options.protocols);
    } catch (error) {
      return ended(1006, String(error), false, undefined, target.href);
    }
    socket = ws;
    let hello = false;
    /** The server's heartbeat_interval, once known. */
    let interval = 0;
    let errorMessage: unknown;
    /** The refusal `ws` handed over with its response (other WebSockets hide the response). */
    let refused: Refusal | undefined;
    const giveUp = (reason: string) => {
      detach(ws, LIVENESS_TIMEOUT);
      ended(LIVENESS_TIMEOUT, reason, hello, undefined, target.href);
    };
    arm(options.connectTimeoutMs ?? 10_000, () => giveUp('no connection_established in time'));
    // `ws` (Node) emits the refused upgrade's response; a listener takes over aborting it.
    (ws as Partial<WsEvents>).on?.('unexpected-response', (_request, response) => {
      const code = [response.headers['x-agent-ws-error']].flat()[0];
      refused = { status: response.statusCode ?? 0, ...(code ? { code } : {}) };
      (ws as { terminate?: () => void }).terminate?.();
    });
    ws.onerror = (event) => {
      errorMessage = event?.message ?? event?.error?.message;
      // Some runtimes (Node 22's built-in WebSocket) report a refused handshake with an error
      // and never a close: end the attempt now rather than at the connect timeout.
      if (!hello && socket === ws) {
        socket = undefined;
        detach(ws, 1006);
        ended(1006, '', hello, refused ?? errorMessage, target.href);
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = undefined;
      ended(event?.code || 1006, event?.reason ?? '', hello, refused ?? errorMessage, target.href);
    };
    const deliver = (update: AgentUpdate, source: UpdateSource) => {
      if (socket !== ws) return;
      // Queue items are older than the connection's `seq` but new to a client that never saw
      // this agent; anything else already seen (same epoch, seq not past ours) is skipped.
      if (source !== 'queue' || !fresh) {
        if (update.epoch === epoch && update.seq <= seq) return;
        epoch = update.epoch;
        seq = update.seq;
      }
      emit('update', update, { source });
      emit(update.type as 'status_update', update as StatusUpdate, { source });
    };
    ws.onmessage = (event) => {
      const data = event?.data;
      if (socket !== ws || typeof data !== 'string') return;
      let frame: ServerMessage;
      try {
        frame = JSON.parse(data);
      } catch {
        return emit('invalid_frame', { data, reason: 'not JSON' });
      }
      if (validate) {
        const checked = validate(frame);
        if (!checked.ok) return emit('invalid_frame', { data, reason: checked.reason });
        frame = checked.frame;
      }
      switch (frame.type) {
        case 'connection_established': {
          hello = true;
          failures = 0;
          connectionId = frame.connection_id;
          interval = frame.heartbeat_interval;
          // Not recovered: the snapshot that follows is the truth, and the stream goes on after `seq`.
          if (!frame.recovered || frame.epoch !== epoch) {
            epoch = frame.epoch;
            seq = frame.seq;
          }
          setState('open');
          emit('open', {
            recovered: frame.recovered,
            epoch: frame.epoch,
            seq: frame.seq,
            connectionId: frame.connection_id,
            reconnects: opened++,
            heartbeatInterval: frame.heartbeat_interval,
          });
          break;
        }
        case 'snapshot':
          emit('snapshot', frame);
          break;
        case 'status_update':
        case 'task_update':
          deliver(frame, 'live');
          break;
        case 'batch_update':
          for (const entry of frame.updates) deliver(entry.content, frame.source);
          break;
        case 'ping':
          ws.send('{"type":"pong"}');
          break;
        case 'error':
          emit('server_error', frame);
      }
      // Any frame proves the connection alive; none within 2 × heartbeat_interval: give up on it.
      if (socket === ws && hello) {
        if (interval > 0) arm(2 * interval, () => giveUp('no frame within 2 × heartbeat_interval'));
        else clearTimeout(timer);
      }
    };
  };

  /**
   * A connection or attempt ended: stop, or wait and try again. `why` is what the runtime said
   * of a failed attempt: the refusal `ws` handed over, or an error message.
   */
  const ended = async (code: number, reason: string, hadHello: boolean, why: unknown, href: string) => {
    clearTimeout(timer);
    if (state === 'closed') return;
    if (!hadHello) {
      failures++;
      const known = isRefusal(why) ? why : undefined;
      let status = known ? known.status : statusFromError(why);
      let errorCode = known?.code;
      // The standard API hides a refused handshake's status, and always its error code: ask once
      // over plain HTTP when either is missing for a refusal that stops the client.
      if (errorCode === undefined && (status === undefined || !retryAfterStatus(status)) && probe) {
        const controller = new AbortController();
        aborter = controller;
        arm(5000, () => controller.abort());
        try {
          const response = await probe(href.replace(/^ws/, 'http'), {
            signal: controller.signal,
            credentials: 'include',
            cache: 'no-store',
          });
          // The code only if the probe met the same refusal as the attempt.
          if (status === undefined || status === response.status) {
            status = response.status;
            errorCode = response.headers.get('x-agent-ws-error') ?? undefined;
          }
          await response.body?.cancel();
        } catch {}
        clearTimeout(timer);
        if ((state as ConnectionState) === 'closed') return;
      }
      if (status !== undefined && !retryAfterStatus(status)) {
        emit('close', { code, reason, willReconnect: false });
        return fatal({ kind: 'handshake_refused', status, ...(errorCode ? { code: errorCode } : {}) });
      }
    }
    if (!reconnectAfterClose(code)) {
      emit('close', { code, reason, willReconnect: false });
      return shutdown();
    }
    if (failures >= (backoff.maxRetries ?? Number.POSITIVE_INFINITY)) {
      emit('close', { code, reason, willReconnect: false });
      return fatal({ kind: 'retries_exhausted' });
    }
    const delayMs = backoffDelay(failures, backoff);
    setState('reconnecting');
    emit('close', { code, reason, willReconnect: true, delayMs });
    if (state === 'reconnecting') arm(delayMs, connect);
  };

  const client: AgentClient = {
    get state() {
      return state;
    },
    get epoch() {
      return epoch;
    },
    get seq() {
      return seq;
    },
    get connectionId() {
      return socket ? connectionId : undefined;
    },
    on(event, handler) {
      let set = listeners[event];
      if (!set) listeners[event] = set = new Set();
      set.add(handler);
      return () => client.off(event, handler);
    },
    off(event, handler) {
      listeners[event]?.delete(handler);
    },
    updates() {
      const buffered: { update: AgentUpdate; meta: UpdateMeta }[] = [];
      let wake: () => void = noop;
      let done = state === 'closed';
      const offUpdate = client.on('update', (update, meta) => {
        buffered.push({ update, meta });
        wake();
      });
      const offState = client.on('state', (next) => {
        if (next === 'closed') stop();
      });
      const stop = () => {
        done = true;
        offUpdate();
        offState();
        wake();
      };
      const iterator: AsyncIterableIterator<{ update: AgentUpdate; meta: UpdateMeta }> = {
        [Symbol.asyncIterator]: () => iterator,
        async next() {
          while (buffered.length === 0 && !done) await new Promise<void>((resolve) => (wake = resolve));
          const value = buffered.shift();
          if (value) return { value, done: false };
          stop();
          return { value: undefined, done: true };
        },
        async return() {
          buffered.length = 0;
          stop();
          return { value: undefined, done: true };
        },
      };
      return iterator;
    },
    close() {
      if (state === 'closed') return;
      emit('close', { code: 1000, reason: 'client closed', willReconnect: false });
      shutdown();
    },
  };
  queueMicrotask(() => {
    if (state !== 'connecting') return;
    emit('state', 'connecting');
    connect();
  });
  return client;
}

/** A refused handshake as `ws` hands it over: the status and the error header. */
interface Refusal {
  readonly status: number;
  readonly code?: string;
}

/** Whether `value` is a `Refusal` (and not an error message). */
const isRefusal = (value: unknown): value is Refusal =>
  typeof value === 'object' && value !== null && typeof (value as { status?: unknown }).status === 'number';

/** The part of `ws`'s WebSocket that reports a refused upgrade (Node's `http.IncomingMessage`, reduced). */
interface WsEvents {
  on(
    event: 'unexpected-response',
    listener: (
      request: unknown,
      response: { statusCode?: number; headers: Record<string, string | string[] | undefined> },
    ) => void,
  ): unknown;
}
