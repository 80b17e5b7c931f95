import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { UpgradeWebSocket, WSContext, WSEvents } from 'hono/ws';
import * as v from 'valibot';
import { describeIssues, InvalidUpdateError, issuesAt } from './errors.ts';
import type { ResumePoint } from './hub.ts';
import type { LogEntry } from './logger.ts';
import { type MetricFamily, PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './metrics.ts';
import type { AuthorizeHook, HubAction, ResolvedHubOptions } from './options.ts';
import {
  AgentIdSchema,
  EpochSchema,
  type HttpErrorCode,
  IngestBodySchema,
  type IngestItem,
  type UnsequencedUpdate,
} from './schemas.ts';
import {
  AGENT_TASKS_DEFAULT,
  AGENT_TASKS_MAX,
  AGENTS_PAGE_DEFAULT,
  AGENTS_PAGE_MAX,
  type AgentsPage,
  type ErrorKind,
  type HubStats,
} from './stats.ts';

/**
 * Runtime details an adapter passes to `hub.routes`.
 */
export interface RoutesOptions {
  /**
   * Bytes waiting in a socket's send buffer. Default: the standard `raw.bufferedAmount`
   * (Node's `ws`, Deno); Bun's adapter reads `raw.getBufferedAmount()`.
   */
  bufferedAmount?: (socket: WSContext) => number;
  /**
   * Prepares a frame once for all the sockets it goes to (Node's adapter encodes it to bytes
   * once instead of once per socket). Give `sendFrame` with it. Default: the string itself.
   */
  prepareFrame?: (frame: string) => unknown;
  /** Writes a prepared frame to one socket as a text frame. Default: `socket.send(frame)`. */
  sendFrame?: (socket: WSContext, prepared: unknown) => void;
  /**
   * Whether a socket is still open: `false` from the moment a close frame was received or sent,
   * so the hub stops counting it and sends its updates elsewhere. Default: the live
   * `raw.readyState` (Node's `ws`, Deno, Bun), else the context's `readyState`.
   */
  isOpen?: (socket: WSContext) => boolean;
  /**
   * The runtime reports a socket's close (`onClose`) as soon as a close frame is read or sent,
   * not only once TCP is gone (Bun: uWebSockets answers a close frame and reports the close in
   * the same step). Then the hub trusts the close events and does not read each socket's state
   * before each frame. Default `false` (`ws` reports the close only once TCP is gone).
   */
  closeReported?: boolean;
  /**
   * The runtime's own pub/sub (Bun's topics): the hub subscribes each socket to its agent's
   * topic and fans a frame out with one `publish` instead of one write per socket. Counters and
   * the slow-consumer check stay per socket.
   */
  topics?: TopicFanOut;
}

/**
 * Everything a runtime needs to serve the hub's routes: its `upgradeWebSocket` and the details
 * an adapter knows about its sockets. The adapters export one each (`node`, `deno`, `bun`), so
 * `hub.routes(bun)` cannot forget a detail; on another Hono runtime, pass its `upgradeWebSocket`.
 */
export interface RuntimeBinding extends RoutesOptions {
  /** The runtime's `upgradeWebSocket` helper. */
  readonly upgradeWebSocket: UpgradeWebSocket<any, any>;
}

/**
 * A runtime's native pub/sub, as the hub uses it.
 */
export interface TopicFanOut {
  /** Subscribes a socket to a topic. */
  subscribe(socket: WSContext, topic: string): void;
  /** Unsubscribes a socket (the hub gave up on it; it may still be closing). */
  unsubscribe(socket: WSContext, topic: string): void;
  /** Writes a prepared frame to every socket subscribed to `topic`; `via` is one of them. */
  publish(via: WSContext, topic: string, prepared: unknown): void;
}

/**
 * How the hub writes to and measures the sockets of one `routes()` mount.
 *
 * @internal
 */
export interface SocketBinding {
  readonly bufferedAmount: (socket: WSContext) => number;
  readonly isOpen: (socket: WSContext) => boolean;
  readonly closeReported: boolean;
  readonly prepare: (frame: string) => unknown;
  readonly send: (socket: WSContext, prepared: unknown) => void;
  readonly topics: TopicFanOut | undefined;
}

/**
 * What the routes need from the hub.
 *
 * @internal
 */
export interface HubInternals {
  readonly config: ResolvedHubOptions;
  readonly isClosing: () => boolean;
  readonly connect: (agentId: string, binding: SocketBinding, resume: ResumePoint | undefined) => WSEvents;
  readonly countError: (kind: ErrorKind) => void;
  readonly internalError: (operation: string, error: unknown, agentId?: string) => void;
  readonly log: (
    level: LogEntry['level'],
    event: LogEntry['event'],
    details: Omit<LogEntry, 'level' | 'event' | 'time'>,
  ) => void;
  /** Own figures, plus `cluster` when the broker spans several instances (hence async). */
  readonly stats: () => Promise<HubStats>;
  /** The stats and histograms as metric families. */
  readonly metrics: () => Promise<MetricFamily[]>;
  /** A page of agents after `after` (an agent id); `next_cursor` is the raw last id. */
  readonly listAgents: (after: string | undefined, limit: number, maxTasks: number) => Promise<AgentsPage>;
  /** Builds an update from validated fields; throws `InvalidUpdateError` for what cannot be sent. */
  readonly prepareUpdate: (agentId: string, item: IngestItem) => UnsequencedUpdate;
  readonly publish: (updates: readonly UnsequencedUpdate[]) => Promise<unknown>;
  readonly authorize: AuthorizeHook | undefined;
}

/** The agents listing's cursor: the last agent id of a page, base64url, so clients treat it as opaque. */
const encodeCursor = (agentId: string): string =>
  btoa(`a:${agentId}`).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const decodeCursor = (cursor: string): string | undefined => {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return undefined;
  let text: string;
  try {
    text = atob(cursor.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return undefined;
  }
  const agentId = text.slice(2);
  return text.startsWith('a:') && v.is(AgentIdSchema, agentId) ? agentId : undefined;
};

/** A whole number from `min` to `max` in a query parameter; above `max` is `max`; `undefined` if malformed. */
const wholeQuery = (text: string | undefined, fallback: number, min: number, max: number): number | undefined => {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text)) return undefined;
  const value = Number(text);
  return value < min ? undefined : Math.min(value, max);
};

