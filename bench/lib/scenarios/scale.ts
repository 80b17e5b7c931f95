/**
 * The scale scenario: as many idle WebSocket connections to one server process as asked for
 * (`--scale=N`, 50,000 in a full run), all watching one agent, with the heartbeat on. Reports
 * RSS per connection after GC, the heartbeat sweep's server CPU (ms per sweep, µs per
 * connection), the connect rate, and the latency of one update broadcast to all of them
 * (p50, p99 and the last client, the median of several broadcasts).
 *
 * One process may hold only as many sockets as its open-files limit allows, so the server is
 * started with `ulimit -n` raised, the clients are spread over several worker processes
 * (bench/scale-clients.ts) and over the loopback addresses 127.0.0.2–127.0.0.9 (each source
 * address has its own ephemeral ports). When the server's limit cannot be raised far enough, the
 * scenario opens as many as it allows and says what stopped it.
 *
 * @module
 */

import { openControl } from '../control.ts';
import { type LoadGenerator, startWorker } from '../loadgen.ts';
import { canRaiseLimits, cpuWindow, monotonicMs, openFileCount, openFilesLimit, rssBytes, snapshot } from '../proc.ts';
import type { Sample } from '../report.ts';
import type { Pinning, ServerDef } from '../servers.ts';
import { type Context, log } from './context.ts';

/**
 * The servers the scale scenario runs, when selected: the plugin on each runtime, raw `ws`, and
 * the Bun and Deno floors (their bare WebSocket servers, no heartbeat).
 */
const SCALE_SERVERS: readonly string[] = [
  'plugin-node',
  'ws',
  'plugin-bun',
  'bun-native',
  'plugin-deno',
  'deno-native',
];

/** Whether the scale scenario runs on the server named `name`. */
export const isScaleServer = (name: string): boolean => SCALE_SERVERS.includes(name);

/** Connections per client worker: under the default hard limit of 1024 × 16 with room to spare. */
const PER_WORKER = 12_500;
/** File descriptors a server keeps besides its sockets (runtime, control channel, stdio), with margin. */
const SERVER_FD_MARGIN = 200;
const SOURCES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);

/** The parameters of one scale run. */
export interface ScaleParams {
  /** Connections asked for. */
  target: number;
  heartbeatMs: number;
  /** Idle window over which the heartbeat's CPU is read. */
  idleMs: number;
  broadcasts: number;
}

const percentile = (sorted: readonly number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : (sorted[sorted.length >> 1] as number);
};

/**
 * Runs the scale scenario on `def`; records `scale.*` in `sample` and, when fewer connections
 * than asked were opened, a note saying why.
 */
