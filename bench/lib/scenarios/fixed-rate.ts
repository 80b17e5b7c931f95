/**
 * Scenario 1, fixed rate: an open loop at `fixedRate` publishes per second over all agents;
 * measures server CPU per delivered message and publish→receive latency.
 *
 * @module
 */
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { type Context, runWindow } from './context.ts';

/** Runs at C = `conns` open connections, `subscribers` per agent. */
export async function fixedRate(
  ctx: Context,
  repeat: number,
  def: ServerDef,
  conns: number,
  subscribers: number,
  sample: Sample,
): Promise<void> {
  const { fixedRate: rate, warmupMs, windowMs } = ctx.options.params;
  await runWindow(
    ctx,
    repeat,
    def,
    `fixed@${conns}`,
    { mode: 'rate', rate: rate / subscribers, inflight: 2 * rate, latency: true, warmupMs, windowMs },
    sample,
    `fixed@${conns}`,
  );
}
