/**
 * Scenario 6, history memory (once per repeat, when the plugin on Node runs): bench/history.ts
 * in its own Node process on core 0, with `--expose-gc`; its figures go to the plugin on Node's
 * sample as `history@<historySize>.*`.
 *
 * @module
 */
import { execFile } from 'node:child_process';
import type { HistoryFigures } from '../../history.ts';
import type { Pinning } from '../servers.ts';
import { type Context, log } from './context.ts';

/** The history sizes measured: a small one and the default. */
export const HISTORY_SIZES = [100, 1000] as const;

/** Runs the measurement with `updates` updates held per size; records it in `sample` (plugin-node's). */
export async function historyMemory(
  ctx: Context,
  pinning: Pinning,
  updates: number,
  sample: Record<string, number>,
): Promise<void> {
  const command = pinning.pin(0, [
    process.execPath,
    '--expose-gc',
    '--import',
    'tsx',
    'bench/history.ts',
    `--updates=${updates}`,
    `--sizes=${HISTORY_SIZES.join(',')}`,
  ]) as [string, ...string[]];
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(command[0], command.slice(1), { timeout: 120_000, maxBuffer: 1024 * 1024 }, (error, out, err) =>
      error ? reject(new Error(`bench/history.ts: ${error.message}\n${err}`)) : resolve(out),
    );
  });
  const line = stdout.split('\n').find((text) => text.startsWith('BENCH_HISTORY '));
  if (!line) ctx.recorder.fail(`bench/history.ts printed no BENCH_HISTORY line:\n${stdout}`);
  const result = JSON.parse(line.slice('BENCH_HISTORY '.length)) as { sizes: HistoryFigures[] };
  for (const figures of result.sizes) {
    const key = `history@${figures.historySize}`;
    sample[`${key}.bytesPerAgent`] = figures.heapPerAgent;
    sample[`${key}.bytesPerUpdate`] = figures.heapPerUpdate;
    sample[`${key}.jsonPerUpdate`] = figures.jsonPerUpdate;
    sample[`${key}.overhead`] = figures.overhead;
    sample[`${key}.publishUs`] = figures.publishUs;
    sample[`${key}.publishUsWithout`] = figures.publishUsWithout;
    log(
      `  history ${figures.historySize} × ${figures.agents} agents: ${(figures.heapPerAgent / 1024).toFixed(1)} KB/agent, ` +
        `${figures.heapPerUpdate.toFixed(0)} B/update (${figures.overhead.toFixed(2)} × its ${figures.jsonPerUpdate.toFixed(0)} B of JSON), ` +
        `publish ${figures.publishUs.toFixed(2)} µs vs ${figures.publishUsWithout.toFixed(2)} µs without history (in process)`,
    );
  }
}
