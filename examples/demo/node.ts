/**
 * `npm start`: the demo on Node.
 */
import { routesOptions, serveNode, upgradeWebSocket } from '../../adapters/node.ts';
import { runDemo } from './app.ts';

await runDemo({
  env: process.env,
  mount: (hub) => hub.routes(upgradeWebSocket, routesOptions),
  serve: serveNode,
  onSignal: (signal, handler) => process.on(signal, handler),
  exit: (code) => process.exit(code),
});
