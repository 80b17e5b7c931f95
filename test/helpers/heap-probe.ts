/**
 * Runs one memory scenario against a real hub in this process and prints what it measured as
 * one JSON line: the heap after GC before and after, the stats, the log entries by event (with
 * their counts), and what a watcher received over a real socket. Run by `test/memory.test.ts` as
 * `node --expose-gc --import tsx test/helpers/heap-probe.ts '<scenario JSON>'`, so the heap is
 * the hub's alone and `gc()` is there.
 */
import { Hono } from 'hono';
import WebSocket from 'ws';
import { node, serveNode } from '../../adapters/node.ts';
import type { AgentHubOptions, LogEntry, MemoryBrokerOptions } from '../../plugin/index.ts';
import { createAgentHub, memoryBroker } from '../../plugin/index.ts';

/** One scenario: the hub's options and what is published to it. */
export interface HeapScenario {
  /** Hub options (`logger`, `broker` and `ingest` are set here). */
  readonly hub: AgentHubOptions;
  /** Distinct agents published to, round robin. */
  readonly agents: number;
  /** Updates published. */
  readonly updates: number;
  /** Characters of each update's `result` (a string; `"wide"` results hold a character beyond U+00FF). */
  readonly resultBytes: number;
  /** `ingest`: one POST per update over HTTP; `publish`: `hub.publishTask` in process. */
  readonly via: 'ingest' | 'publish';
  /** Distinct task ids per agent (each update opens a task until this many; then they repeat). */
  readonly tasksPerAgent?: number;
  /** Characters of each agent id (padded). */
  readonly idLength?: number;
  /** A result with a character beyond U+00FF, so its JSON is a two-byte string. */
  readonly wide?: boolean;
  /** Watch one more agent over a real socket, and publish a small update to it every this many updates. */
  readonly watchEvery?: number;
  /** Options of the in-memory broker. */
  readonly memoryBroker?: MemoryBrokerOptions;
}

/** What the probe prints. */
export interface HeapReport {
  /** Heap used after GC with the server up and nothing published, in bytes. */
  readonly before: number;
  /** Heap used after GC once everything was published, in bytes. */
  readonly after: number;
  /** `external` memory after GC (buffers), in bytes. */
  readonly external: number;
  readonly stats: Record<string, unknown>;
  /** Log entries by event: how many entries, and the sum of their `count` (1 when absent). */
  readonly logs: Record<string, { entries: number; count: number }>;
  /** Log entries of evictions and drops, whole. */
  readonly drops: LogEntry[];
  /** Updates published to the watched agent, and those its watcher received. */
  readonly watched: { published: number; received: number };
  /** Ingest answers other than 202. */
  readonly refused: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('heap-probe needs node --expose-gc');

const settle = async (): Promise<number> => {
  for (let i = 0; i < 4; i++) {
    await new Promise((done) => setTimeout(done, 20));
    gc?.();
  }
  return process.memoryUsage().heapUsed;
};

const scenario = JSON.parse(process.argv[2] ?? '{}') as HeapScenario;
const logs: Record<string, { entries: number; count: number }> = {};
const drops: LogEntry[] = [];
const hub = createAgentHub({
  ...scenario.hub,
  ...(scenario.memoryBroker ? { broker: memoryBroker(scenario.memoryBroker) } : {}),
  ingest: true,
  heartbeatInterval: 0,
  logInterval: 1000,
  logger: (entry) => {
    const seen = logs[entry.event] ?? { entries: 0, count: 0 };
    logs[entry.event] = seen;
    seen.entries++;
    seen.count += typeof entry.count === 'number' ? entry.count : 1;
    if (entry.event !== 'connection_open' && entry.event !== 'connection_close') drops.push(entry);
  },
});
const app = new Hono();
app.route('/agents', hub.routes(node));
const server = await serveNode({ fetch: app.fetch, hub, port: 0 });
const base = `http://127.0.0.1:${server.port}/agents`;

const pad = (id: string) => (scenario.idLength ? id.padEnd(scenario.idLength, '-') : id);
const result = (scenario.wide ? 'Ā' : '') + 'x'.repeat(Math.max(0, scenario.resultBytes - (scenario.wide ? 1 : 0)));

let received = 0;
let published = 0;
let socket: WebSocket | undefined;
if (scenario.watchEvery) {
  socket = new WebSocket(`ws://127.0.0.1:${server.port}/agents/watched/ws`);
  socket.on('message', (data) => {
    const frame = JSON.parse(String(data)) as { type: string; updates?: unknown[] };
    if (frame.type === 'task_update') received++;
    else if (frame.type === 'batch_update') received += frame.updates?.length ?? 0;
  });
  await new Promise((done, fail) => {
    socket?.once('open', done);
    socket?.once('error', fail);
  });
}

const before = await settle();
let refused = 0;
const watchedUpdate = () => {
  published++;
  return hub.publishTask('watched', { task_id: `w${published}`, status: 'running', progress: 1, result: 'small' });
};
for (let i = 0; i < scenario.updates; i++) {
  const agent = pad(`a${i % scenario.agents}`);
  const round = Math.floor(i / scenario.agents);
  const task = { task_id: `t${round % (scenario.tasksPerAgent ?? 1_000_000)}`, status: 'running', progress: 1, result };
  if (scenario.via === 'ingest') {
    const response = await fetch(`${base}/${agent}/updates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'task_update', ...task }),
    });
    if (response.status !== 202) refused++;
    await response.arrayBuffer();
  } else {
    await hub.publishTask(agent, task);
  }
  if (scenario.watchEvery && i % scenario.watchEvery === 0) await watchedUpdate();
}
// The watcher gets what is still in the batching window.
const deadline = Date.now() + 10_000;
while (socket && received < published && Date.now() < deadline) await new Promise((done) => setTimeout(done, 20));
const after = await settle();
const external = process.memoryUsage().external;
const stats = hub.stats() as unknown as Record<string, unknown>;
socket?.close();
// Closing the hub writes the log lines still held back by the throttle.
await server.close();
const report: HeapReport = {
  before,
  after,
  external,
  stats,
  logs,
  drops: drops.slice(0, 50),
  watched: { published, received },
  refused,
};
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
