/**
 * Bench server: the plugin on Bun (`adapters/bun.ts`: `hono/bun` + `Bun.serve`), batching per
 * `BENCH_BATCH_MS`.
 */
import { routesOptions, serveBun, upgradeWebSocket } from '../../adapters/bun.ts';
import { startPluginServer } from './common.ts';

await startPluginServer((hub) => hub.routes(upgradeWebSocket, routesOptions), serveBun);
