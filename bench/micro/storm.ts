/**
 * The restart reconnect storm alone (bench/lib/scenarios/storm.ts), repeated: each repeat runs
 * the plugin (Node 24, SQLite store), raw `ws` and a bare Hono WebSocket route
 * (bench/servers/hono-route.ts) with the same client count, and the script prints every repeat's
 * CPU per connect and the ratios (plugin ÷ ws, the goal's; Hono route ÷ ws, what routing costs;
 * plugin ÷ Hono route, what the hub costs), then their medians and range.
 *
 * `node --import tsx bench/micro/storm.ts [clients=5000] [repeats=3] [node flags, comma-separated]`
 * (e.g. `--cpu-prof,--cpu-prof-dir=/tmp/prof` profiles both servers).
 *
 * @module
 */
import { createRecorder } from '../lib/recorder.ts';
import { type StormResult, stormScenario } from '../lib/scenarios/storm.ts';
import { detectPinning } from '../lib/servers.ts';

const [clientsArg, repeatsArg, flagsArg] = process.argv.slice(2);
const clients = Number(clientsArg ?? 5000);
const repeats = Number(repeatsArg ?? 3);
const nodeFlags = flagsArg ? flagsArg.split(',') : [];
const pinning = detectPinning();
const recorder = createRecorder({ maxOther: 1, attempts: 1 });

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const spread = (values: number[]) =>
  `${median(values).toFixed(2)} [${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}]`;

/** Each ratio's values over the repeats, plain and resumed. */
const ratios = {
  'plugin ÷ ws': { plain: [] as number[], resumed: [] as number[] },
  'Hono route ÷ ws': { plain: [] as number[], resumed: [] as number[] },
  'plugin ÷ Hono route': { plain: [] as number[], resumed: [] as number[] },
};
const both = (a: StormResult, b: StormResult) => [a.plainCpuUs / b.plainCpuUs, a.resumeCpuUs / b.resumeCpuUs] as const;
for (let repeat = 0; repeat < repeats; repeat++) {
  const [plugin, ws, route] = await stormScenario(clients, pinning, recorder, repeat, nodeFlags);
  if (!plugin || !ws || !route) throw new Error('storm: a server gave no result');
  const pairs = [both(plugin, ws), both(route, ws), both(plugin, route)];
  Object.values(ratios).forEach((ratio, index) => {
    const [plain, resumed] = pairs[index] as readonly [number, number];
    ratio.plain.push(plain);
    ratio.resumed.push(resumed);
  });
  const us = (r: StormResult) => `${r.plainCpuUs.toFixed(0)}/${r.resumeCpuUs.toFixed(0)} µs`;
  console.log(
    `repeat ${repeat + 1} (plain/resumed): plugin ${us(plugin)}, ws ${us(ws)}, Hono route ${us(route)}; ` +
      `plugin ÷ ws ${pairs[0]?.map((value) => value.toFixed(2)).join('/')}; ` +
      `recovered ${plugin.recovered}/${ws.recovered}/${route.recovered} of ${clients}, ` +
      `retries ${plugin.retries}/${ws.retries}/${route.retries}`,
  );
}
for (const [name, { plain, resumed }] of Object.entries(ratios)) {
  console.log(
    `storm at N = ${clients}, ${repeats} repeats, ${name}: plain ${spread(plain)}, resumed ${spread(resumed)}`,
  );
}
if (recorder.failures.length > 0) {
  console.error(`storm: ${recorder.failures.join('; ')}`);
  process.exitCode = 1;
}
