/**
 * A Worker on workerd through miniflare, offline: bundled with esbuild as wrangler bundles it
 * (`platform: neutral`, conditions `workerd`, `worker`, `browser`; workerd's own `cloudflare:*`
 * modules left to workerd), served on a loopback port. What `npm run start:workers`
 * (scripts/start-workers.ts) and the Cloudflare tests (test/helpers/workerd.ts) share: miniflare
 * and workerd come from npm, nothing is downloaded at run time.
 *
 * @module
 */
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';

/** The compatibility date the Workers run on (what examples/cloudflare/wrangler.jsonc names too). */
export const COMPATIBILITY_DATE = '2026-04-01';

/** How to bundle and serve a Worker. */
export interface WorkerdOptions {
  /** Binding name to the exported Durable Object class it binds (each with SQLite storage). */
  durableObjects: Record<string, string>;
  /** Plain vars of the env. */
  bindings?: Record<string, string>;
  /** Where the bundle's bare imports resolve besides the usual places (an app's node_modules). */
  nodePaths?: string[];
  /** Imports left out of the bundle, as written (esbuild's `external`), besides `cloudflare:*`. */
  external?: string[];
  /** Interface to bind; 127.0.0.1 unless given. */
  host?: string;
  /** Port; 0 (a free one) unless given. */
  port?: number;
}

/**
 * Bundles `entry` into one ES module, as wrangler would.
 *
 * @param entry The Worker's entry file.
 * @param options `nodePaths` and `external`, as `WorkerdOptions` has them.
 *
 * @returns The module's text.
 */
export async function bundleWorker(
  entry: string,
  options: Pick<WorkerdOptions, 'nodePaths' | 'external'> = {},
): Promise<string> {
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser'],
    // workerd's built-in modules (`cloudflare:workers`), as wrangler leaves them.
    external: ['cloudflare:*', ...(options.external ?? [])],
    nodePaths: options.nodePaths ?? [],
    write: false,
    logLevel: 'silent',
  });
  return bundle.outputFiles[0]?.text ?? '';
}

/**
 * Bundles `entry` and serves it on workerd.
 *
 * @param entry The Worker's entry file.
 * @param options Its Durable Objects, vars, and where to listen.
 *
 * @returns The miniflare (its `dispose()` stops workerd) and the origin it listens on.
 */
export async function serveWorker(entry: string, options: WorkerdOptions): Promise<{ mf: Miniflare; url: URL }> {
  const mf = new Miniflare({
    modules: true,
    script: await bundleWorker(entry, options),
    compatibilityDate: COMPATIBILITY_DATE,
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    // Miniflare otherwise fetches `Request.cf` from workers.cloudflare.com at startup.
    cf: false,
    bindings: options.bindings ?? {},
    durableObjects: Object.fromEntries(
      Object.entries(options.durableObjects).map(([binding, className]) => [binding, { className, useSQLite: true }]),
    ),
  });
  return { mf, url: await mf.ready };
}
