/**
 * Scenario 5, HTTP (servers running the hub): the hub's stats and ingest routes against bare
 * Hono routes on the same server (bench/servers/common.ts `mountBare`), with autocannon.
 *
 * @module
 */
import type { CpuWindow } from '../proc.ts';
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { type Context, log } from './context.ts';

interface HttpResult {
  cpu: CpuWindow;
  rps: number;
  cpuUs: number;
  total: number;
  non2xx: number;
  errors: number;
  p50: number;
}

/** Runs on the server the load generator is attached to. */
export async function httpScenario(ctx: Context, repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const { http } = ctx.options.params;
  const body = JSON.stringify({ type: 'task_update', task_id: 'task-1', status: 'running', progress: 50 });
  const routes = [
    { key: 'http.stats', path: '/agents/ws/stats', method: 'GET' },
    { key: 'http.bareStats', path: '/bare-stats', method: 'GET' },
    { key: 'http.ingest', path: '/agents/bench-http/updates', method: 'POST', body },
    { key: 'http.bareIngest', path: '/bare/bench-http/updates', method: 'POST', body },
  ];
  // Alternate the order per repeat so neither side always runs first.
  const order = repeat % 2 ? routes : [routes[1], routes[0], routes[3], routes[2]];
  for (const route of order as typeof routes) {
    const spec = { path: route.path, method: route.method, body: route.body, connections: http.connections };
    if ('warmupMs' in http) await ctx.load({ op: 'http', spec: { ...spec, durationMs: http.warmupMs } });
    const result = await ctx.recorder.measured(repeat, def.name, route.key, async () => {
      const r = await ctx.load<HttpResult>({
        op: 'http',
        spec: { ...spec, ...('amount' in http ? { amount: http.amount } : { durationMs: http.durationMs }) },
      });
      if (r.non2xx > 0 || r.errors > 0 || r.total === 0) {
        ctx.recorder.fail(`${def.name} ${route.key}: ${r.non2xx} non-2xx answers, ${r.errors} errors of ${r.total}`);
      }
      return r;
    });
    sample[`${route.key}.rps`] = result.rps;
    sample[`${route.key}.cpuUs`] = result.cpuUs;
    log(`  ${def.name} ${route.key}: ${Math.round(result.rps)} req/s, ${result.cpuUs.toFixed(1)} µs/req`);
  }
}
