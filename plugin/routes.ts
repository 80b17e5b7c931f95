import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { UpgradeWebSocket, WSContext, WSEvents } from 'hono/ws';
import * as v from 'valibot';
import type { LogEntry } from './logger.ts';
import type { ResolvedHubOptions } from './options.ts';
import { AgentIdSchema, IngestBodySchema, type IngestItem } from './schemas.ts';
import type { ErrorKind, HubStats } from './stats.ts';

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
   * The runtime's own pub/sub (Bun's topics): the hub subscribes each socket to its agent's
   * topic and fans a frame out with one `publish` instead of one write per socket. Counters and
   * the slow-consumer check stay per socket.
   */
  topics?: TopicFanOut;
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
  readonly connect: (agentId: string, binding: SocketBinding) => WSEvents;
  readonly countError: (kind: ErrorKind) => void;
  readonly log: (
    level: LogEntry['level'],
    event: LogEntry['event'],
    details: Omit<LogEntry, 'level' | 'event' | 'time'>,
  ) => void;
  /** Own figures, plus `cluster` when the broker spans several instances (hence async). */
  readonly stats: () => Promise<HubStats>;
  readonly publishIngest: (agentId: string, items: readonly IngestItem[]) => Promise<unknown>;
  readonly authorize: ((agentId: string, c: Context) => boolean | Promise<boolean>) | undefined;
}

/** Reads the standard `bufferedAmount` of the raw socket. */
const standardBufferedAmount = (socket: WSContext): number =>
  (socket.raw as { bufferedAmount?: number } | undefined)?.bufferedAmount ?? 0;

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
    prepare: options.prepareFrame ?? ((frame) => frame),
    send: options.sendFrame ?? ((socket, frame) => socket.send(frame as string)),
    topics: options.topics,
  };
  const app = new Hono();

  const refuse = (
    c: Context,
    kind: ErrorKind,
    status: 400 | 401 | 403 | 413 | 415 | 426 | 503,
    error: string,
    message: string,
    agentId?: string,
  ) => {
    hub.countError(kind);
    hub.log('warn', kind === 'ingest_rejected' ? 'ingest_rejected' : 'upgrade_rejected', {
      agent_id: agentId,
      status,
      error,
      path: c.req.path,
    });
    // Some servers drop the body of a refused upgrade (@hono/node-server sends the status and
    // headers only), so the error code travels in a header too.
    const headers: Record<string, string> = { 'X-Agent-WS-Error': error };
    if (status === 426) headers.Upgrade = 'websocket';
    return c.json({ error, message }, status, headers);
  };

  const parseAgentId = (c: Context): string | undefined => {
    const agentId = c.req.param('agent_id') ?? '';
    return v.is(AgentIdSchema, agentId) ? agentId : undefined;
  };
  const invalidAgentId = (c: Context, kind: ErrorKind) =>
    refuse(c, kind, 400, 'invalid_agent_id', 'agent_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -');

  app.get('/ws/stats', async (c) => c.json(await hub.stats()));

  // Built once: the agent id was validated by the handler below before the upgrade runs.
  const upgrade = upgradeWebSocket((c) => hub.connect(c.req.param('agent_id') as string, binding));

  app.get('/:agent_id/ws', async (c, next) => {
    const agentId = parseAgentId(c);
    if (agentId === undefined) return invalidAgentId(c, 'invalid_agent_id');
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      return refuse(c, 'upgrade_required', 426, 'upgrade_required', 'this endpoint speaks WebSocket only', agentId);
    }
    if (hub.isClosing()) return refuse(c, 'unavailable', 503, 'unavailable', 'the server is shutting down', agentId);
    if (hub.authorize) {
      let allowed: boolean;
      try {
        allowed = await hub.authorize(agentId, c);
      } catch (error) {
        hub.log('warn', 'hook_error', { agent_id: agentId, hook: 'authorize', error: String(error) });
        return refuse(c, 'unauthorized', 401, 'unauthorized', 'authentication failed', agentId);
      }
      if (allowed !== true) return refuse(c, 'forbidden', 403, 'forbidden', 'not allowed to watch this agent', agentId);
    }
    const response = await upgrade(c, next);
    return response ?? refuse(c, 'upgrade_required', 426, 'upgrade_required', 'WebSocket upgrade failed', agentId);
  });

  const limitBody = bodyLimit({
    maxSize: hub.config.maxIngestBytes,
    onError: (c) =>
      refuse(c, 'ingest_rejected', 413, 'payload_too_large', `body larger than ${hub.config.maxIngestBytes} bytes`),
  });

  if (hub.config.ingest) {
    app.post(
      '/:agent_id/updates',
      async (c, next) => {
        // A declared length within the limit is enforced by the HTTP parser itself: no need
        // for bodyLimit's byte counting, which on Node wraps every body in a stream.
        const declared = c.req.header('content-length');
        const length = declared === undefined ? Number.NaN : Number(declared);
        if (c.req.header('transfer-encoding') === undefined && length <= hub.config.maxIngestBytes) return next();
        return limitBody(c, next);
      },
      async (c) => {
        const agentId = parseAgentId(c);
        if (agentId === undefined) return invalidAgentId(c, 'ingest_rejected');
        const contentType = c.req.header('content-type') ?? '';
        if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(contentType)) {
          return refuse(
            c,
            'ingest_rejected',
            415,
            'unsupported_media_type',
            'send Content-Type: application/json',
            agentId,
          );
        }
        let body: unknown;
        try {
          body = await c.req.json();
        } catch {
          return refuse(c, 'ingest_rejected', 400, 'invalid_json', 'body is not valid JSON', agentId);
        }
        const parsed = v.safeParse(IngestBodySchema, body);
        if (!parsed.success) {
          hub.countError('ingest_rejected');
          hub.log('warn', 'ingest_rejected', { agent_id: agentId, status: 400, error: 'invalid_update' });
          const issues = parsed.issues.map((issue) => ({ path: v.getDotPath(issue), message: issue.message }));
          return c.json({ error: 'invalid_update', message: v.summarize(parsed.issues), issues }, 400);
        }
        if (hub.isClosing())
          return refuse(c, 'unavailable', 503, 'unavailable', 'the server is shutting down', agentId);
        const items = Array.isArray(parsed.output) ? parsed.output : [parsed.output];
        try {
          await hub.publishIngest(agentId, items);
        } catch {
          // The broker failure is already counted and logged by the hub.
          return c.json({ error: 'unavailable', message: 'could not publish; retry later' }, 503);
        }
        return c.json({ accepted: items.length }, 202);
      },
    );
  }

  return app;
}
