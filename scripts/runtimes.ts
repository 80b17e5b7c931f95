/**
 * Where the project's Deno and Bun come from and how they run: the binaries the `deno` and `bun`
 * dev dependencies install, with every cache inside the project (`.cache/`, gitignored), so
 * nothing is downloaded or written outside it at run time.
 *
 * @module
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Project root. */
export const ROOT: string = fileURLToPath(new URL('../', import.meta.url));

/** The runtimes besides Node. */
export type RuntimeName = 'deno' | 'bun';

/**
 * The runtime's real executable. `node_modules/.bin/<name>` links to it once the package's
 * postinstall ran (package.json `allowScripts`); resolving the link spawns the runtime itself
 * rather than a Node wrapper, so signals sent to the child reach the runtime.
 */
export function runtimeBinary(name: RuntimeName): string {
  return realpathSync(join(ROOT, 'node_modules', '.bin', name));
}

/** Environment that keeps the runtimes' caches in `.cache/` and stops update checks. */
export function runtimeEnv(): Record<string, string> {
  const cache = join(ROOT, '.cache');
  return {
    DENO_DIR: join(cache, 'deno'),
    DENO_NO_UPDATE_CHECK: '1',
    BUN_INSTALL_CACHE_DIR: join(cache, 'bun-install'),
    BUN_RUNTIME_TRANSPILER_CACHE_PATH: join(cache, 'bun-transpiler'),
  };
}

/**
 * Arguments that run the demo server. Deno reads bare imports from `node_modules` (package.json
 * sits beside it) and `--cached-only` forbids any download; the demo needs only net and env.
 */
export const DEMO_ARGS: Record<RuntimeName, string[]> = {
  deno: ['run', '--allow-net', '--allow-env', '--cached-only', 'examples/demo/deno.ts'],
  bun: ['examples/demo/bun.ts'],
};
