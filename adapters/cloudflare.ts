/**
 * Cloudflare Workers: one Durable Object per agent holds that agent's sockets with the WebSocket
 * Hibernation API (`AgentChannelObject`), one directory object holds the hub-wide figures
 * (`AgentDirectoryObject`), and the Worker serves the hub's routes (`cloudflareHub`), forwarding
 * each agent's requests to its object. See docs/cloudflare.md.
 *
 * @module
 */
export { AgentDirectoryObject, type DirectoryHistograms } from '../brokers/cloudflare/directory.ts';
export { AgentChannelObject, type AgentChannelOptions } from '../brokers/cloudflare/object.ts';
export type { AgentObjectNamespace, AgentObjectState, WorkersWebSocket } from '../brokers/cloudflare/shared.ts';
export {
  type CloudflareHub,
  type CloudflareHubOptions,
  type CloudflarePublisher,
  cloudflareHub,
  type WaitUntil,
} from '../brokers/cloudflare/worker.ts';
