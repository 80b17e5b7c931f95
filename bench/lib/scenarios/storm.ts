/**
 * A restart's reconnect storm: N idle watchers (10 per agent) connected to the plugin on Node 24
 * with the SQLite store, the server SIGKILLed and restarted on the same file, and every client
 * resuming at once (`?since=&epoch=`); beside raw `ws` on the same Node, killed, restarted and
 * reconnected by the same count, and a bare Hono WebSocket route on the plugin's upgrade path
 * (bench/servers/hono-route.ts: one frame per connect, nothing kept), the floor the hub adds to.
 * Measures the time until every client is back (plugin:
 * `connection_established` with `recovered: true`; ws: open), the server's CPU per connect over
 * that storm, and the same for the first (plain) connects. A client refused while the server is
 * swamped retries after 50 to 250 ms, as real clients back off.
 *
 * The clients run in the bench process; the server is pinned to core 0 like every other server.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { nodeBinary } from '../../../scripts/node-versions.ts';
import { runtimeEnv } from '../../../scripts/runtimes.ts';
import { type ReadyProcess, spawnReady } from '../../../scripts/spawn.ts';
import { monotonicMs, schedCpu } from '../proc.ts';
import type { Recorder } from '../recorder.ts';
import { type Pinning, withOpenFiles } from '../servers.ts';
import { log } from './context.ts';

/** One server's storm figures. */
export interface StormResult {
  server: string;
  clients: number;
  /** First connects: ms until every client was in, server CPU µs per connect. */
  plainMs: number;
  plainCpuUs: number;
  /** After the restart: ms from the server being ready to every client back, CPU µs per connect. */
  resumeMs: number;
  resumeCpuUs: number;
  /** Clients back with `recovered: true` (plugin) or open (ws). */
  recovered: number;
  /** Connection attempts refused or reset during the storm, retried. */
  retries: number;
}

const NODE = '24.21.0';
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** A client's resume point, from its `connection_established`. */
interface Position {
  epoch: string;
  seq: number;
}

/**
 * Opens one client, retrying on refusal; resolves when it is in: for the plugin, when its
 * `connection_established` says `recovered: true` (or, with no resume point, arrives).
 */
function connectOne(
  url: string,
  agent: boolean,
  resume: Position | undefined,
  sockets: WebSocket[],
  counts: { retries: number; recovered: number },
): Promise<Position | undefined> {
  return new Promise((resolve) => {
    const attempt = () => {
      const query = resume ? `?since=${resume.seq}&epoch=${resume.epoch}` : '';
      const socket = new WebSocket(`${url}${query}`, { perMessageDeflate: false });
      let settled = false;
      const retry = () => {
        if (settled) return;
        settled = true;
        counts.retries++;
        socket.removeAllListeners();
        socket.on('error', () => {});
        socket.terminate();
        setTimeout(attempt, 50 + Math.random() * 200);
      };
      socket.on('error', retry);
      socket.on('close', retry);
      const done = (position: Position | undefined) => {
        settled = true;
        socket.removeAllListeners('close');
        socket.removeAllListeners('error');
        socket.on('error', () => {});
        sockets.push(socket);
        resolve(position);
      };
      if (!agent) {
        socket.once('open', () => {
          counts.recovered++;
          done(undefined);
        });
        return;
      }
      socket.on('message', (data) => {
        if (settled) return;
        const frame = JSON.parse(String(data)) as { type: string; epoch: string; seq: number; recovered: boolean };
        if (frame.type !== 'connection_established') return;
        if (!resume || frame.recovered) counts.recovered++;
        done({ epoch: frame.epoch, seq: frame.seq });
      });
    };
    attempt();
  });
}

async function startServer(
  name: string,
  entry: string,
  env: Record<string, string>,
  count: number,
  pinning: Pinning,
  nodeFlags: readonly string[],
): Promise<{ server: ReadyProcess; port: number; pid: number }> {
  const command = [nodeBinary(NODE), ...nodeFlags, '--import', 'tsx', join('bench/servers', entry)];
  const [file, ...args] = pinning.pin(0, withOpenFiles(count * 2 + 1000, command)) as [string, ...string[]];
  const server = await spawnReady({
    name,
    command: file,
    args,
    env: { ...process.env, ...runtimeEnv(), BENCH_HEARTBEAT_MS: '0', BENCH_BATCH_MS: '0', ...env },
    ready: /BENCH_READY (\{.*\})/,
    streams: ['stdout'],
    timeoutMs: 120_000,
    graceMs: 3_000,
  });
  const info = JSON.parse(server.match[1] as string) as { port: number; pid: number };
  return { server, port: info.port, pid: info.pid };
}

