import type { Context, MiddlewareHandler, Next } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { WSEvents } from 'hono/ws';
import { AGENT_ID, type ResumePoint, type SocketBinding } from './binding.ts';
import type { Log } from './core.ts';
import type { MetricFamily } from './metrics.ts';
import type { AuthorizeHook, HubAction, ResolvedHubOptions } from './options.ts';
import type { HttpErrorCode, IngestItem, UnsequencedUpdate } from './schemas.ts';
import type { AgentsPage, ErrorKind, HubStats } from './stats.ts';

/**
 * The first path segment of the hub-wide routes: `/ws/stats`, `/ws/metrics`, `/ws/agents`.
 *
 * @internal
 */
export const HUB_WIDE = 'ws';

/**
 * A hub-wide route (`/ws/<name>`), to be registered as `/:agent_id/<name>`: it answers when the
 * first segment is `ws` and hands any other request on to the next matching route.
 *
 * WHY: a static `/ws/stats` beside `/:agent_id/ws` is a route table Hono's RegExpRouter cannot
 * hold, so the default SmartRouter falls back to TrieRouter for the whole app the hub is mounted
 * in: slower on every request, and it allocated about 1 KB more per match (a reconnect storm
 * pays that once per client). Every route of the hub now starts with the same parameter.
 *
 * @internal
 */
export const hubWide =
  (handler: (c: Context) => Response | Promise<Response>): MiddlewareHandler =>
  async (c, next) =>
    c.req.param('agent_id') === HUB_WIDE ? handler(c) : next();

/**
 * The route of an empty agent id (`//<leaf>`, which no `:agent_id` matches), registered as
 * `//*`: RegExpRouter cannot hold a static `//ws` beside `/:agent_id/ws` either, but takes a
 * wildcard there, which matches only paths whose first segment is empty. It answers exactly
 * `<mount>//<leaf>` with `handler` (the route's own, which refuses the id with 400
 * `invalid_agent_id`); anything else goes on to the next matching route.
 *
 * @internal
 */
export const emptyAgentId =
  (leaf: string, handler: (c: Context, next: Next) => Response | Promise<Response | undefined>): MiddlewareHandler =>
  async (c, next) => {
    const path = c.req.path;
    // `<mount>//*` and `<mount>//<leaf>` have as many segments, whatever the mount path holds.
    const exact = path.endsWith(`//${leaf}`) && path.split('/').length === c.req.routePath.split('/').length;
    return exact ? handler(c, next) : next();
  };

/**
 * What the routes need from the hub.
 *
 * @internal
 */
export interface HubInternals {
  readonly config: ResolvedHubOptions;
  readonly isClosing: () => boolean;
  readonly connect: (agentId: string, binding: SocketBinding, resume: ResumePoint | undefined) => WSEvents;
  /** Counts an error; `c` is the request that caused it (a hub without shared memory, as on Workers, needs its env). */
  readonly countError: (kind: ErrorKind, c?: Context) => void;
  /** A failure contained in the hub: counted and logged; `c` as for `countError`. */
  readonly internalError: (operation: string, error: unknown, agentId?: string, c?: Context) => void;
  readonly log: Log;
  /**
   * Own figures, plus `cluster` when the broker spans several instances (hence async). The
   * methods below get the request, which a hub whose state lives elsewhere (Workers: in Durable
   * Objects reached through `c.env`) needs; the hub in a process ignores it.
   */
  readonly stats: (c: Context) => Promise<HubStats>;
  /** The stats and histograms as metric families. */
  readonly metrics: (c: Context) => Promise<MetricFamily[]>;
  /** A page of agents after `after` (an agent id); `next_cursor` is the raw last id. */
  readonly listAgents: (after: string | undefined, limit: number, maxTasks: number, c: Context) => Promise<AgentsPage>;
  /** Builds an update from validated fields; throws `InvalidUpdateError` for what cannot be sent. */
  readonly prepareUpdate: (agentId: string, item: IngestItem) => UnsequencedUpdate;
  readonly publish: (updates: readonly UnsequencedUpdate[], c: Context) => Promise<unknown>;
  readonly authorize: AuthorizeHook | undefined;
}

/**
 * What every route of one `routes()` mount shares: how a request is refused (counted, logged,
 * answered with the documented code in the body and the `X-Agent-WS-Error` header), how
 * `authorize` is asked, and how the agent id of the path is read.
 *
 * @internal
 */
export interface RouteKit {
  readonly hub: HubInternals;
  /** Counts `kind`, logs, and answers `status` with `{ error, message }`. */
  refuse(
    c: Context,
    kind: ErrorKind,
    status: 400 | 401 | 403 | 413 | 415 | 426 | 503 | (number & {}),
    error: HttpErrorCode,
    message: string,
    agentId?: string,
    extraHeaders?: Record<string, string>,
  ): Response;
  /**
   * Runs `authorize` for a request: `undefined` to proceed, else the refusal. `false` is 403, an
   * `HTTPException` its own status; any other error goes on to the app's `onError`.
   */
  guard(c: Context, action: HubAction, agentId: string | undefined): Promise<Response | undefined>;
  /** The path's agent id, or `undefined` when it is not one. */
  parseAgentId(c: Context): string | undefined;
  /** 400 `invalid_agent_id`, counted as `kind`. */
  invalidAgentId(c: Context, kind: ErrorKind): Response;
}

/**
 * Creates the kit of one `routes()` mount.
 *
 * @internal
 */
export function createRouteKit(hub: HubInternals): RouteKit {
  const refuse: RouteKit['refuse'] = (c, kind, status, error, message, agentId, extraHeaders) => {
    hub.countError(kind, c);
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

  /** The refusal an `authorize` hook chose by throwing an `HTTPException`. */
  const refuseThrown = (c: Context, exception: HTTPException, agentId: string | undefined) => {
    const status = exception.status;
    const kind: ErrorKind = status === 401 ? 'unauthorized' : 'forbidden';
    const headers: Record<string, string> = {};
    exception.getResponse().headers.forEach((value, name) => {
      if (name.toLowerCase() !== 'content-type' && name.toLowerCase() !== 'content-length') headers[name] = value;
    });
    const code: HttpErrorCode = status === 401 ? 'unauthorized' : 'forbidden';
    return refuse(c, kind, status, code, exception.message || code, agentId, headers);
  };

  const guard: RouteKit['guard'] = async (c, action, agentId) => {
    if (!hub.authorize) return undefined;
    let allowed: boolean;
    try {
      allowed = await hub.authorize(agentId, c, action);
    } catch (error) {
      if (error instanceof HTTPException) return refuseThrown(c, error, agentId);
      hub.internalError('authorize', error, agentId, c);
      throw error;
    }
    if (allowed === true) return undefined;
    return refuse(c, 'forbidden', 403, 'forbidden', `not allowed to ${action} here`, agentId);
  };

  return {
    hub,
    refuse,
    guard,
    parseAgentId(c) {
      const agentId = c.req.param('agent_id') ?? '';
      // AgentIdSchema's rule without a valibot pipeline per request (plugin/routes.test.ts keeps them equal).
      return AGENT_ID.test(agentId) ? agentId : undefined;
    },
    invalidAgentId: (c, kind) =>
      refuse(c, kind, 400, 'invalid_agent_id', 'agent_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -'),
  };
}
