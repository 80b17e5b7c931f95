/**
 * `npm run start:bun`: the demo on Bun. Same settings, output and shutdown as `node.ts`
 * (Bun implements `process.env` and `process.on` for signals).
 */
import { routesOptions, serveBun, upgradeWebSocket } from '../../adapters/bun.ts';
import { createDemo, readSettings, useRedisIfConfigured } from './app.ts';

const settings = await useRedisIfConfigured(readSettings(process.env));
const demo = createDemo(settings, (hub) => hub.routes(upgradeWebSocket, routesOptions));
const server = await serveBun({ fetch: demo.app.fetch, hub: demo.hub, port: settings.port, hostname: settings.host });
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
