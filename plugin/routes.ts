import { Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import { createSocketBinding, type RoutesOptions } from './binding.ts';
import { mountAgentsRoute } from './route-agents.ts';
import { mountIngestRoute } from './route-ingest.ts';
import { createRouteKit, type HubInternals } from './route-kit.ts';
import { mountStatsRoutes } from './route-stats.ts';
import { mountWatchRoute } from './route-watch.ts';

export type { ResumePoint, RoutesOptions, RuntimeBinding, SocketBinding, TopicFanOut } from './binding.ts';
export { AGENT_ID } from './binding.ts';
export type { HubInternals } from './route-kit.ts';

/**
 * Builds the hub's Hono app: the routes of plugin/route-*.ts, one concern each, on one binding
 * of the runtime's sockets.
 *
 * @internal
 */
export function createRoutes(
  hub: HubInternals,
  upgradeWebSocket: UpgradeWebSocket<any, any>,
  options: RoutesOptions = {},
): Hono {
  const binding = createSocketBinding(options);
  const app = new Hono();
  const kit = createRouteKit(hub);
  mountStatsRoutes(app, kit);
  mountAgentsRoute(app, kit);
  mountWatchRoute(app, kit, upgradeWebSocket, binding);
  if (hub.config.ingest) mountIngestRoute(app, kit);
  return app;
}
