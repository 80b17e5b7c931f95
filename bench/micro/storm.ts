/**
 * The restart reconnect storm alone (bench/lib/scenarios/storm.ts), repeated: each repeat runs
 * the plugin (Node 24, SQLite store) and raw `ws` with the same client count, and the script
 * prints every repeat's CPU per connect and the plugin ÷ ws ratios, then their medians and range.
 *
 * `node --import tsx bench/micro/storm.ts [clients=5000] [repeats=3] [node flags, comma-separated]`
 * (e.g. `--cpu-prof,--cpu-prof-dir=/tmp/prof` profiles both servers).
 *
 * @module
 */
import { createRecorder } from '../lib/recorder.ts';
import { stormScenario } from '../lib/scenarios/storm.ts';
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

const plain: number[] = [];
const resumed: number[] = [];
for (let repeat = 0; repeat < repeats; repeat++) {
  const [plugin, ws] = await stormScenario(clients, pinning, recorder, repeat, nodeFlags);
  if (!plugin || !ws) throw new Error('storm: a server gave no result');
  plain.push(plugin.plainCpuUs / ws.plainCpuUs);
  resumed.push(plugin.resumeCpuUs / ws.resumeCpuUs);
  console.log(
    `repeat ${repeat + 1}: plugin ${plugin.plainCpuUs.toFixed(0)}/${plugin.resumeCpuUs.toFixed(0)} µs, ` +
      `ws ${ws.plainCpuUs.toFixed(0)}/${ws.resumeCpuUs.toFixed(0)} µs (plain/resumed); ` +
      `ratios ${(plain.at(-1) as number).toFixed(2)} / ${(resumed.at(-1) as number).toFixed(2)}; ` +
      `recovered ${plugin.recovered}/${ws.recovered} of ${clients}, retries ${plugin.retries}/${ws.retries}`,
  );
}
console.log(
  `storm at N = ${clients}, ${repeats} repeats: plain ${spread(plain)}, resumed ${spread(resumed)} (plugin ÷ ws)`,
);
if (recorder.failures.length > 0) {
  console.error(`storm: ${recorder.failures.join('; ')}`);
  process.exitCode = 1;
}
