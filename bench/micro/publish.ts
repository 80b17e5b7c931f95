/**
 * In-process cost of one publish through the hub to an agent with 10 sockets on native topics
 * (as on Bun), against what the `bun-native` bench server does per publish (build the update,
 * stringify, one publish call). Sockets and the topic publish are no-ops: only JavaScript
 * is timed. Interleaved rounds; prints the median ns per publish of each.
 *
 * `node --import tsx bench/micro/publish.ts [rounds] [publishes per round]` (or `bun`).
 *
 * @module
 */
import { Hono } from 'hono';
import type { UpgradeWebSocket, WSContext, WSEvents } from 'hono/ws';
import { createAgentHub } from '../../plugin/index.ts';
import { TASK_FIELDS, taskUpdate } from '../servers/common.ts';

const args = (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
const rounds = Number(args[0] ?? 15);
const perRound = Number(args[1] ?? 20000);
/** `hub` or `native` times only that side (for instruction counts under callgrind); default both. */
const only = args[2];
const AGENTS = 100;

let sink = 0;
/** `nohistory` as 4th argument: `historySize: 0, snapshot: false` (bench `BENCH_HISTORY=0`). */
const history = args[3] !== 'nohistory';
const hub = createAgentHub({
  logger: false,
  heartbeatInterval: 0,
  batchInterval: 0,
  ...(history ? {} : { historySize: 0, snapshot: false }),
});
const topics = {
  subscribe() {},
  unsubscribe() {},
  publish(_via: WSContext, _topic: string, frame: unknown) {
    sink += (frame as string).length;
  },
};
const upgradeWebSocket = ((createEvents: (c: unknown) => WSEvents) => async (c: unknown) => {
  const events = createEvents(c);
  const raw = { readyState: 1, getBufferedAmount: () => 0, bufferedAmount: 0 };
  const context = {
    raw,
    readyState: 1,
    send: (data: string) => {
      sink += data.length;
    },
    close() {},
  } as unknown as WSContext;
  events.onOpen?.(new Event('open'), context);
  return new Response(null, { status: 200 });
}) as unknown as UpgradeWebSocket;
const app = new Hono().route(
  '/agents',
  hub.routes(upgradeWebSocket, { topics, bufferedAmount: () => 0, closeReported: true }),
);
for (let a = 0; a < AGENTS; a++)
  for (let s = 0; s < 10; s++) await app.request(`/agents/bench-agent-${a}/ws`, { headers: { upgrade: 'websocket' } });

const message = `bench|1|${'x'.repeat(24)}`;
const runHub = (n: number) => {
  const start = performance.now();
  for (let i = 0; i < n; i++) void hub.publishTask(`bench-agent-${i % AGENTS}`, { ...TASK_FIELDS, message });
  return ((performance.now() - start) * 1e6) / n;
};
const runNative = (n: number) => {
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const agent = `bench-agent-${i % AGENTS}`;
    topics.publish(undefined as unknown as WSContext, agent, JSON.stringify(taskUpdate(agent, message)));
  }
  return ((performance.now() - start) * 1e6) / n;
};
if (only !== 'native') runHub(perRound);
if (only !== 'hub') runNative(perRound);
const hubTimes: number[] = [];
const nativeTimes: number[] = [];
for (let r = 0; r < rounds; r++) {
  if (only === 'hub') hubTimes.push(runHub(perRound));
  else if (only === 'native') nativeTimes.push(runNative(perRound));
  else if (r % 2) {
    hubTimes.push(runHub(perRound));
    nativeTimes.push(runNative(perRound));
  } else {
    nativeTimes.push(runNative(perRound));
    hubTimes.push(runHub(perRound));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
if (hubTimes.length) console.log(`hub    ${median(hubTimes).toFixed(0)} ns/publish`);
if (nativeTimes.length) console.log(`native ${median(nativeTimes).toFixed(0)} ns/publish`);
console.log(`sockets written ${hub.stats().messages_sent} (sink ${sink})`);
await hub.close();
