/**
 * Scenario 4, idle connections, on a fresh server with the heartbeat on (off for Bun's native
 * pub/sub and bare Deno, which have none): RSS per connection after GC between `memLow` and
 * `memHigh` connections, and the heartbeat sweep's server CPU per connection.
 *
 * @module
 */
import type { CpuWindow } from '../proc.ts';
import type { Sample } from '../report.ts';
import type { ServerDef } from '../servers.ts';
import { attach, type Context, connect, log } from './context.ts';

interface IdleResult {
  cpu: CpuWindow;
  pings: number;
  sweeps: number;
  usPerPing: number;
  open: number;
  unexpectedCloses: number;
}

/** Starts `def`, measures, stops it. */
export async function idleScenario(ctx: Context, repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const { memLow, memHigh, heartbeatMs, idleMs } = ctx.options.params;
  const heartbeat = def.name === 'bun-native' || def.name === 'deno-native' ? 0 : heartbeatMs;
  const running = await ctx.servers.start(def, heartbeat);
  try {
    await attach(ctx, def, running);
    const agents = memHigh / 10;
    await connect(ctx, repeat, def, memLow, agents, `memory@${memLow}`);
    const low = await ctx.load<{ rss: number; gc: boolean }>({ op: 'gc' });
    await connect(ctx, repeat, def, memHigh - memLow, agents, `memory@${memHigh}`);
    const idle = await ctx.recorder.measured(repeat, def.name, 'heartbeat', () =>
      ctx.load<IdleResult>({ op: 'idle', windowMs: idleMs }),
    );
    if (idle.unexpectedCloses > 0) {
      ctx.recorder.fail(`${def.name} heartbeat: ${idle.unexpectedCloses} connections closed by the server`);
    }
    const high = await ctx.load<{ rss: number; gc: boolean }>({ op: 'gc' });
    if (!high.gc) log(`  ${def.name}: no GC hook; RSS without a forced GC`);
    sample['idle.bytesPerConn'] = (high.rss - low.rss) / (memHigh - memLow);
    sample['idle.rss'] = high.rss;
    if (heartbeat > 0 && idle.pings > 0) {
      sample['heartbeat.usPerConn'] = idle.usPerPing;
      sample['heartbeat.cores'] = idle.cpu.server;
    }
    log(
      `  ${def.name} idle@${memHigh}: ${((high.rss - low.rss) / (memHigh - memLow) / 1024).toFixed(2)} KB/conn, rss ${(high.rss / 2 ** 20).toFixed(1)} MB` +
        (heartbeat > 0
          ? `, heartbeat ${idle.usPerPing.toFixed(2)} µs/conn/sweep (${idle.sweeps.toFixed(1)} sweeps)`
          : ''),
    );
    await ctx.load({ op: 'disconnect' });
  } finally {
    await ctx.load({ op: 'detach' }).catch(() => {});
    await ctx.servers.stop(running);
  }
}