/** Reads the standard `bufferedAmount` of the raw socket. */
const standardBufferedAmount = (socket: WSContext): number =>
  (socket.raw as { bufferedAmount?: number } | undefined)?.bufferedAmount ?? 0;

/**
 * Reads the raw socket's live `readyState` (1 = OPEN): Bun hands a context whose own
 * `readyState` never changes, the raw sockets of `ws`, Deno and Bun all keep theirs current.
 */
const standardIsOpen = (socket: WSContext): boolean =>
  ((socket.raw as { readyState?: number } | undefined)?.readyState ?? socket.readyState) === 1;

/** What `AgentIdSchema` accepts: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`. */
export const AGENT_ID: RegExp = /^[A-Za-z0-9._:-]{1,128}$/;

/** `application/json` or `application/*+json`, with no charset or UTF-8 (RFC 8259 §8.1). */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;
const JSON_ANY_CHARSET = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Whether a browser origin may open a WebSocket: its host equals the request's `Host` (the
 * server's own pages), or it is listed. `Origin: null` (sandboxed frames, files) only if listed.
 */
const originAllowed = (origin: string, host: string | undefined, allowed: readonly string[] | '*'): boolean => {
  if (allowed === '*' || allowed.includes(origin)) return true;
  if (origin === 'null' || host === undefined) return false;
  try {
    return new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
};

/**
 * Builds the hub's Hono app.
 *
 * @internal
 */
export function createRoutes(
  hub: HubInternals,
  upgradeWebSocket: UpgradeWebSocket<any, any>,
  options: RoutesOptions = {},
): Hono {
  if ((options.prepareFrame === undefined) !== (options.sendFrame === undefined)) {
    throw new TypeError('hub.routes: give prepareFrame and sendFrame together');
  }
  const binding: SocketBinding = {
    bufferedAmount: options.bufferedAmount ?? standardBufferedAmount,
    isOpen: options.isOpen ?? standardIsOpen,
    closeReported: options.closeReported === true,
    prepare: options.prepareFrame ?? ((frame) => frame),
    send: options.sendFrame ?? ((socket, frame) => socket.send(frame as string)),
    topics: options.topics,
  };
  const app = new Hono();
  const { config } = hub;

  const refuse = (
    c: Context,
    kind: ErrorKind,
    status: 400 | 401 | 403 | 413 | 415 | 426 | 503 | (number & {}),
    error: HttpErrorCode,
    message: string,
    agentId?: string,
    extraHeaders?: Record<string, string>,
  ) => {
    hub.countError(kind);
    const event =
      kind === 'ingest_rejected'
        ? 'ingest_rejected'
        : c.req.path.endsWith('/ws')
          ? 'upgrade_rejected'
          : 'request_rejected';
    hub.log('warn', event, {
      agent_id: agentId,
      status,
      error,
      path: c.req.path,
    });
    // Some servers drop the body of a refused upgrade (@hono/node-server sends the status and
    // headers only), so the error code travels in a header too.
    const headers: Record<string, string> = { ...extraHeaders, 'X-Agent-WS-Error': error };
    if (status === 426) headers.Upgrade = 'websocket';
    return c.json({ error, message }, status as 400, headers);
  };

  /**
   * Runs `authorize` for a request: `undefined` to proceed, else the refusal. `false` is 403, an
   * `HTTPException` its own status; any other error goes on to the app's `onError`.
   */
  const guard = async (c: Context, action: HubAction, agentId: string | undefined): Promise<Response | undefined> => {
    if (!hub.authorize) return undefined;
    let allowed: boolean;
    try {
      allowed = await hub.authorize(agentId, c, action);
    } catch (error) {
      if (error instanceof HTTPException) {
        const status = error.status;
        const kind: ErrorKind = status === 401 ? 'unauthorized' : 'forbidden';
        const headers: Record<string, string> = {};
        error.getResponse().headers.forEach((value, name) => {
          if (name.toLowerCase() !== 'content-type' && name.toLowerCase() !== 'content-length') headers[name] = value;
        });
        const code: HttpErrorCode = status === 401 ? 'unauthorized' : 'forbidden';
        return refuse(c, kind, status, code, error.message || code, agentId, headers);
      }
      hub.internalError('authorize', error, agentId);
      throw error;
    }
    if (allowed === true) return undefined;
    return refuse(c, 'forbidden', 403, 'forbidden', `not allowed to ${action} here`, agentId);
  };

  /** 400 with what is wrong; `index` is the item's place in a batch, where paths start. */
  const invalidUpdate = (c: Context, agentId: string, issues: readonly v.BaseIssue<unknown>[], index?: number) => {
    hub.countError('ingest_rejected');
    hub.log('warn', 'ingest_rejected', { agent_id: agentId, status: 400, error: 'invalid_update' });
    const list = issuesAt(issues, index);
    return c.json({ error: 'invalid_update', message: describeIssues(list), issues: list }, 400);
  };

  const parseAgentId = (c: Context): string | undefined => {
    const agentId = c.req.param('agent_id') ?? '';
    // AgentIdSchema's rule without a valibot pipeline per request (plugin/routes.test.ts keeps them equal).
    return AGENT_ID.test(agentId) ? agentId : undefined;
  };
  const invalidAgentId = (c: Context, kind: ErrorKind) =>
    refuse(c, kind, 400, 'invalid_agent_id', 'agent_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -');

  app.get('/ws/stats', async (c) => (await guard(c, 'stats', undefined)) ?? c.json(await hub.stats()));

  app.get('/ws/metrics', async (c) => {
    const refused = await guard(c, 'metrics', undefined);
    if (refused) return refused;
    return c.body(renderPrometheus(await hub.metrics()), 200, { 'Content-Type': PROMETHEUS_CONTENT_TYPE });
  });

  app.get('/ws/agents', async (c) => {
    const refused = await guard(c, 'agents', undefined);
    if (refused) return refused;
    const limit = wholeQuery(c.req.query('limit'), AGENTS_PAGE_DEFAULT, 1, AGENTS_PAGE_MAX);
    const tasks = wholeQuery(c.req.query('tasks'), AGENT_TASKS_DEFAULT, 0, AGENT_TASKS_MAX);
    const cursor = c.req.query('cursor');
    const after = cursor === undefined || cursor === '' ? undefined : decodeCursor(cursor);
    if (limit === undefined || tasks === undefined || (cursor && after === undefined)) {
      return refuse(
        c,
        'invalid_query',
        400,
        'invalid_query',
        `limit must be a whole number from 1 (at most ${AGENTS_PAGE_MAX} are listed), tasks one from 0 (at most ${AGENT_TASKS_MAX}), cursor a next_cursor of this route`,
      );
    }
    let page: AgentsPage;
    try {
      page = await hub.listAgents(after, limit, tasks);
    } catch {
      // The broker failure is already counted and logged by the hub.
      return c.json({ error: 'unavailable', message: 'could not list the agents; retry later' }, 503);
    }
    return c.json({
      agents: page.agents,
      next_cursor: page.next_cursor === null ? null : encodeCursor(page.next_cursor),
    } satisfies AgentsPage);
  });

  /**
   * The resume point of `?since=<seq>&epoch=<epoch>`: `undefined` without `since`, `null` when
   * malformed (both are needed, `since` a whole number).
   */
  const parseResume = (c: Context): ResumePoint | undefined | null => {
    const since = c.req.query('since');
    if (since === undefined) return undefined;
    const epoch = c.req.query('epoch') ?? '';
    if (!/^\d{1,15}$/.test(since) || !v.is(EpochSchema, epoch)) return null;
    return { since: Number(since), epoch };
  };

  // Built once: the agent id and resume point were validated by the handler below before the upgrade runs.
  const upgrade = upgradeWebSocket((c) =>
    hub.connect(c.req.param('agent_id') as string, binding, parseResume(c) ?? undefined),
  );

  const watch = async (c: Context, next: () => Promise<void>) => {
    const agentId = parseAgentId(c);
    if (agentId === undefined) return invalidAgentId(c, 'invalid_agent_id');
    // Cross-site WebSocket hijacking: a browser sends cookies and HTTP auth with any page's
    // upgrade, so a foreign page's request is refused before anything else looks at it.
    const origin = c.req.header('origin');
    if (origin !== undefined && !originAllowed(origin, c.req.header('host'), config.allowedOrigins)) {
      return refuse(
        c,
        'origin_forbidden',
        403,
        'origin_forbidden',
        `origin ${origin.slice(0, 200)} is not allowed`,
        agentId,
      );
    }
    if (parseResume(c) === null) {
      return refuse(
        c,
        'invalid_resume',
        400,
        'invalid_resume',
        'since must be a whole number and epoch 1 to 64 characters of A-Z a-z 0-9 _ -, given together',
        agentId,
      );
    }
    if (hub.isClosing()) return refuse(c, 'unavailable', 503, 'unavailable', 'the server is shutting down', agentId);
    const refused = await guard(c, 'watch', agentId);
    if (refused) return refused;
    // After authorize, so a client whose runtime hides a refused handshake's status (browsers)
    // learns 401/403 from a plain GET of the same URL.
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      return refuse(c, 'upgrade_required', 426, 'upgrade_required', 'this endpoint speaks WebSocket only', agentId);
    }
    const response = await upgrade(c, next);
    return response ?? refuse(c, 'upgrade_required', 426, 'upgrade_required', 'WebSocket upgrade failed', agentId);
  };
  app.get('/:agent_id/ws', watch);
  // An empty id matches no `:agent_id`; it gets the same 400 as any other bad id, not a 404.
  app.get('//ws', watch);

  const limitBody = bodyLimit({
    maxSize: config.maxIngestBytes,
    onError: (c) =>
      refuse(c, 'ingest_rejected', 413, 'payload_too_large', `body larger than ${config.maxIngestBytes} bytes`),
  });

  if (config.ingest) {
    const ingest = async (c: Context) => {
      const agentId = parseAgentId(c);
      if (agentId === undefined) return invalidAgentId(c, 'ingest_rejected');
      const refused = await guard(c, 'publish', agentId);
      if (refused) return refused;
      const contentType = c.req.header('content-type') ?? '';
      if (contentType !== 'application/json' && !JSON_MEDIA_TYPE.test(contentType)) {
        const message = JSON_ANY_CHARSET.test(contentType)
          ? 'JSON must be UTF-8: send no charset or charset=utf-8'
          : 'send Content-Type: application/json';
        return refuse(c, 'ingest_rejected', 415, 'unsupported_media_type', message, agentId);
      }
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return refuse(c, 'ingest_rejected', 400, 'invalid_json', 'body is not valid JSON', agentId);
      }
      const parsed = v.safeParse(IngestBodySchema, body);
      if (!parsed.success) return invalidUpdate(c, agentId, parsed.issues);
      const output = parsed.output;
      const batch = Array.isArray(output);
      const items = batch ? output : [output];
      const updates: UnsequencedUpdate[] = [];
      for (let index = 0; index < items.length; index++) {
        try {
          updates.push(hub.prepareUpdate(agentId, items[index] as IngestItem));
        } catch (error) {
          if (!(error instanceof InvalidUpdateError)) throw error;
          return invalidUpdate(c, agentId, error.issues, batch ? index : undefined);
        }
      }
      if (hub.isClosing()) return refuse(c, 'unavailable', 503, 'unavailable', 'the server is shutting down', agentId);
      try {
        await hub.publish(updates);
      } catch {
        // The broker failure is already counted and logged by the hub.
        return c.json({ error: 'unavailable', message: 'could not publish; retry later' }, 503);
      }
      return c.json({ accepted: updates.length }, 202);
    };
    // One handler per route: Hono calls a lone handler directly, without composing a chain.
    const limited = async (c: Context) => {
      // A declared length within the limit is enforced by the HTTP parser itself: no need
      // for bodyLimit's byte counting, which on Node wraps every body in a stream.
      const declared = c.req.header('content-length');
      const length = declared === undefined ? Number.NaN : Number(declared);
      if (length <= config.maxIngestBytes && c.req.header('transfer-encoding') === undefined) return ingest(c);
      let response: Response | undefined;
      const limitedResponse = await limitBody(c, async () => {
        response = await ingest(c);
      });
      return limitedResponse ?? (response as Response);
    };
    app.post('/:agent_id/updates', limited);
    app.post('//updates', limited);
  }

  return app;
}
