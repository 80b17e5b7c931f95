/**
 * What the hub's history costs in memory, measured in one process (`npm run bench` runs it, one
 * run per repeat): `node --expose-gc --import tsx bench/history.ts --updates=U --sizes=100,1000`.
 *
 * For each history size S, two fresh hubs (the in-memory broker, defaults otherwise) get the
 * same updates: S + S/10 task updates of about 200 bytes of JSON to each of U/S agents (so U
 * updates are held at every size), round-robin, so every history is full and has already
 * dropped its oldest. One hub keeps the history
 * (`historySize: S`), the other none (`historySize: 0`, `snapshot: false`). Each agent has a
 * subscriber on the broker that drops what it gets, so nothing is queued. The heap after a
 * full GC, less the heap before the hub was made, is the hub's; the difference between the two
 * hubs is the history's (the agents' streams and snapshot state are in both).
 *
 * Prints one line `BENCH_HISTORY {"sizes":[…]}`; each size gives heap bytes of history per agent
 * and per update, the updates' JSON bytes, and the CPU of one `publishTask` (in this process, no
 * sockets; parsing the fields included) with and without history. The one with history also
 * builds each update's wire JSON (its size is counted), which a delivery would build anyway: the
 * difference is an upper bound on what history adds to publishing, before any fan-out.
 *
 * @module
 */
import process from 'node:process';
import { getHeapSpaceStatistics } from 'node:v8';
import { type AgentHub, type Broker, createAgentHub, memoryBroker, type TaskUpdateInput } from '../plugin/index.ts';

/** One history size's figures. */
export interface HistoryFigures {
  historySize: number;
  /** Agents published to: `--updates` ÷ `historySize`. */
  agents: number;
  /** Updates published to each agent. */
  published: number;
  /** Heap of the history, per agent and per update held, in bytes. */
  heapPerAgent: number;
  heapPerUpdate: number;
  /** Bytes of an update's JSON (what `maxHistoryBytes` counts), on average. */
  jsonPerUpdate: number;
  /** Heap bytes per JSON byte. */
  overhead: number;
  /** CPU microseconds per `publishTask` in this process, with the history and without. */
  publishUs: number;
  publishUsWithout: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

/** Bytes used on the heap after a full GC, less compiled code (which the warm-up settles). */
const heap = async (): Promise<number> => {
  for (let i = 0; i < 3; i++) {
    gc?.();
    // Lets finalizers and the sweeper finish what the last measurement left.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  gc?.();
  let used = 0;
  for (const space of getHeapSpaceStatistics()) {
    if (!space.space_name.startsWith('code_')) used += space.space_used_size;
  }
  return used;
};

/** The update fields as a publisher sends them: parsed from JSON, like the ingest route's. */
const fields = (agent: number, n: number): TaskUpdateInput =>
  JSON.parse(
    `{"task_id":"task-${n % 10}","status":"running","progress":${n % 100},"message":"step ${n} of agent ${agent}: ${'x'.repeat(24)}"}`,
  ) as TaskUpdateInput;

interface Measured {
  heap: number;
  cpuUs: number;
  jsonBytes: number;
  held: number;
}

/**
 * Makes a hub keeping `historySize` updates per agent, publishes `published` updates to each
 * of `agents` agents, and measures it: heap, CPU per publish, and the history it holds.
 */
async function measure(agents: number, historySize: number, published: number): Promise<Measured> {
  const ids = Array.from({ length: agents }, (_, i) => `agent-${i}`);
  let broker: Broker | undefined;
  const before = await heap();
  let hub: AgentHub | undefined = createAgentHub({
    heartbeatInterval: 0,
    logger: false,
    historySize,
    snapshot: historySize > 0,
    broker: (context) => {
      broker = memoryBroker()(context);
      return broker;
    },
  });
  const inner = broker as Broker;
  const epochs = new Map<string, string>();
  for (const id of ids) {
    const joined = inner.subscribe(id, () => {}) as { epoch: string };
    epochs.set(id, joined.epoch);
  }
  const cpu = process.cpuUsage();
  for (let n = 0; n < published; n++) {
    for (let a = 0; a < agents; a++) await hub.publishTask(ids[a] as string, fields(a, n));
  }
  const used = process.cpuUsage(cpu);
  const after = await heap();
  let jsonBytes = 0;
  let held = 0;
  for (const id of ids) {
    const history = (inner.history(id, published - historySize, epochs.get(id) as string) ?? []) as unknown[];
    held += history.length;
    for (const update of history) jsonBytes += Buffer.byteLength(JSON.stringify(update));
  }
  if (held !== agents * historySize) throw new Error(`history holds ${held} updates, not ${agents * historySize}`);
  await hub.close();
  hub = undefined;
  return { heap: after - before, cpuUs: (used.user + used.system) / (agents * published), jsonBytes, held };
}

export async function main(args: readonly string[]): Promise<void> {
  if (!gc) throw new Error('bench/history.ts needs node --expose-gc');
  const option = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const held = Number(option('updates') ?? 100_000);
  const sizes = (option('sizes') ?? '100,1000').split(',').map(Number);
  // Warm-up: the code is compiled and optimised before anything is measured.
  for (let i = 0; i < 2; i++) {
    await measure(100, 100, 110);
    await measure(100, 0, 110);
  }
  const figures: HistoryFigures[] = [];
  for (const historySize of sizes) {
    // The same number of updates held at every size, so the per-update figures compare.
    const agents = Math.max(1, Math.round(held / historySize));
    const published = historySize + Math.ceil(historySize / 10);
    const without = await measure(agents, 0, published);
    const withHistory = await measure(agents, historySize, published);
    const bytes = withHistory.heap - without.heap;
    figures.push({
      historySize,
      agents,
      published,
      heapPerAgent: bytes / agents,
      heapPerUpdate: bytes / withHistory.held,
      jsonPerUpdate: withHistory.jsonBytes / withHistory.held,
      overhead: bytes / withHistory.jsonBytes,
      publishUs: withHistory.cpuUs,
      publishUsWithout: without.cpuUs,
    });
  }
  process.stdout.write(`BENCH_HISTORY ${JSON.stringify({ sizes: figures })}\n`);
}

await main(process.argv.slice(2));
