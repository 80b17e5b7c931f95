/**
 * `npm start`: the demo on Node.
 */
import { serveNode, upgradeWebSocket } from '../../adapters/node.ts';
import { createDemo, readSettings, useRedisIfConfigured } from './app.ts';

const settings = await useRedisIfConfigured(readSettings(process.env));
const demo = createDemo(settings, (hub) => hub.routes(upgradeWebSocket));
const server = await serveNode({ fetch: demo.app.fetch, hub: demo.hub, port: settings.port, hostname: settings.host });
console.log(`listening on http://${settings.host}:${server.port}`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  demo.stop();
  await server.close();
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
