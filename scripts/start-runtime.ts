/**
 * Runs the project's Deno or Bun with its caches inside the project:
 *
 *   node --import tsx scripts/start-runtime.ts deno|bun           the demo server
 *   node --import tsx scripts/start-runtime.ts deno|bun ARGS...   any command, e.g. `deno check`
 *
 * SIGINT and SIGTERM are passed on, so the demo shuts down gracefully, and this process exits
 * with the runtime's code.
 */
import { spawn } from 'node:child_process';
import { DEMO_ARGS, ROOT, type RuntimeName, runtimeBinary, runtimeEnv } from './runtimes.ts';

const [name, ...args] = process.argv.slice(2);
if (name !== 'deno' && name !== 'bun') {
  console.error('usage: start-runtime.ts deno|bun [args...]');
  process.exit(2);
}
const runtime: RuntimeName = name;
const child = spawn(runtimeBinary(runtime), args.length > 0 ? args : DEMO_ARGS[runtime], {
  cwd: ROOT,
  env: { ...process.env, ...runtimeEnv() },
  stdio: 'inherit',
});
// Listening also keeps this process alive on Ctrl-C, which signals the child directly too.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('error', (error) => {
  console.error(`start-runtime: cannot run ${runtime}: ${error.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
