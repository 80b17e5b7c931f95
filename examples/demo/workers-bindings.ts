/**
 * The Durable Object bindings of the Workers demo (examples/demo/workers.ts), binding name to the
 * class it exports: what scripts/start-workers.ts gives miniflare (and a wrangler config would
 * declare). A module of its own, so Node can read it without loading the Worker.
 */
export const WORKERS_BINDINGS = {
  /** Each agent's channel. */
  AGENT_CHANNEL: 'DemoChannel',
  /** The hub-wide figures. */
  AGENT_DIRECTORY: 'DemoDirectory',
  /** The simulated agents. */
  DEMO_SIMULATOR: 'DemoSimulator',
} as const;
