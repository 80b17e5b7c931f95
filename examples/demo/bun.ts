/**
 * `npm run start:bun`: the demo on Bun (Bun implements `process.env` and `process.on` for
 * signals).
 */
import { bun, serveBun } from '../../adapters/bun.ts';
import { runDemo } from './app.ts';

await runDemo({
  env: process.env,
  mount: (hub) => hub.routes(bun),
  serve: serveBun,
  onSignal: (signal, handler) => process.on(signal, handler),
  exit: (code) => process.exit(code),
});
