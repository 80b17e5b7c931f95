/**
 * `npm run bench`: fan-out, latency, memory and HTTP load of the plugin against raw `ws`,
 * Socket.IO and Bun's native pub/sub, in one run. bench/README.md says what
 * each scenario measures and holds the latest full run's results.
 *
 * Flags (bench/lib/args.ts): `--quick` (seconds-long version of every scenario, for CI),
 * `--no-write` (print only), `--repeats=N`, `--servers=a,b` (subset), `--conns=1000,5000`,
 * `--window=ms`, `--inflight=N`, `--node-flags=a,b` (extra flags for the Node servers),
 * `--prefill=N` (updates per agent before the fan-out windows), `--scale=N` (connections of the
 * scale scenario; 0 skips it), `--scale-only`, `--storm=N` (clients of the restart reconnect storm on the
 * plugin with the SQLite store and raw ws, both on Node 24; the scale count by default; 0 skips it).
 *
 * Repeats are the outer loop; every server runs once per repeat, in a rotating order, each in
 * its own process pinned to core 0 while the one load generator is pinned to core 1. After the
 * servers, each repeat measures the history's memory in a process of its own (bench/history.ts).
 * The scale scenario runs once, after the last repeat, for the plugin on each runtime and raw `ws`.
 *
 * Layout: bench/lib/servers.ts starts the servers (bench/servers/), bench/lib/loadgen.ts drives
 * the load generator (bench/load.ts), bench/lib/scenarios/ holds one file per scenario family,
 * bench/lib/recorder.ts keeps the delivery checks and window log, bench/lib/results.ts writes
 * the report (bench/lib/goals.ts, bench/lib/report.ts).
 *
 * @module
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './lib/args.ts';
import { startLoadGenerator } from './lib/loadgen.ts';
import { createRecorder } from './lib/recorder.ts';
import type { Repeats, Sample } from './lib/report.ts';
import { buildReport, writeResults } from './lib/results.ts';
import { type Context, log } from './lib/scenarios/context.ts';
import { fanOut } from './lib/scenarios/fan-out.ts';
import { historyMemory } from './lib/scenarios/history.ts';
import { idleScenario } from './lib/scenarios/idle.ts';
import { isScaleServer, scaleScenario } from './lib/scenarios/scale.ts';
import { type StormResult, stormScenario, stormTable } from './lib/scenarios/storm.ts';
import { detectPinning, findRuntimes, type ServerDef, selectServers, serverLauncher } from './lib/servers.ts';

/** Runs the benchmark with the command line `args`; resolves with the process exit code. */
export async function main(args: readonly string[] = process.argv.slice(2)): Promise<number> {
  const options = parseArgs(args);
  const { params, quick } = options;
  const runtimes = findRuntimes();
  const servers = selectServers(options.servers, runtimes);
  const pinning = detectPinning();
  const launcher = serverLauncher(runtimes, pinning, options.nodeFlags);
  const loadgen = startLoadGenerator(pinning);
  const recorder = createRecorder(params);
  const ctx: Context = { options, load: loadgen.load, recorder, servers: launcher };

  const repeats: Repeats = [];
  let stormResults: StormResult[] = [];
  const started = Date.now();
  let exitCode = 0;
  try {
    log(
      `bench: ${quick ? 'quick' : 'full'} run, ${params.repeats} repeat(s), C = ${params.conns.join(', ')}, servers: ${servers.map((s) => s.name).join(', ')}` +
        (pinning.taskset ? ', pinned: servers core 0, load generator core 1' : ', not pinned (no taskset)'),
    );
    for (let repeat = 0; repeat < params.repeats; repeat++) {
      const samples: Record<string, Sample> = {};
      repeats.push(samples);
      // Rotate the order every repeat so no server always runs first or last.
      const order = servers.map((_, i) => servers[(i + repeat) % servers.length] as ServerDef);
      if (options.scaleOnly) break;
      for (const def of order) {
        log(`repeat ${repeat + 1}/${params.repeats}: ${def.name}`);
        const sample: Sample = {};
        samples[def.name] = sample;
        await fanOut(ctx, repeat, def, sample);
        if (!def.variant) await idleScenario(ctx, repeat, def, sample);
      }
      const node = samples['plugin-node'];
      if (node) {
        log(`repeat ${repeat + 1}/${params.repeats}: history memory`);
        await historyMemory(ctx, pinning, quick ? 20_000 : 100_000, node);
      }
    }
    const last = repeats.length - 1;
    const scaled = params.scale.target > 0 ? servers.filter((def) => isScaleServer(def.name)) : [];
    for (const def of scaled) {
      log(`scale: ${def.name}, ${params.scale.target} connections`);
      const samples = repeats[last] as Record<string, Sample>;
      samples[def.name] ??= {};
      try {
        await scaleScenario(ctx, pinning, last, def, params.scale, samples[def.name] as Sample);
      } catch (error) {
        // Recorded as a failure (once); the other servers still run.
        const message = (error as Error).message;
        if (!recorder.failures.includes(message)) recorder.failures.push(`${def.name} scale: ${message}`);
        log(`  ${def.name} scale FAILED: ${(error as Error).stack ?? error}`);
      }
    }
    if (params.storm > 0) {
      try {
        stormResults = await stormScenario(params.storm, pinning, recorder, last, options.nodeFlags);
      } catch (error) {
        recorder.failures.push(`storm: ${(error as Error).message}`);
        log(`  storm FAILED: ${(error as Error).stack ?? error}`);
      }
    }
  } catch (error) {
    console.error(`bench: FAILED: ${(error as Error).stack ?? error}`);
    exitCode = 1;
  } finally {
    await loadgen.close();
    launcher.killAll();
  }

  const run = { options, servers, pinned: Boolean(pinning.taskset), repeats, recorder };
  const report = buildReport(run);
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(report.markdown);
  if (stormResults.length > 0) console.log(`\n${stormTable(stormResults)}\n`);
  console.log(`bench: ${minutes} min, ${recorder.checks.length} delivery checks, ${recorder.failures.length} failures`);
  if (options.write && repeats.length > 0 && exitCode === 0) writeResults(run, report);
  console.log(`BENCH_CHECKS ${JSON.stringify(recorder.checks)}`);
  if (recorder.failures.length > 0) {
    console.error(`bench: ${recorder.failures.length} delivery check(s) FAILED:\n- ${recorder.failures.join('\n- ')}`);
    exitCode = 1;
  }
  return exitCode;
}

/** True when this file is the program (`node --import tsx bench/run.ts`), not imported. */
const isEntry = (): boolean => {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
};

if (isEntry()) process.exit(await main());
