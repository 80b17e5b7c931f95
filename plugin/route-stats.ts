import type { Hono } from 'hono';
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './metrics.ts';
import { hubWide, type RouteKit } from './route-kit.ts';

/**
 * Mounts `GET /ws/stats` (the stats as JSON) and `GET /ws/metrics` (the Prometheus text), as
 * `hubWide` routes.
 *
 * @internal
 */
export function mountStatsRoutes(app: Hono, kit: RouteKit): void {
  const { hub, guard } = kit;
  app.get(
    '/:agent_id/stats',
    hubWide(async (c) => (await guard(c, 'stats', undefined)) ?? c.json(await hub.stats(c))),
  );

  app.get(
    '/:agent_id/metrics',
    hubWide(async (c) => {
      const refused = await guard(c, 'metrics', undefined);
      if (refused) return refused;
      return c.body(renderPrometheus(await hub.metrics(c)), 200, { 'Content-Type': PROMETHEUS_CONTENT_TYPE });
    }),
  );
}
