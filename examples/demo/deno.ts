/**
 * `npm run start:deno`: the demo on Deno. Same settings, output and shutdown as `node.ts`.
 */
import { serveDeno, upgradeWebSocket } from '../../adapters/deno.ts';
import { createDemo, readSettings, useRedisIfConfigured } from './app.ts';

const settings = await useRedisIfConfigured(readSettings(Deno.env.toObject()));
const demo = createDemo(settings, (hub) => hub.routes(upgradeWebSocket));
const server = await serveDeno({ fetch: demo.app.fetch, hub: demo.hub, port: settings.port, hostname: settings.host });
console.log(`listening on http://${settings.host}:${server.port}`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  demo.stop();
  await server.close();
  Deno.exit(0);
};
Deno.addSignalListener('SIGINT', shutdown);
Deno.addSignalListener('SIGTERM', shutdown);
