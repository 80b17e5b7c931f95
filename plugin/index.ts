/**
 * hono-agent-ws: a real-time WebSocket channel per agent for Hono apps.
 *
 * Runtime-neutral: this module uses only standard WebSocket, timer and Web APIs. Bind it to a
 * runtime with `hub.routes(binding)`: `hono-agent-ws/node`, `/deno` and `/bun` export one
 * binding each; on another Hono runtime, pass its `upgradeWebSocket`.
 *
 * @module
 */

export type {
  AgentHandle,
  AgentHandleOptions,
  ExecutionStatusInput,
  TaskHandle,
  TaskState,
} from './agent-handle.ts';
export { TASK_HANDLE_STATUSES } from './agent-handle.ts';
export type { RoutesOptions, RuntimeBinding, TopicFanOut } from './binding.ts';
export type {
  AgentListing,
  AgentPage,
  Broker,
  BrokerContext,
  BrokerFactory,
  ClusterStats,
  DropReason,
  Joined,
  LocalFigures,
  MaybePromise,
  MemoryBrokerOptions,
  PublishReceipt,
  StreamPosition,
  UnsubscribeReceipt,
} from './broker.ts';
export { memoryBroker } from './broker.ts';
export type { CloseCodeInfo } from './close-codes.ts';
export { CLOSE_CODES, CLOSE_REASONS, CloseCode } from './close-codes.ts';
export type { DisplayableOptions } from './displayable.ts';
export { CIRCULAR_MARKER, DEFAULT_MAX_RESULT_BYTES, MIN_MAX_RESULT_BYTES, toDisplayable } from './displayable.ts';
export { InvalidUpdateError } from './errors.ts';
export type { AgentHub } from './hub.ts';
export { createAgentHub, QUEUE_HANDOVER_MS } from './hub.ts';
export type { LogEntry, LogEvent, Logger } from './logger.ts';
export { jsonLogger } from './logger.ts';
export type {
  Histogram,
  MetricFamily,
  MetricRegistry,
  MetricSample,
  MetricSource,
  RegisteredMetric,
} from './metrics.ts';
export {
  BATCH_SIZE_BUCKETS,
  METRIC_NAMES,
  PROMETHEUS_CONTENT_TYPE,
  registerHubMetrics,
  renderPrometheus,
  SEND_DELAY_BUCKETS,
} from './metrics.ts';
export type { AgentHubOptions, AuthorizeHook, HubAction } from './options.ts';
export { SERVE_DEFAULTS } from './options.ts';
export * from './schemas.ts';
export type { AgentSummary, AgentsPage, ErrorKind, EvictionKind, HubStats } from './stats.ts';
export {
  AGENT_TASKS_DEFAULT,
  AGENT_TASKS_MAX,
  AGENTS_PAGE_DEFAULT,
  AGENTS_PAGE_MAX,
  AgentSummarySchema,
  AgentsPageSchema,
  ERROR_KINDS,
  EVICTION_KINDS,
  HubStatsSchema,
} from './stats.ts';
