/**
 * Bench server: the plugin on Node (`serveNode`), batching per `BENCH_BATCH_MS`, history and
 * snapshots per `BENCH_HISTORY` (bench/servers/common.ts).
 */
import { routesOptions, serveNode, upgradeWebSocket } from '../../adapters/node.ts';
import { startPluginServer } from './common.ts';

await startPluginServer((hub) => hub.routes(upgradeWebSocket, routesOptions), serveNode);