/** The storm on one server. */
async function stormOn(
  name: string,
  entry: string,
  agentFamily: boolean,
  count: number,
  pinning: Pinning,
  nodeFlags: readonly string[],
): Promise<StormResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-storm-'));
  const agents = Math.max(1, Math.floor(count / 10));
  const env: Record<string, string> = agentFamily
    ? { BENCH_STORE: join(dir, 'agents.db'), BENCH_PREFILL: `${agents}x2` }
    : {};
  const counts = { retries: 0, recovered: 0 };
  const sockets: WebSocket[] = [];
  let running = await startServer(name, entry, env, count, pinning, nodeFlags);
  try {
    const urlOf = (port: number, i: number) => `ws://127.0.0.1:${port}/agents/bench-agent-${i % agents}/ws`;
    // First connects, 500 at a time: the plain handshake's cost.
    await sleep(300);
    let cpu = schedCpu(running.pid);
    let started = monotonicMs();
    const positions: (Position | undefined)[] = [];
    for (let from = 0; from < count; from += 500) {
      const chunk = Array.from({ length: Math.min(500, count - from) }, (_, k) =>
        connectOne(urlOf(running.port, from + k), agentFamily, undefined, sockets, counts),
      );
      positions.push(...(await Promise.all(chunk)));
    }
    const plainMs = monotonicMs() - started;
    const plainCpuUs = ((schedCpu(running.pid) - cpu) * 1e6) / count;

    // SIGKILL, every client sees its socket close, restart on the same file. When profiling,
    // SIGTERM instead (the bench servers exit at once on it, without closing the store), so the
    // first server's profile of the plain connects is written too.
    running.server.child.kill(nodeFlags.some((flag) => flag.startsWith('--cpu-prof')) ? 'SIGTERM' : 'SIGKILL');
    await running.server.exited;
    for (const socket of sockets.splice(0)) socket.terminate();
    counts.recovered = 0;
    counts.retries = 0;
    running = await startServer(name, entry, { ...env, BENCH_PREFILL: '' }, count, pinning, nodeFlags);
    await sleep(300);
    cpu = schedCpu(running.pid);
    started = monotonicMs();
    await Promise.all(
      positions.map((position, i) => connectOne(urlOf(running.port, i), agentFamily, position, sockets, counts)),
    );
    const resumeMs = monotonicMs() - started;
    const resumeCpuUs = ((schedCpu(running.pid) - cpu) * 1e6) / count;
    return {
      server: name,
      clients: count,
      plainMs,
      plainCpuUs,
      resumeMs,
      resumeCpuUs,
      recovered: counts.recovered,
      retries: counts.retries,
    };
  } finally {
    for (const socket of sockets) socket.terminate();
    await running.server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the storm with `count` clients on the plugin with the SQLite store and on raw ws (both on
 * Node 24, with `--node-flags`); records a delivery check per server (every client back) and
 * returns the figures.
 */
export async function stormScenario(
  count: number,
  pinning: Pinning,
  recorder: Recorder,
  repeat: number,
  nodeFlags: readonly string[] = [],
): Promise<StormResult[]> {
  const results: StormResult[] = [];
  for (const [name, entry, agent] of [
    ['plugin-node24-sqlite', 'plugin-node.ts', true],
    ['ws-node24', 'ws.ts', false],
    ['hono-route-node24', 'hono-route.ts', true],
  ] as const) {
    log(`storm: ${name}, ${count} clients`);
    const result = await stormOn(name, entry, agent, count, pinning, nodeFlags);
    results.push(result);
    recorder.checks.push({
      repeat,
      server: name,
      scenario: `storm@${count}`,
      expected: count,
      received: result.recovered,
    });
    if (result.recovered !== count) {
      recorder.failures.push(`${name} storm: ${result.recovered} of ${count} clients back recovered`);
    }
  }
  return results;
}

/** The storm's table, with the plugin ÷ ws ratios the goal (≤ 1.5) is judged on. */
export function stormTable(results: readonly StormResult[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.server} | ${r.clients} | ${r.plainMs.toFixed(0)} ms | ${r.plainCpuUs.toFixed(0)} µs | ${r.resumeMs.toFixed(0)} ms | ${r.resumeCpuUs.toFixed(0)} µs | ${r.recovered} of ${r.clients} | ${r.retries} |`,
  );
  const [plugin, ws, route] = results;
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? (a / b).toFixed(2) : '–');
  return [
    '### Restart reconnect storm (Node 24, SIGKILL, restart on the same file, every client back at once)',
    '',
    '| server | clients | first connects: all in | CPU/connect | after restart: all back | CPU/connect | recovered | retries |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    `CPU per connect, plugin ÷ raw ws: plain ${ratio(plugin?.plainCpuUs, ws?.plainCpuUs)}, resumed ${ratio(plugin?.resumeCpuUs, ws?.resumeCpuUs)} (goal ≤ 1.5)`,
    `Of which routing through Hono, bare Hono route ÷ raw ws: plain ${ratio(route?.plainCpuUs, ws?.plainCpuUs)}, resumed ${ratio(route?.resumeCpuUs, ws?.resumeCpuUs)}; the hub, plugin ÷ bare Hono route: plain ${ratio(plugin?.plainCpuUs, route?.plainCpuUs)}, resumed ${ratio(plugin?.resumeCpuUs, route?.resumeCpuUs)}`,
  ].join('\n');
}
