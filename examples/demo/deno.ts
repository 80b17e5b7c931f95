/**
 * `npm run start:deno`: the demo on Deno.
 */
import { serveDeno, upgradeWebSocket } from '../../adapters/deno.ts';
import { runDemo } from './app.ts';

await runDemo({
  env: Deno.env.toObject(),
  mount: (hub) => hub.routes(upgradeWebSocket),
  serve: serveDeno,
  onSignal: (signal, handler) => Deno.addSignalListener(signal, handler),
  exit: (code) => Deno.exit(code),
});
