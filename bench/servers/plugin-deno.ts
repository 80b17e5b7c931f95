/**
 * Bench server: the plugin on Deno (`adapters/deno.ts`: `hono/deno` + `Deno.serve`), batching
 * per `BENCH_BATCH_MS`.
 */
import { serveDeno, upgradeWebSocket } from '../../adapters/deno.ts';
import { startPluginServer } from './common.ts';

await startPluginServer((hub) => hub.routes(upgradeWebSocket), serveDeno);
