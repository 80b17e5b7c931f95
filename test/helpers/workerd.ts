/**
 * A Worker on workerd through miniflare, offline: bundled with esbuild as wrangler bundles it
 * (`platform: neutral`, conditions `workerd`, `worker`, `browser`), served on a random loopback
 * port. What the Cloudflare tests (test/cloudflare*.test.ts) and the packaging test share.
 */
import type { Miniflare } from 'miniflare';
import { serveWorker } from '../../scripts/workerd.ts';

export { COMPATIBILITY_DATE } from '../../scripts/workerd.ts';

/** A running Worker: its miniflare, and its origin as `http://` and `ws://`. */
export interface WorkerdServer {
  readonly mf: Miniflare;
  readonly http: string;
  readonly ws: string;
}

/**
 * Bundles `entry` and serves it on workerd (scripts/workerd.ts).
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
  const { mf, url } = await serveWorker(entry, { durableObjects, ...options });
  return { mf, http: url.origin, ws: url.origin.replace(/^http/, 'ws') };
}
