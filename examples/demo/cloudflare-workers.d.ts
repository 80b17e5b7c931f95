/**
 * The one export of workerd's built-in `cloudflare:workers` module the Workers demo uses (the
 * package needs no `@cloudflare/workers-types`): the Worker's env, readable at module load.
 */
declare module 'cloudflare:workers' {
  /** The Worker's bindings and vars. */
  export const env: unknown;
}
