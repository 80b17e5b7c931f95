/**
 * `npm start`: the demo on Node.
 */
import { node, serveNode } from '../../adapters/node.ts';
import { runDemo } from './app.ts';

await runDemo({
  env: process.env,
  mount: (hub) => hub.routes(node),
  serve: serveNode,
  onSignal: (signal, handler) => process.on(signal, handler),
  exit: (code) => process.exit(code),
});
