/**
 * What every scenario works with, and the steps they share: attaching the load generator to a
 * server, opening connections (with a delivery probe), and running one measured window.
 *
 * @module
 */
import type { RunResult, RunSpec } from '../../load.ts';
import type { Options } from '../args.ts';
import type { Load } from '../loadgen.ts';
import type { Recorder } from '../recorder.ts';
import type { Sample } from '../report.ts';
import type { Running, ServerDef, ServerLauncher } from '../servers.ts';

export interface Context {
  options: Options;
  load: Load;
  recorder: Recorder;
  servers: ServerLauncher;
}

/** Progress goes to stderr; stdout carries the report. */
export const log = (text: string) => console.error(text);

/** Points the load generator at a started server. */
export async function attach(ctx: Context, def: ServerDef, running: Running): Promise<void> {
  await ctx.load({
    op: 'attach',
    target: { serverPid: running.pid, port: running.port, control: running.control, family: def.family },
  });
}

/** Opens `count` more connections over `agents` agents, then checks one publish to each reaches them all. */
export async function connect(
  ctx: Context,
  repeat: number,
  def: ServerDef,
  count: number,
  agents: number,
  scenario: string,
): Promise<{ ms: number; open: number }> {
  const result = await ctx.load<{ ms: number; open: number }>({ op: 'connect', count, agents }, 180_000);
  const probe = await ctx.load<{ expected: number; received: number }>({ op: 'probe' });
  ctx.recorder.check(repeat, def.name, `${scenario} probe`, probe.expected, probe.received);
  return result;
}

/**
 * Runs one publish window (see `RunSpec` in bench/load.ts), checks its deliveries and records
 * its figures in `sample` under `prefix`.
 */
export async function runWindow(
  ctx: Context,
  repeat: number,
  def: ServerDef,
  scenario: string,
  spec: RunSpec,
  sample: Sample,
  prefix: string,
): Promise<RunResult> {
  const result = await ctx.recorder.measured(repeat, def.name, scenario, async () => {
    const r = await ctx.load<RunResult>({ op: 'run', spec });
    ctx.recorder.check(repeat, def.name, scenario, r.expected, r.received);
    return r;
  });
  sample[`${prefix}.delivered`] = result.delivered;
  sample[`${prefix}.cpuUs`] = result.cpuUs;
  if (spec.latency) {
    sample[`${prefix}.p50`] = result.p50;
    sample[`${prefix}.p99`] = result.p99;
  }
  log(
    `  ${def.name} ${scenario}: ${Math.round(result.delivered)} msg/s, ${result.cpuUs.toFixed(3)} µs/msg` +
      (spec.latency ? `, p50 ${result.p50.toFixed(2)} ms p99 ${result.p99.toFixed(2)} ms` : '') +
      `, server ${result.cpu.server.toFixed(2)} loadgen ${result.cpu.loadgen.toFixed(2)} other ${result.cpu.other.toFixed(2)} cores` +
      (result.skipped > 0.001 ? `, ${(result.skipped * 100).toFixed(0)}% offers skipped` : ''),
  );
  return result;
}
