/**
 * Scenario 2, flat out: a closed loop bounded by `flatInflight` messages in flight per
 * connection; measures delivered messages per second.
 *
 * @module
 */
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { type Context, runWindow } from './context.ts';

/** Runs at C = `conns` open connections. */
export async function flatOut(ctx: Context, repeat: number, def: ServerDef, conns: number, sample: Sample) {
  const { warmupMs, windowMs } = ctx.options.params;
  await runWindow(
    ctx,
    repeat,
    def,
    `flat@${conns}`,
    { mode: 'closed', inflight: ctx.options.flatInflight * conns, latency: false, warmupMs, windowMs },
    sample,
    `flat@${conns}`,
  );
}
