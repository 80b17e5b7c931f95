/**
 * Scenario 3, batching (the plugin on Node, batched and not, at the largest C): dense traffic
 * (`denseRate` ≥ 100 updates/s per agent), then sparse (one update per agent every 250 ms, under
 * one per batch window).
 *
 * @module
 */
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { type Context, runWindow } from './context.ts';

/** Whether `def` runs the batching scenario at C = `conns`. */
export const runsBatching = (ctx: Context, def: ServerDef, conns: number) =>
  conns === ctx.options.maxConns && def.name.startsWith('plugin-node') && !def.variant;

/** Runs at C = `conns` open connections over `agents` agents. */
export async function batching(
  ctx: Context,
  repeat: number,
  def: ServerDef,
  conns: number,
  agents: number,
  sample: Sample,
): Promise<void> {
  const { denseRate, warmupMs, windowMs } = ctx.options.params;
  await runWindow(
    ctx,
    repeat,
    def,
    'dense',
    { mode: 'rate', rate: denseRate * agents, inflight: (denseRate / 4) * conns, latency: false, warmupMs, windowMs },
    sample,
    'dense',
  );
  await runWindow(
    ctx,
    repeat,
    def,
    'sparse',
    { mode: 'rate', rate: 4 * agents, inflight: 4 * conns, latency: true, warmupMs, windowMs },
    sample,
    'sparse',
  );
}