export async function scaleScenario(
  ctx: Context,
  pinning: Pinning,
  repeat: number,
  def: ServerDef,
  params: ScaleParams,
  sample: Sample,
): Promise<void> {
  const { target, heartbeatMs, idleMs, broadcasts } = params;
  const running = await ctx.servers.start(def, heartbeatMs, undefined, target + 4 * SERVER_FD_MARGIN);
  const workers: LoadGenerator[] = [];
  const control = await openControl(running.control);
  try {
    const limit = openFilesLimit(running.pid);
    const capacity = limit ? limit.soft - openFileCount(running.pid) - SERVER_FD_MARGIN : target;
    const count = Math.max(0, Math.min(target, capacity));
    sample['scale.target'] = target;
    if (count < target) {
      const raise = canRaiseLimits();
      ctx.recorder.note(
        `${def.name}: ${count} of ${target} connections: the server process may open ${limit?.soft} files ` +
          `(hard limit ${limit?.hard})${raise === false ? ', and this machine does not let the bench raise it (no CAP_SYS_RESOURCE)' : ''}.`,
      );
    }
    const gc = async () => {
      await control.ask('gc', 120_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      return rssBytes(running.pid);
    };
    const shares: number[] = [];
    for (let left = count; left > 0; left -= PER_WORKER) shares.push(Math.min(PER_WORKER, left));
    for (const _ of shares) workers.push(startWorker(pinning, 'bench/scale-clients.ts', PER_WORKER + 1000));
    const url = `ws://127.0.0.1:${running.port}/agents/bench-agent-0/ws`;
    const family = def.family === 'plain' ? 'plain' : 'agent';
    const openOn = (worker: number, share: number) =>
      (workers[worker] as LoadGenerator).load<{ ms: number; opened: number; failed: number; firstError: string }>(
        { op: 'open', spec: { url, family, count: share, sources: SOURCES, concurrency: 128 } },
        30 * 60_000,
      );
    // A first batch warms the server up (code compiled, pools grown), so the memory per
    // connection is read between two loaded states, as the idle scenario does.
    const warm = Math.min(500, Math.floor(count / 10));
    shares[0] = (shares[0] ?? 0) - warm;
    if (warm > 0) await openOn(0, warm);
    const rss0 = await gc();
    const started = monotonicMs();
    const beforeConnect = snapshot(running.pid);
    const opened = await Promise.all(shares.map((share, i) => openOn(i, share)));
    const connectCpu = cpuWindow(beforeConnect, snapshot(running.pid));
    const connectMs = monotonicMs() - started;
    // `opened` counts each worker's connections so far, the warm-up batch included.
    const open = opened.reduce((sum, o) => sum + o.opened, 0);
    const failed = opened.reduce((sum, o) => sum + o.failed, 0);
    sample['scale.conns'] = open;
    sample['scale.connectPerSec'] = (open - warm) / (connectMs / 1000);
    sample['scale.connectCpuUs'] = (connectCpu.serverSeconds * 1e6) / (open - warm);
    if (failed > 0) {
      ctx.recorder.note(
        `${def.name}: ${failed} of ${count} handshakes failed (first: ${opened.find((o) => o.firstError)?.firstError}).`,
      );
    }
    log(`  ${def.name} scale: ${open} connections in ${(connectMs / 1000).toFixed(1)} s`);

    const rss1 = await gc();
    sample['scale.bytesPerConn'] = (rss1 - rss0) / (open - warm);
    sample['scale.rss'] = rss1;

    const status = async () => {
      const all = await Promise.all(
        workers.map((w) => w.load<{ open: number; pings: number; unexpectedCloses: number }>({ op: 'status' })),
      );
      return all.reduce((a, b) => ({
        open: a.open + b.open,
        pings: a.pings + b.pings,
        unexpectedCloses: a.unexpectedCloses + b.unexpectedCloses,
      }));
    };
    const before = await status();
    if (before.unexpectedCloses > 0)
      log(`  ${def.name} scale: ${before.unexpectedCloses} closed by the server while connecting`);
    const a = snapshot(running.pid);
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const b = snapshot(running.pid);
    const after = await status();
    if (after.unexpectedCloses > before.unexpectedCloses)
      log(`  ${def.name} scale: ${after.unexpectedCloses - before.unexpectedCloses} closed by the server while idle`);
    const cpu = cpuWindow(a, b);
    const sweeps = (after.pings - before.pings) / Math.max(1, open);
    if (sweeps > 0) {
      sample['scale.sweepMs'] = (cpu.serverSeconds * 1000) / sweeps;
      sample['scale.sweepUsPerConn'] = (cpu.serverSeconds * 1e6) / (sweeps * open);
    }

    const p50s: number[] = [];
    const p99s: number[] = [];
    const lasts: number[] = [];
    let lost = 0;
    for (let k = 0; k < broadcasts; k++) {
      await Promise.all(workers.map((w) => w.load({ op: 'arm' })));
      control.send({ op: 'pub', t: monotonicMs(), a: [0] });
      const parts = await Promise.all(
        workers.map((w, i) =>
          w.load<number[]>({ op: 'collect', count: opened[i]?.opened ?? 0, timeoutMs: 30_000 }, 60_000),
        ),
      );
      const latencies = parts.flat().sort((x, y) => x - y);
      lost += open - latencies.length;
      p50s.push(percentile(latencies, 0.5));
      p99s.push(percentile(latencies, 0.99));
      lasts.push(latencies[latencies.length - 1] ?? Number.NaN);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    sample['scale.p50'] = median(p50s);
    sample['scale.p99'] = median(p99s);
    sample['scale.last'] = median(lasts);
    const end = await status();
    if (lost > 0 || end.unexpectedCloses > 0) {
      // What the hub saw, for the failure below.
      const stats = def.hub
        ? await fetch(`http://127.0.0.1:${running.port}/agents/ws/stats`)
            .then((r) => r.text())
            .catch((e) => String(e))
        : '';
      log(`  ${def.name} scale: ${lost} deliveries missing, ${end.unexpectedCloses} closed by the server ${stats}`);
    }
    ctx.recorder.check(repeat, def.name, `scale@${target} broadcasts`, open * broadcasts, open * broadcasts - lost);
    if (end.unexpectedCloses > 0) {
      ctx.recorder.fail(`${def.name} scale: ${end.unexpectedCloses} connections closed by the server`);
    }
    log(
      `  ${def.name} scale@${open}: ${(sample['scale.bytesPerConn'] / 1024).toFixed(2)} KB/conn, ` +
        `${Math.round(sample['scale.connectPerSec'])} conn/s (${sample['scale.connectCpuUs'].toFixed(0)} µs server CPU each), sweep ${sample['scale.sweepMs']?.toFixed(1)} ms ` +
        `(${sample['scale.sweepUsPerConn']?.toFixed(2)} µs/conn, ${sweeps.toFixed(1)} sweeps), broadcast p50 ` +
        `${sample['scale.p50'].toFixed(1)} ms p99 ${sample['scale.p99'].toFixed(1)} ms last ${sample['scale.last'].toFixed(1)} ms`,
    );
  } finally {
    control.close();
    await ctx.servers.stop(running);
    await Promise.all(workers.map((w) => w.close()));
  }
}
