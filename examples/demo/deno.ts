/**
 * `npm run start:deno`: the demo on Deno.
 */
import { deno, serveDeno } from '../../adapters/deno.ts';
import { runDemo } from './app.ts';

await runDemo({
  env: Deno.env.toObject(),
  mount: (hub) => hub.routes(deno),
  serve: serveDeno,
  onSignal: (signal, handler) => Deno.addSignalListener(signal, handler),
  exit: (code) => Deno.exit(code),
});
