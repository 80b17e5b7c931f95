/**
 * Bench server: the plugin on Node (`serveNode`), batching per `BENCH_BATCH_MS`.
 */
import { Hono } from 'hono';
import { serveNode, upgradeWebSocket } from '../../adapters/node.ts';
import { createAgentHub } from '../../plugin/index.ts';
import { mountBare, settings, startControl, TASK_FIELDS } from './common.ts';

const hub = createAgentHub({
  batchInterval: settings.batchMs,
  heartbeatInterval: settings.heartbeatMs,
  logger: false,
  ingest: true,
});
const app = new Hono();
app.route('/agents', hub.routes(upgradeWebSocket));
mountBare(app);
const server = await serveNode({ fetch: app.fetch, hub, port: 0 });
startControl(server.port, (agent, message) => {
  void hub.publishTask(agent, { ...TASK_FIELDS, message });
});
