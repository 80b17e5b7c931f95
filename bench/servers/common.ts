/**
 * What every bench server shares: the settings it reads from the environment, the update it
 * fans out, the bare Hono routes the HTTP scenario compares against, and the control side
 * channel the load generator publishes through.
 *
 * Runtime-neutral (Node, Bun, Deno): only `node:net` and standard APIs. The control channel is
 * the same code in every server, so publishing costs every server the same and the code under
 * test (the hub, `ws`, Socket.IO, `server.publish`) stays unchanged.
 *
 * Control protocol, one JSON object per line, load generator → server:
 * - `{"op":"pub","t":<ms>,"a":[<agent index>, ...]}` publishes one task update to each agent;
 *   `t` is the load generator's `performance.now()` at send time, carried in the update.
 * - `{"op":"gc","id":<n>}` runs a full GC, answers `{"id":<n>,"gc":true|false,"heapUsed":…,"heapTotal":…}`
 *   (`heapTotal`: the JS heap reserved, young generation included).
 * - `{"op":"ping","id":<n>}` answers `{"id":<n>}` (a barrier: every earlier line was handled).
 * - `{"op":"heap","id":<n>,"file":<path>}` runs a full GC, reads the RSS, then writes a V8 heap
 *   snapshot to `file` (Node; bench/heap.ts), answers `{"id":<n>,"rss":<bytes>,"heap":<bytes>}`.
 *
 * @module
 */
import { createServer } from 'node:net';
import process from 'node:process';
import { type Hono, Hono as HonoApp } from 'hono';
import * as v from 'valibot';
import { STATS_FIGURES } from '../../plugin/figures.ts';
import { type AgentHub, createAgentHub } from '../../plugin/index.ts';
import { IngestBodySchema } from '../../plugin/schemas.ts';
import { createErrorCounters } from '../../plugin/stats.ts';

// Exit cleanly on SIGTERM, so `--cpu-prof` and friends get to write their files.
process.on('SIGTERM', () => process.exit(0));

/**
 * Settings every server reads: `BENCH_HEARTBEAT_MS` (0 = off) and, plugin only,
 * `BENCH_BATCH_MS`, `BENCH_HISTORY` (`0` runs the hub with `historySize: 0` and
 * `snapshot: false`, as before resume existed) and `BENCH_PREFILL` (`<agents>x<updates>`:
 * updates published to each agent before the server announces itself).
 */
export const settings = {
  /** `BENCH_STORE`: a SQLite file for the hub (`sqliteBroker`), or '' for the in-memory broker. */
  store: process.env.BENCH_STORE ?? '',
  batchMs: Number(process.env.BENCH_BATCH_MS ?? 0),
  history: process.env.BENCH_HISTORY !== '0',
  heartbeatMs: Number(process.env.BENCH_HEARTBEAT_MS ?? 0),
  prefill: (process.env.BENCH_PREFILL || '0x0').split('x').map(Number) as [number, number],
};

const ids: string[] = [];
/** The agent id of agent index `i`; the load generator uses the same names. */
export const agentId = (i: number): string => {
  let id = ids[i];
  if (id === undefined) {
    id = `bench-agent-${i}`;
    ids[i] = id;
  }
  return id;
};

/** The fields a publisher supplies; the hub adds type, agent_id and timestamp. */
export const TASK_FIELDS = { task_id: 'task-1', status: 'running', progress: 50 } as const;

/**
 * The update the baselines send, the same fields in the same order as the hub's `task_update`.
 */
export const taskUpdate = (agent: string, message: string) => ({
  type: 'task_update',
  agent_id: agent,
  ...TASK_FIELDS,
  message,
  timestamp: new Date().toISOString(),
});

/** Padding that makes a task update about 200 bytes on the wire. */
const PAD = 'x'.repeat(24);
/** The update's message: the marker the load generator counts, the send time, padding. */
const message = (t: number) => `bench|${t}|${PAD}`;

declare const Bun: { gc(force: boolean): void } | undefined;

/**
 * `BENCH_GC=last-resort`: V8's last-resort full GC (`gc({flavor: 'last-resort'})`), which also
 * shrinks the young generation back; a plain `gc()` leaves it at the size the connection burst
 * grew it to (tens of MB on Deno's V8, counted as per-connection memory). Off by default.
 */
const lastResort = process.env.BENCH_GC === 'last-resort';

const fullGc = (): boolean => {
  const gc = (globalThis as { gc?: (options?: object) => void }).gc;
  if (typeof gc === 'function') {
    for (let i = 0; i < 3; i++) lastResort ? gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }) : gc();
    return true;
  }
  if (typeof Bun !== 'undefined') {
    for (let i = 0; i < 3; i++) Bun.gc(true);
    return true;
  }
  return false;
};

/** The JS heap used and reserved (`process.memoryUsage()`), read after a GC. */
const heap = () => {
  const usage = process.memoryUsage();
  return { heapUsed: usage.heapUsed, heapTotal: usage.heapTotal };
};

/**
 * Starts the control channel and announces the server on stdout as
 * `BENCH_READY {"port":…,"control":…,"pid":…}`.
 *
 * @param port The port the server under test listens on.
 * @param publish Publishes one update through the server under test.
 */
