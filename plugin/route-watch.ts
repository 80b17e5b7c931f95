import type { Context, Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import type { ResumePoint, SocketBinding } from './binding.ts';
import type { RouteKit } from './route-kit.ts';
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
  // Built once: the agent id and resume point were validated by the handler below before the upgrade runs.
  const upgrade = upgradeWebSocket((c) =>
    hub.connect(c.req.param('agent_id') as string, binding, parseResume(c) ?? undefined),
  );

  const watch = async (c: Context, next: () => Promise<void>) => {
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
    // Without an `authorize` hook, no promise to wait for: a handshake's every microtask counts
    // in a reconnect storm.
    const refused = hub.authorize ? await guard(c, 'watch', agentId) : undefined;
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
}
