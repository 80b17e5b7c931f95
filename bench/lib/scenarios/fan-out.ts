/**
 * The fan-out session of one server: one process with the heartbeat off runs, at every C in
 * increasing order, the fixed-rate and flat-out scenarios (not when batched), at the largest C
 * the batching scenario (plugin on Node), and at the end the HTTP scenario (hub, unbatched). A
 * variant (`ServerDef.variant`) runs the fixed-rate and flat-out scenarios only.
 *
 * @module
 */
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { batching, runsBatching } from './batching.ts';
import { attach, type Context, connect } from './context.ts';
import { fixedRate } from './fixed-rate.ts';
import { flatOut } from './flat-out.ts';
import { httpScenario } from './http.ts';

export async function fanOut(ctx: Context, repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const { params, maxConns } = ctx.options;
  const { prefill } = ctx.options;
  const running = await ctx.servers.start(def, 0, { agents: maxConns / 10, updates: prefill });
  try {
    await attach(ctx, def, running);
    let open = 0;
    for (const conns of [...params.conns].sort((a, b) => a - b)) {
      // C connections over C/10 agents: 10 subscribers per agent.
      const agents = conns / 10;
      const connected = await connect(ctx, repeat, def, conns - open, agents, `connect@${conns}`);
      open = connected.open;
      const subscribers = conns / agents;
      const batched = (def.batchMs ?? 0) > 0;
      if (!batched) {
        await fixedRate(ctx, repeat, def, conns, subscribers, sample);
        await flatOut(ctx, repeat, def, conns, sample);
      }
      if (runsBatching(ctx, def, conns)) await batching(ctx, repeat, def, conns, agents, sample);
      // The number of agents changes with C: close every connection before the next C.
      if (conns !== maxConns) {
        await ctx.load({ op: 'disconnect' });
        open = 0;
      }
    }
    await ctx.load({ op: 'disconnect' });
    if (def.hub && !def.batchMs && !def.variant) await httpScenario(ctx, repeat, def, sample);
  } finally {
    await ctx.load({ op: 'detach' }).catch(() => {});
    await ctx.servers.stop(running);
  }
}