export function startControl(port: number, publish: (agent: string, message: string) => void): void {
  const control = createServer((socket) => {
    socket.setNoDelay(true);
    let rest = '';
    socket.on('data', (chunk: Buffer) => {
      const text = rest + chunk.toString('latin1');
      let start = 0;
      for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n', start)) {
        const command = JSON.parse(text.slice(start, end)) as {
          op: string;
          t?: number;
          a?: number[];
          id?: number;
          file?: string;
        };
        start = end + 1;
        if (command.op === 'pub') {
          const text = message(command.t ?? 0);
          for (const index of command.a ?? []) publish(agentId(index), text);
        } else if (command.op === 'gc') {
          const gc = fullGc();
          socket.write(`${JSON.stringify({ id: command.id, gc, ...heap() })}\n`);
        } else if (command.op === 'heap') {
          fullGc();
          const { rss, heapUsed } = process.memoryUsage();
          // Imported here: only bench/heap.ts asks, of the Node servers.
          void import('node:v8').then((v8) => {
            v8.writeHeapSnapshot(command.file);
            socket.write(`${JSON.stringify({ id: command.id, rss, heap: heapUsed })}\n`);
          });
        } else if (command.op === 'ping') {
          socket.write(`${JSON.stringify({ id: command.id })}\n`);
        }
      }
      rest = text.slice(start);
    });
    socket.on('error', () => {});
  });
  control.listen(0, '127.0.0.1', () => {
    const address = control.address();
    const controlPort = typeof address === 'object' && address ? address.port : 0;
    process.stdout.write(`BENCH_READY ${JSON.stringify({ port, control: controlPort, pid: process.pid })}\n`);
  });
}

/**
 * Mounts the bare Hono routes the HTTP scenario compares the hub's routes with, doing the same
 * parsing as the hub and nothing else:
 * - `GET /bare-stats` serialises an object of the stats' shape and size (every field of
 *   `STATS_FIGURES`: zeros for the counts, `errors_by_kind` with all its kinds, the two
 *   timestamps), built afresh per request as the hub builds its stats. Not `/bare/stats`: a
 *   static segment beside `/bare/:agent_id` would put the whole app on Hono's TrieRouter;
 * - `POST /bare/:agent_id/updates` parses the JSON body and validates it with the ingest
 *   schema (`IngestBodySchema`), as the hub does, and answers 202 with the count.
 * Not included, as the hub's own work: authorize, agent id and content-type checks, building
 * the update (timestamp, depth check, serialisation) and publishing it.
 */
export function mountBare(app: Hono): void {
  const startedAt = Date.now();
  const instanceId = crypto.randomUUID();
  const errors = createErrorCounters();
  // Every field of STATS_FIGURES, read as the hub reads its own (plugin/reports.ts).
  const readings: Record<string, () => unknown> = {
    instance_id: () => instanceId,
    errors_by_kind: () => ({ ...errors }),
    started_at: () => new Date(startedAt).toISOString(),
    uptime_seconds: () => Math.round((Date.now() - startedAt) / 1000),
  };
  app.get('/bare-stats', (c) => {
    const stats: Record<string, unknown> = {};
    for (const figure of STATS_FIGURES) stats[figure.name] = readings[figure.name]?.() ?? 0;
    return c.json(stats);
  });
  app.post('/bare/:agent_id/updates', async (c) => {
    const parsed = v.safeParse(IngestBodySchema, await c.req.json());
    if (!parsed.success) return c.json({ error: 'invalid_update' }, 400);
    return c.json({ accepted: Array.isArray(parsed.output) ? parsed.output.length : 1 }, 202);
  });
}

/**
 * Starts the plugin on one runtime: a hub with the bench settings (history and snapshots on, as
 * by default, unless `BENCH_HISTORY=0`), its routes and the bare routes on one app, served by the
 * runtime's adapter, published to through the control channel.
 */
export async function startPluginServer(
  mount: (hub: AgentHub) => Hono,
  serve: (options: { fetch: Hono['fetch']; hub: AgentHub; port: number }) => Promise<{ readonly port: number }>,
): Promise<void> {
  // Imported only when asked: the runtimes without SQLite (Node 20) run every other server.
  const broker = settings.store
    ? (await import('../../adapters/sqlite.ts')).sqliteBroker({ path: settings.store })
    : undefined;
  const hub = createAgentHub({
    batchInterval: settings.batchMs,
    heartbeatInterval: settings.heartbeatMs,
    logger: false,
    ingest: true,
    ...(broker ? { broker } : {}),
    ...(settings.history ? {} : { historySize: 0, snapshot: false }),
  });
  const app = new HonoApp();
  app.route('/agents', mount(hub));
  mountBare(app);
  // Round-robin, as the load generator publishes; without the load generator's marker, so
  // neither the offline queue nor the snapshot these leave is counted as a delivery.
  const [prefillAgents, prefillUpdates] = settings.prefill;
  for (let n = 0; n < prefillUpdates; n++) {
    // One round at a time, all agents at once: a store commits the round in one transaction.
    await Promise.all(
      Array.from({ length: prefillAgents }, (_, i) =>
        hub.publishTask(agentId(i), { ...TASK_FIELDS, message: `prefill ${n} ${PAD}` }),
      ),
    );
  }
  const server = await serve({ fetch: app.fetch, hub, port: 0 });
  startControl(server.port, (agent, message) => {
    void hub.publishTask(agent, { ...TASK_FIELDS, message });
  });
}
