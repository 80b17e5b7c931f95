/**
 * In-process A/B of the hub's HTTP routes against the bare routes (bench/servers/common.ts
 * `mountBare`): the same app as the bench servers, called through `app.fetch` with no network
 * and no HTTP server, so only the route code differs. Interleaved rounds; prints the median
 * µs per request of each route and the ratios (hub/bare throughput = bare time / hub time).
 * Without the server's own per-request work in both sides this ratio is stricter than the
 * end-to-end one.
 *
 * `node --import tsx bench/micro/http.ts [rounds] [requests per round] [route|''] [prefill]`, or
 * with `bun`/`deno`.
 *
 * @module
 */
import { Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import { createAgentHub } from '../../plugin/index.ts';
import { mountBare } from '../servers/common.ts';

const args = (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
const rounds = Number(args[0] ?? 15);
const perRound = Number(args[1] ?? 4000);
/** One route only (`stats`, `bareStats`, `ingest`, `bareIngest`): for instruction counts under callgrind. */
const only = args[2] || undefined;
/**
 * Updates published to each of 500 agents first (none watched: history and offline queues),
 * as the fan-out scenarios leave the hub before the HTTP scenario runs: a large old heap.
 */
const prefill = Number(args[3] ?? 0);

const hub = createAgentHub({ logger: false, ingest: true, heartbeatInterval: 0 });
const app = new Hono();
// No request here upgrades.
const upgradeWebSocket = (() => async () => undefined) as unknown as UpgradeWebSocket;
app.route('/agents', hub.routes(upgradeWebSocket));
mountBare(app);
for (let n = 0; n < prefill; n++) {
  for (let a = 0; a < 500; a++) {
    await hub.publishTask(`bench-agent-${a}`, {
      task_id: `task-${n % 50}`,
      status: 'running',
      progress: 50,
      message: 'x'.repeat(80),
    });
  }
}

const body = JSON.stringify({ type: 'task_update', task_id: 'task-1', status: 'running', progress: 50 });
const cases = {
  stats: () => new Request('http://localhost/agents/ws/stats'),
  bareStats: () => new Request('http://localhost/bare-stats'),
  ingest: () =>
    new Request('http://localhost/agents/bench-http/updates', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
    }),
  bareIngest: () =>
    new Request('http://localhost/bare/bench-http/updates', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
    }),
};
type Case = keyof typeof cases;

const run = async (name: Case, n: number): Promise<number> => {
  const make = cases[name];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const response = await app.fetch(make());
    if (response.status >= 300) throw new Error(`${name}: ${response.status}`);
    await response.text();
  }
  return ((performance.now() - start) * 1000) / n;
};

const names = (only ? [only] : Object.keys(cases)) as Case[];
for (const name of names) await run(name, 2000);
const times: Record<Case, number[]> = { stats: [], bareStats: [], ingest: [], bareIngest: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? names : [...names].reverse();
  for (const name of order) times[name].push(await run(name, perRound));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const m = Object.fromEntries(names.map((name) => [name, median(times[name])])) as Record<Case, number>;
for (const name of names) console.log(`${name.padEnd(10)} ${m[name].toFixed(2)} µs/req`);
if (!only) console.log(`stats  hub/bare throughput ${(m.bareStats / m.stats).toFixed(3)}`);
if (!only) console.log(`ingest hub/bare throughput ${(m.bareIngest / m.ingest).toFixed(3)}`);
await hub.close();
