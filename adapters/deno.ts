/**
 * Deno binding: `Deno.serve` with `hono/deno`'s `upgradeWebSocket`.
 *
 * Nothing else to absorb here: Deno's sockets expose the standard `bufferedAmount` the hub reads
 * by default, and its abrupt close (an error event, then close code 0) is already what the hub
 * treats as a vanished peer. Type-checked by `deno check` (`npm run check:deno`), not `tsc`.
 *
 * @module
 */
import type { Hono } from 'hono';
// `hono/deno` is marked deprecated in favour of `@hono/deno`; it is the one hono 4 ships.
import { upgradeWebSocket } from 'hono/deno';
import { type AgentHub, type RuntimeBinding, SERVE_DEFAULTS } from '../plugin/index.ts';

export { upgradeWebSocket };

/**
 * The Deno binding: `app.route('/agents', hub.routes(deno))`. Deno's sockets are standard, so
 * it carries only the upgrade.
 */
export const deno: RuntimeBinding = { upgradeWebSocket };

/**
 * Options of `serveDeno`.
 */
export interface ServeDenoOptions {
  /** The app, with the hub's routes mounted. */
  fetch: Hono['fetch'];
  /** The hub, closed first on `close()`. */
  hub: AgentHub;
  /** Port; 0 picks a free one. Default `SERVE_DEFAULTS.port` (8787). */
  port?: number;
  /** Interface to bind. Default `SERVE_DEFAULTS.hostname` (127.0.0.1). */
  hostname?: string;
}

/**
 * A running Deno server.
 */
export interface DenoServer {
  /** The underlying `Deno.HttpServer`. */
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  /** The port actually bound. */
  readonly port: number;
  /** Closes the hub (flushing batches, closing sockets with 1001), then the HTTP server. */
  close(): Promise<void>;
}

/**
 * Serves an app with the hub on Deno and resolves once it listens.
 *
 * @param options The server options.
 *
 * @returns The running server.
 */
export async function serveDeno(options: ServeDenoOptions): Promise<DenoServer> {
  // Deno.serve binds synchronously (and throws when it cannot), so the port is known at once.
  const server = Deno.serve(
    {
      port: options.port ?? SERVE_DEFAULTS.port,
      hostname: options.hostname ?? SERVE_DEFAULTS.hostname,
      // Given, so Deno does not print its own "Listening on" line.
      onListen: () => {},
    },
    (request, info) => options.fetch(request, info),
  );
  return {
    server,
    port: server.addr.port,
    async close() {
      await options.hub.close();
      await server.shutdown();
    },
  };
}
