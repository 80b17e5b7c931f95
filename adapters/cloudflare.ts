/**
 * Cloudflare Workers: one Durable Object per agent holds that agent's sockets with the WebSocket
 * Hibernation API (`AgentChannelObject`), and the Worker routes each agent's requests to its
 * object (`cloudflareRoutes`, `cloudflarePublisher`). Experimental: see docs/cloudflare.md.
 *
 * @module
 */
export { AgentChannelObject, type AgentChannelOptions } from '../brokers/cloudflare/object.ts';
export type { AgentObjectNamespace, AgentObjectState, WorkersWebSocket } from '../brokers/cloudflare/shared.ts';
export {
  type CloudflarePublisher,
  type CloudflareRoutesOptions,
  cloudflarePublisher,
  cloudflareRoutes,
} from '../brokers/cloudflare/worker.ts';
