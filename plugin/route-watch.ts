import type { Context, Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import type { ResumePoint, SocketBinding } from './binding.ts';
import { emptyAgentId, type RouteKit } from './route-kit.ts';
import { EPOCH } from './schemas.ts';

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
 * The resume point of `?since=<seq>&epoch=<epoch>`: `undefined` without `since`, `null` when
 * malformed (both are needed, `since` a whole number).
 */
const parseResume = (c: Context): ResumePoint | undefined | null => {
  const since = c.req.query('since');
  if (since === undefined) return undefined;
  const epoch = c.req.query('epoch') ?? '';
  if (!/^\d{1,15}$/.test(since) || !EPOCH.test(epoch)) return null;
  return { since: Number(since), epoch };
};

/**
 * Mounts `GET /:agent_id/ws`: the checks a watcher passes (agent id, origin, resume point,
 * `authorize`, a WebSocket request), then the upgrade, whose listeners are the hub's
 * (plugin/sockets.ts).
 *
 * @internal
 */
export function mountWatchRoute(
  app: Hono,
  kit: RouteKit,
  upgradeWebSocket: UpgradeWebSocket<any, any>,
  binding: SocketBinding,
): void {
  const { hub, refuse, guard } = kit;
  /** Each request's resume point, read once by the handler below and handed to the upgrade. */
  const resumes = new WeakMap<Context, ResumePoint>();
  // Built once: the agent id and resume point were validated by the handler below before the upgrade runs.
  const upgrade = upgradeWebSocket((c) => hub.connect(c.req.param('agent_id') as string, binding, resumes.get(c)));

  /**
   * The upgrade, or 426. Runs after `authorize`, so a client whose runtime hides a refused
   * handshake's status (browsers) learns 401/403 from a plain GET of the same URL.
   */
  const upgradeOrRefuse = (c: Context, next: () => Promise<void>, agentId: string): Response | Promise<Response> => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      return refuse(c, 'upgrade_required', 426, 'upgrade_required', 'this endpoint speaks WebSocket only', agentId);
    }
    const failed = () => refuse(c, 'upgrade_required', 426, 'upgrade_required', 'WebSocket upgrade failed', agentId);
    // Typed as a promise, but a runtime's helper may answer at once (adapters/node.ts does).
    const response: unknown = upgrade(c, next);
    if (response instanceof Promise) return response.then((answer: Response | undefined) => answer ?? failed());
    return (response as Response | undefined) ?? failed();
  };

  const watch = (c: Context, next: () => Promise<void>): Response | Promise<Response> => {
    const agentId = kit.parseAgentId(c);
    if (agentId === undefined) return kit.invalidAgentId(c, 'invalid_agent_id');
    // Cross-site WebSocket hijacking: a browser sends cookies and HTTP auth with any page's
    // upgrade, so a foreign page's request is refused before anything else looks at it.
    const origin = c.req.header('origin');
    if (origin !== undefined && !originAllowed(origin, c.req.header('host'), hub.config.allowedOrigins)) {
      return refuse(
        c,
        'origin_forbidden',
        403,
        'origin_forbidden',
        `origin ${origin.slice(0, 200)} is not allowed`,
        agentId,
      );
    }
    const resume = parseResume(c);
    if (resume === null) {
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
    if (resume) resumes.set(c, resume);
    // Without an `authorize` hook, no promise at all (nor in `upgrade` under `serveNode`): a
    // handshake's every promise and microtask counts in a reconnect storm.
    if (!hub.authorize) return upgradeOrRefuse(c, next, agentId);
    return guard(c, 'watch', agentId).then((refused) => refused ?? upgradeOrRefuse(c, next, agentId));
  };
  app.get('/:agent_id/ws', watch);
  // An empty id matches no `:agent_id`; it gets the same 400 as any other bad id, not a 404.
  app.get('//*', emptyAgentId('ws', watch));
}
