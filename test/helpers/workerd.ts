/**
 * A Worker on workerd through miniflare, offline: bundled with esbuild as wrangler bundles it
 * (`platform: neutral`, conditions `workerd`, `worker`, `browser`), served on a random loopback
 * port. What the Cloudflare tests (test/cloudflare*.test.ts) and the packaging test share.
 */
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';

/** A running Worker: its miniflare, and its origin as `http://` and `ws://`. */
export interface WorkerdServer {
  readonly mf: Miniflare;
  readonly http: string;
  readonly ws: string;
}

/** The compatibility date the tests run on (what examples/cloudflare/wrangler.jsonc names too). */
export const COMPATIBILITY_DATE = '2026-04-01';

/**
 * Bundles `entry` and serves it on workerd.
 *
 * @param entry The Worker's entry file.
 * @param durableObjects Binding name to the exported class it binds (each with SQLite storage).
 * @param options `nodePaths`, where the bundle's bare imports resolve (an app's node_modules),
 *   and `bindings`, plain vars of the env.
 *
 * @returns The running Worker; `mf.dispose()` stops it.
 */
export async function startWorkerd(
  entry: string,
  durableObjects: Record<string, string>,
  options: { nodePaths?: string[]; bindings?: Record<string, string> } = {},
): Promise<WorkerdServer> {
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser'],
    nodePaths: options.nodePaths ?? [],
    write: false,
    logLevel: 'silent',
  });
  const mf = new Miniflare({
    modules: true,
    script: bundle.outputFiles[0]?.text ?? '',
    compatibilityDate: COMPATIBILITY_DATE,
    host: '127.0.0.1',
    port: 0,
    // Miniflare otherwise fetches `Request.cf` from workers.cloudflare.com at startup.
    cf: false,
    bindings: options.bindings ?? {},
    durableObjects: Object.fromEntries(
      Object.entries(durableObjects).map(([binding, className]) => [binding, { className, useSQLite: true }]),
    ),
  });
  const http = (await mf.ready).origin;
  return { mf, http, ws: http.replace(/^http/, 'ws') };
}
