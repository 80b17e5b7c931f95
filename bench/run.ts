/**
 * `npm run bench`: fan-out, latency, memory and HTTP load of the plugin against raw `ws`,
 * Socket.IO and Bun's native pub/sub, in one run. See bench/README section in the project
 * README for what each scenario measures.
 *
 * Flags: `--quick` (seconds-long version of every scenario, for CI), `--no-write` (print only),
 * `--repeats=N`, `--servers=a,b` (subset), `--conns=1000,5000`, `--window=ms`.
 *
 * Repeats are the outer loop; every server runs once per repeat, in a rotating order, each in
 * its own process pinned to core 0 while the one load generator is pinned to core 1.
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { runtimeBinary, runtimeEnv } from '../scripts/runtimes.ts';
import type { CpuWindow } from './lib/proc.ts';
import {
  type ChartPanel,
  type Column,
  chartSvg,
  figure,
  fmtSummary,
  type GoalDef,
  judge,
  paired,
  type RatioDef,
  type Repeats,
  type Sample,
  table,
} from './lib/report.ts';
import type { Family, RunResult, RunSpec } from './load.ts';

// ---- options -----------------------------------------------------------------------------

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = flag('quick');
const write = !flag('no-write');

const P = quick
  ? {
      repeats: 1,
      conns: [200],
      warmupMs: 150,
      windowMs: 400,
      fixedRate: 4_000,
      denseRate: 100,
      memLow: 40,
      memHigh: 400,
      heartbeatMs: 250,
      idleMs: 600,
      http: { amount: 400, connections: 10 },
      maxOther: 0.5,
      attempts: 1,
    }
  : {
      repeats: 5,
      conns: [1000, 5000],
      warmupMs: 600,
      windowMs: 2000,
      fixedRate: 20_000,
      denseRate: 200,
      memLow: 500,
      memHigh: 5000,
      heartbeatMs: 1000,
      idleMs: 2000,
      http: { durationMs: 1500, warmupMs: 300, connections: 50 },
      maxOther: 0.25,
      attempts: 2,
    };
if (option('repeats')) P.repeats = Number(option('repeats'));
if (option('conns')) P.conns = (option('conns') as string).split(',').map(Number);
if (option('window')) P.windowMs = Number(option('window'));
/** Flat-out in-flight bound, in messages per connection. */
const flatInflight = Number(option('inflight') ?? 16);
const maxConns = Math.max(...P.conns);
/** Extra flags for the Node servers, e.g. `--node-flags=--cpu-prof,--cpu-prof-dir=/tmp/prof`. */
const nodeFlags = option('node-flags')?.split(',') ?? [];

// ---- servers -----------------------------------------------------------------------------

/** The project's own Deno and Bun (scripts/runtimes.ts), or undefined when not installed. */
const binary = (name: 'bun' | 'deno'): string | undefined => {
  try {
    return runtimeBinary(name);
  } catch {
    return undefined;
  }
};
const bunPath = binary('bun');
const denoPath = binary('deno');

interface ServerDef {
  name: string;
  label: string;
  family: Family;
  runtime: 'node' | 'bun' | 'deno';
  entry: string;
  batchMs?: number;
  /** Runs the hub: gets the sparse/dense batching scenarios and the HTTP scenario. */
  hub: boolean;
}

const ALL: ServerDef[] = [
  { name: 'plugin-node', label: 'plugin · Node', family: 'agent', runtime: 'node', entry: 'plugin-node.ts', hub: true },
  {
    name: 'plugin-node-batched',
    label: 'plugin · Node · batch 100 ms',
    family: 'agent',
    runtime: 'node',
    entry: 'plugin-node.ts',
    batchMs: 100,
    hub: true,
  },
  { name: 'ws', label: 'raw ws', family: 'plain', runtime: 'node', entry: 'ws.ts', hub: false },
  { name: 'socketio', label: 'Socket.IO', family: 'sio', runtime: 'node', entry: 'socketio.ts', hub: false },
  { name: 'plugin-bun', label: 'plugin · Bun', family: 'agent', runtime: 'bun', entry: 'plugin-bun.ts', hub: true },
  {
    name: 'bun-native',
    label: 'Bun server.publish',
    family: 'plain',
    runtime: 'bun',
    entry: 'bun-native.ts',
    hub: false,
  },
  { name: 'plugin-deno', label: 'plugin · Deno', family: 'agent', runtime: 'deno', entry: 'plugin-deno.ts', hub: true },
];

const wanted = option('servers')?.split(',');
const available = (def: ServerDef) =>
  def.runtime === 'bun' ? bunPath !== undefined : def.runtime === 'deno' ? denoPath !== undefined : true;
const SERVERS = ALL.filter((def) => (!wanted || wanted.includes(def.name)) && available(def));
for (const def of ALL) if (!available(def)) console.error(`bench: skipping ${def.name}: ${def.runtime} not installed`);

const taskset = spawnSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).stdout.trim();
const pin = (core: number, command: string[]) =>
  taskset && cpus().length > 1 ? [taskset, '-c', String(core), ...command] : command;

interface Running {
  child: ChildProcess;
  pid: number;
  port: number;
  control: number;
}

const children = new Set<ChildProcess>();

function startServer(def: ServerDef, heartbeatMs: number): Promise<Running> {
  const entry = join('bench/servers', def.entry);
  const command =
    def.runtime === 'node'
      ? [process.execPath, '--expose-gc', ...nodeFlags, '--import', 'tsx', entry]
      : def.runtime === 'bun'
        ? [bunPath as string, 'run', entry]
        : [denoPath as string, 'run', '-A', '--cached-only', '--v8-flags=--expose-gc', entry];
  const [file, ...rest] = pin(0, command) as [string, ...string[]];
  const child = spawn(file, rest, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ...runtimeEnv(),
      BENCH_BATCH_MS: String(def.batchMs ?? 0),
      BENCH_HEARTBEAT_MS: String(heartbeatMs),
    },
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(`[${def.name}] ${chunk}`));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${def.name} did not start within 60 s`)), 60_000);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /BENCH_READY (\{.*\})/.exec(out);
      if (match) {
        clearTimeout(timer);
        const info = JSON.parse(match[1] as string) as { port: number; control: number; pid: number };
        resolve({ child, ...info });
        out = '';
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${def.name} exited with ${code} before it was ready`));
    });
  });
}

async function stopServer(running: Running): Promise<void> {
  const { child } = running;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

// ---- the load generator --------------------------------------------------------------------

const [loadFile, ...loadArgs] = pin(1, [process.execPath, '--import', 'tsx', 'bench/load.ts']) as [string, ...string[]];
const loadgen = spawn(loadFile, loadArgs, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
children.add(loadgen);
let loadSeq = 0;
const loadWaiters = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
loadgen.on('message', (message: { id: number; result?: unknown; error?: string }) => {
  const waiter = loadWaiters.get(message.id);
  loadWaiters.delete(message.id);
  if (message.error) waiter?.reject(new Error(`load generator: ${message.error}`));
  else waiter?.resolve(message.result);
});
loadgen.on('exit', (code) => {
  for (const waiter of loadWaiters.values()) waiter.reject(new Error(`load generator exited (${code})`));
  loadWaiters.clear();
});

function load<T>(command: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
  const id = ++loadSeq;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`load generator: ${command.op} timed out`)), timeoutMs);
    loadWaiters.set(id, {
      resolve: (value) => {
        clearTimeout(timer);
        resolve(value as T);
      },
      reject: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    });
    loadgen.send({ id, command });
  });
}

// ---- checks and windows ------------------------------------------------------------------

/** Every scenario's exact delivery check, for the report and for the CI test. */
interface Check {
  repeat: number;
  server: string;
  scenario: string;
  expected: number;
  received: number;
}
const checks: Check[] = [];
const failures: string[] = [];

function check(repeat: number, server: string, scenario: string, expected: number, received: number): void {
  checks.push({ repeat, server, scenario, expected, received });
  if (expected === 0 || received !== expected) {
    const message = `${server} ${scenario}: delivered/published = ${received}/${expected} = ${(received / expected).toFixed(6)}, expected exactly 1`;
    failures.push(message);
    throw new Error(message);
  }
}

interface WindowLog {
  repeat: number;
  server: string;
  scenario: string;
  attempt: number;
  other: number;
  server_cores: number;
  loadgen_cores: number;
  discarded: boolean;
}
const windows: WindowLog[] = [];

/**
 * Runs one measured window, again when other processes used more than `P.maxOther` cores of
 * CPU during it (at most `P.attempts` times; the quietest attempt is kept).
 */
async function measured<T extends { cpu: CpuWindow }>(
  repeat: number,
  server: string,
  scenario: string,
  attempt: () => Promise<T>,
): Promise<T> {
  let best: T | undefined;
  for (let n = 1; n <= P.attempts; n++) {
    const result = await attempt();
    const quiet = result.cpu.other <= P.maxOther;
    windows.push({
      repeat,
      server,
      scenario,
      attempt: n,
      other: round(result.cpu.other, 3),
      server_cores: round(result.cpu.server, 3),
      loadgen_cores: round(result.cpu.loadgen, 3),
      discarded: !quiet,
    });
    if (!best || result.cpu.other < best.cpu.other) best = result;
    if (quiet) return result;
    console.error(`  ${server} ${scenario}: other processes used ${result.cpu.other.toFixed(2)} cores, again`);
  }
  const last = windows.findLast((w) => w.server === server && w.scenario === scenario && w.repeat === repeat);
  if (last) last.discarded = false;
  return best as T;
}

const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;
const log = (text: string) => console.error(text);

// ---- scenarios ---------------------------------------------------------------------------

async function runWindow(
  repeat: number,
  def: ServerDef,
  scenario: string,
  spec: RunSpec,
  sample: Sample,
  prefix: string,
): Promise<RunResult> {
  const result = await measured(repeat, def.name, scenario, async () => {
    const r = await load<RunResult>({ op: 'run', spec });
    check(repeat, def.name, scenario, r.expected, r.received);
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

async function attachTo(def: ServerDef, running: Running) {
  await load({
    op: 'attach',
    target: { serverPid: running.pid, port: running.port, control: running.control, family: def.family },
  });
}

async function connect(repeat: number, def: ServerDef, count: number, agents: number, scenario: string) {
  const result = await load<{ ms: number; open: number }>({ op: 'connect', count, agents }, 180_000);
  const probe = await load<{ expected: number; received: number }>({ op: 'probe' });
  check(repeat, def.name, `${scenario} probe`, probe.expected, probe.received);
  return result;
}

/** Fan-out scenarios at every C, on a server with the heartbeat off. */
async function fanOut(repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const running = await startServer(def, 0);
  try {
    await attachTo(def, running);
    let open = 0;
    for (const conns of [...P.conns].sort((a, b) => a - b)) {
      const agents = conns / 10;
      const connected = await connect(repeat, def, conns - open, agents, `connect@${conns}`);
      open = connected.open;
      const subscribers = conns / agents;
      const window = { warmupMs: P.warmupMs, windowMs: P.windowMs };
      const batched = (def.batchMs ?? 0) > 0;
      if (!batched) {
        // 1. Fixed rate: server CPU per delivered message, latency.
        await runWindow(
          repeat,
          def,
          `fixed@${conns}`,
          { mode: 'rate', rate: P.fixedRate / subscribers, inflight: 2 * P.fixedRate, latency: true, ...window },
          sample,
          `fixed@${conns}`,
        );
        // 2. Flat out, closed loop: delivered messages per second.
        await runWindow(
          repeat,
          def,
          `flat@${conns}`,
          { mode: 'closed', inflight: flatInflight * conns, latency: false, ...window },
          sample,
          `flat@${conns}`,
        );
      }
      if (conns === maxConns && def.name.startsWith('plugin-node')) {
        // 3. Batching: dense traffic (>= 100 updates/s per agent), then sparse (one update per
        // agent every 250 ms, under one per window).
        await runWindow(
          repeat,
          def,
          'dense',
          {
            mode: 'rate',
            rate: P.denseRate * agents,
            inflight: (P.denseRate / 4) * conns,
            latency: false,
            ...window,
          },
          sample,
          'dense',
        );
        await runWindow(
          repeat,
          def,
          'sparse',
          { mode: 'rate', rate: 4 * agents, inflight: 4 * conns, latency: true, ...window },
          sample,
          'sparse',
        );
      }
      // Restart the connection count for the next C from scratch? No: add to the open ones.
      // (Agents change with C, so close and reconnect.)
      if (conns !== maxConns) {
        await load({ op: 'disconnect' });
        open = 0;
      }
    }
    await load({ op: 'disconnect' });
    if (def.hub && !def.batchMs) await httpScenario(repeat, def, sample);
  } finally {
    await load({ op: 'detach' }).catch(() => {});
    await stopServer(running);
  }
}

interface HttpResult {
  cpu: CpuWindow;
  rps: number;
  cpuUs: number;
  total: number;
  non2xx: number;
  errors: number;
  p50: number;
}

/** 5. HTTP: the hub's stats and ingest routes against bare Hono routes on the same server. */
async function httpScenario(repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const body = JSON.stringify({ type: 'task_update', task_id: 'task-1', status: 'running', progress: 50 });
  const routes = [
    { key: 'http.stats', path: '/agents/ws/stats', method: 'GET' },
    { key: 'http.bareStats', path: '/bare/stats', method: 'GET' },
    { key: 'http.ingest', path: '/agents/bench-http/updates', method: 'POST', body },
    { key: 'http.bareIngest', path: '/bare/bench-http/updates', method: 'POST', body },
  ];
  // Alternate the order per repeat so neither side always runs first.
  const order = repeat % 2 ? routes : [routes[1], routes[0], routes[3], routes[2]];
  for (const route of order as typeof routes) {
    const spec = { path: route.path, method: route.method, body: route.body, connections: P.http.connections };
    if ('warmupMs' in P.http) await load({ op: 'http', spec: { ...spec, durationMs: P.http.warmupMs } });
    const result = await measured(repeat, def.name, route.key, async () => {
      const r = await load<HttpResult>({
        op: 'http',
        spec: { ...spec, ...('amount' in P.http ? { amount: P.http.amount } : { durationMs: P.http.durationMs }) },
      });
      if (r.non2xx > 0 || r.errors > 0 || r.total === 0) {
        const message = `${def.name} ${route.key}: ${r.non2xx} non-2xx answers, ${r.errors} errors of ${r.total}`;
        failures.push(message);
        throw new Error(message);
      }
      return r;
    });
    sample[`${route.key}.rps`] = result.rps;
    sample[`${route.key}.cpuUs`] = result.cpuUs;
    log(`  ${def.name} ${route.key}: ${Math.round(result.rps)} req/s, ${result.cpuUs.toFixed(1)} µs/req`);
  }
}

interface IdleResult {
  cpu: CpuWindow;
  pings: number;
  sweeps: number;
  usPerPing: number;
  open: number;
  unexpectedCloses: number;
}

/** 4. Idle memory per connection after GC, and the heartbeat sweep cost, at the largest C. */
async function idleScenario(repeat: number, def: ServerDef, sample: Sample): Promise<void> {
  const heartbeat = def.name === 'bun-native' ? 0 : P.heartbeatMs;
  const running = await startServer(def, heartbeat);
  try {
    await attachTo(def, running);
    const agents = P.memHigh / 10;
    await connect(repeat, def, P.memLow, agents, `memory@${P.memLow}`);
    const low = await load<{ rss: number; gc: boolean }>({ op: 'gc' });
    await connect(repeat, def, P.memHigh - P.memLow, agents, `memory@${P.memHigh}`);
    const idle = await measured(repeat, def.name, 'heartbeat', () =>
      load<IdleResult>({ op: 'idle', windowMs: P.idleMs }),
    );
    if (idle.unexpectedCloses > 0) {
      const message = `${def.name} heartbeat: ${idle.unexpectedCloses} connections closed by the server`;
      failures.push(message);
      throw new Error(message);
    }
    const high = await load<{ rss: number; gc: boolean }>({ op: 'gc' });
    if (!high.gc) log(`  ${def.name}: no GC hook; RSS without a forced GC`);
    sample['idle.bytesPerConn'] = (high.rss - low.rss) / (P.memHigh - P.memLow);
    sample['idle.rss'] = high.rss;
    if (heartbeat > 0 && idle.pings > 0) {
      sample['heartbeat.usPerConn'] = idle.usPerPing;
      sample['heartbeat.cores'] = idle.cpu.server;
    }
    log(
      `  ${def.name} idle@${P.memHigh}: ${((high.rss - low.rss) / (P.memHigh - P.memLow) / 1024).toFixed(2)} KB/conn, rss ${(high.rss / 2 ** 20).toFixed(1)} MB` +
        (heartbeat > 0
          ? `, heartbeat ${idle.usPerPing.toFixed(2)} µs/conn/sweep (${idle.sweeps.toFixed(1)} sweeps)`
          : ''),
    );
    await load({ op: 'disconnect' });
  } finally {
    await load({ op: 'detach' }).catch(() => {});
    await stopServer(running);
  }
}

// ---- the run -----------------------------------------------------------------------------

const repeats: Repeats = [];
const started = Date.now();
let exitCode = 0;
try {
  log(
    `bench: ${quick ? 'quick' : 'full'} run, ${P.repeats} repeat(s), C = ${P.conns.join(', ')}, servers: ${SERVERS.map((s) => s.name).join(', ')}` +
      (taskset ? ', pinned: servers core 0, load generator core 1' : ', not pinned (no taskset)'),
  );
  for (let repeat = 0; repeat < P.repeats; repeat++) {
    const samples: Record<string, Sample> = {};
    repeats.push(samples);
    // Rotate the order every repeat so no server always runs first or last.
    const order = SERVERS.map((_, i) => SERVERS[(i + repeat) % SERVERS.length] as ServerDef);
    for (const def of order) {
      log(`repeat ${repeat + 1}/${P.repeats}: ${def.name}`);
      const sample: Sample = {};
      samples[def.name] = sample;
      await fanOut(repeat, def, sample);
      await idleScenario(repeat, def, sample);
    }
  }
} catch (error) {
  console.error(`bench: FAILED: ${(error as Error).stack ?? error}`);
  exitCode = 1;
} finally {
  await load({ op: 'exit' }).catch(() => {});
  for (const child of children) child.kill('SIGKILL');
}

// ---- report ------------------------------------------------------------------------------

const C = maxConns;
const Cs = [...P.conns].sort((a, b) => a - b);
const RATIOS: RatioDef[] = [
  ...Cs.flatMap((c): RatioDef[] => [
    {
      id: `cpu@${c}`,
      label: `CPU/msg plugin ÷ ws, C=${c}`,
      num: ['plugin-node', `fixed@${c}.cpuUs`],
      den: ['ws', `fixed@${c}.cpuUs`],
    },
    {
      id: `cpu-sio@${c}`,
      label: `CPU/msg Socket.IO ÷ ws, C=${c}`,
      num: ['socketio', `fixed@${c}.cpuUs`],
      den: ['ws', `fixed@${c}.cpuUs`],
    },
    {
      id: `flat@${c}`,
      label: `flat msgs/s plugin ÷ ws, C=${c}`,
      num: ['plugin-node', `flat@${c}.delivered`],
      den: ['ws', `flat@${c}.delivered`],
    },
    {
      id: `flat-sio@${c}`,
      label: `flat msgs/s plugin ÷ Socket.IO, C=${c}`,
      num: ['plugin-node', `flat@${c}.delivered`],
      den: ['socketio', `flat@${c}.delivered`],
    },
    {
      id: `bun@${c}`,
      label: `flat msgs/s plugin on Bun ÷ Bun server.publish, C=${c}`,
      num: ['plugin-bun', `flat@${c}.delivered`],
      den: ['bun-native', `flat@${c}.delivered`],
    },
  ]),
  {
    id: 'mem',
    label: `idle bytes/conn plugin − ws, C=${P.memHigh}`,
    num: ['plugin-node', 'idle.bytesPerConn'],
    den: ['ws', 'idle.bytesPerConn'],
    kind: 'diff',
  },
  {
    id: 'dense',
    label: 'logical updates/s batched ÷ unbatched',
    num: ['plugin-node-batched', 'dense.delivered'],
    den: ['plugin-node', 'dense.delivered'],
  },
  {
    id: 'dense-cpu',
    label: 'CPU per logical update batched ÷ unbatched',
    num: ['plugin-node-batched', 'dense.cpuUs'],
    den: ['plugin-node', 'dense.cpuUs'],
  },
  ...(['plugin-node', 'plugin-bun', 'plugin-deno'] as const).flatMap((server): RatioDef[] => [
    {
      id: `http-stats-${server}`,
      label: `GET /agents/ws/stats ÷ bare route (${server})`,
      num: [server, 'http.stats.rps'],
      den: [server, 'http.bareStats.rps'],
    },
    {
      id: `http-ingest-${server}`,
      label: `POST /agents/:id/updates ÷ bare route (${server})`,
      num: [server, 'http.ingest.rps'],
      den: [server, 'http.bareIngest.rps'],
    },
  ]),
];
const GOALS: GoalDef[] = [
  { text: `Node, batching off: server CPU per message ≤ 1.10 × raw ws (C=${C})`, of: `cpu@${C}`, op: '<=', limit: 1.1 },
  { text: `Node, batching off: flat throughput ≥ 0.95 × raw ws (C=${C})`, of: `flat@${C}`, op: '>=', limit: 0.95 },
  { text: `Node, batching off: flat throughput ≥ 2 × Socket.IO (C=${C})`, of: `flat-sio@${C}`, op: '>=', limit: 2 },
  { text: `Idle memory per connection ≤ raw ws + 2 KB (C=${P.memHigh})`, of: 'mem', op: '<=', limit: 2048, unit: 'B' },
  { text: 'Batching on: ≥ 5 × unbatched logical throughput', of: 'dense', op: '>=', limit: 5 },
  { text: 'Batching on: ≤ 0.2 × CPU per logical update', of: 'dense-cpu', op: '<=', limit: 0.2 },
  {
    text: 'Batching on, sparse traffic: p50 latency ≤ 1 ms',
    of: 'plugin-node-batched:sparse.p50',
    op: '<=',
    limit: 1,
    unit: 'ms',
  },
  { text: `Bun: ≥ 0.9 × native server.publish throughput (C=${C})`, of: `bun@${C}`, op: '>=', limit: 0.9 },
  {
    text: 'HTTP (Node): GET /agents/ws/stats ≥ 0.9 × bare Hono route',
    of: 'http-stats-plugin-node',
    op: '>=',
    limit: 0.9,
  },
  {
    text: 'HTTP (Node): POST /agents/:id/updates ≥ 0.9 × bare Hono route',
    of: 'http-ingest-plugin-node',
    op: '>=',
    limit: 0.9,
  },
  { text: 'HTTP (Bun): GET stats ≥ 0.9 × bare', of: 'http-stats-plugin-bun', op: '>=', limit: 0.9 },
  { text: 'HTTP (Bun): POST updates ≥ 0.9 × bare', of: 'http-ingest-plugin-bun', op: '>=', limit: 0.9 },
  { text: 'HTTP (Deno): GET stats ≥ 0.9 × bare', of: 'http-stats-plugin-deno', op: '>=', limit: 0.9 },
  { text: 'HTTP (Deno): POST updates ≥ 0.9 × bare', of: 'http-ingest-plugin-deno', op: '>=', limit: 0.9 },
];

const goals = judge(repeats, RATIOS, GOALS);
const date = new Date().toISOString().slice(0, 10);
const complete = repeats.length;
const kept = windows.filter((w) => !w.discarded);
const header = [
  `Run ${new Date().toISOString()}, ${quick ? 'quick' : 'full'}, ${complete} repeat(s); Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GB;`,
  `servers ${taskset ? 'pinned to core 0, load generator to core 1' : 'not pinned'}; ${windows.length - kept.length} of ${windows.length} windows discarded for other processes' CPU > ${P.maxOther} cores.`,
  'Figures: median [min–max] over repeats; ratios paired within each repeat. Every window checked delivered/published = 1 exactly.',
].join('\n');

const sections: string[] = [];
const push = (title: string, body: string) => {
  if (body) sections.push(`#### ${title}\n\n${body}`);
};
for (const c of Cs) {
  push(
    `Fan-out, C = ${c} connections over ${c / 10} agents`,
    table(repeats, SERVERS, [
      { title: `CPU µs/msg @ ${P.fixedRate / 1000}k msg/s`, key: `fixed@${c}.cpuUs`, unit: 'µs' },
      { title: 'p50 latency', key: `fixed@${c}.p50`, unit: 'ms' },
      { title: 'p99 latency', key: `fixed@${c}.p99`, unit: 'ms' },
      { title: 'flat out msgs/s', key: `flat@${c}.delivered`, unit: '/s' },
      { title: 'flat CPU µs/msg', key: `flat@${c}.cpuUs`, unit: 'µs' },
    ] satisfies Column[]),
  );
}
push(
  `Batching, C = ${C}: dense ${P.denseRate} updates/s per agent; sparse 4 updates/s per agent`,
  table(
    repeats,
    SERVERS.filter((s) => s.name.startsWith('plugin-node')),
    [
      { title: 'dense logical updates/s', key: 'dense.delivered', unit: '/s' },
      { title: 'dense CPU µs/update', key: 'dense.cpuUs', unit: 'µs' },
      { title: 'sparse p50', key: 'sparse.p50', unit: 'ms' },
      { title: 'sparse p99', key: 'sparse.p99', unit: 'ms' },
    ],
  ),
);
push(
  `Idle connections, C = ${P.memHigh}`,
  table(repeats, SERVERS, [
    { title: 'RSS per connection after GC', key: 'idle.bytesPerConn', unit: 'B' },
    { title: `heartbeat µs/conn/sweep (${P.heartbeatMs} ms)`, key: 'heartbeat.usPerConn', unit: 'µs' },
  ]),
);
push(
  'HTTP (autocannon)',
  table(
    repeats,
    SERVERS.filter((s) => s.hub),
    [
      { title: 'GET /agents/ws/stats', key: 'http.stats.rps', unit: '/s' },
      { title: 'GET bare', key: 'http.bareStats.rps', unit: '/s' },
      { title: 'POST /agents/:id/updates', key: 'http.ingest.rps', unit: '/s' },
      { title: 'POST bare', key: 'http.bareIngest.rps', unit: '/s' },
    ],
  ),
);
const ratioLines = RATIOS.map((def) => ({ def, value: paired(repeats, def) }))
  .filter((row) => row.value)
  .map((row) => `| ${row.def.label} | ${fmtSummary(row.value, row.def.kind === 'diff' ? 'B' : '')} |`);
if (ratioLines.length)
  sections.push(`#### Paired ratios\n\n| ratio | median [min–max] |\n|---|---:|\n${ratioLines.join('\n')}`);
const goalLines = goals.map(
  (goal) =>
    `| ${goal.text} | ${fmtSummary(goal.value, goal.unit ?? '')} | ${goal.verdict === 'pass' ? '✅ pass' : goal.verdict === 'miss' ? '❌ miss' : 'n/a'} |`,
);
const goalTable = `| goal | measured | |\n|---|---:|---|\n${goalLines.join('\n')}`;

const chartServers = SERVERS.filter((s) => s.name !== 'plugin-node-batched');
const panels: ChartPanel[] = [
  {
    title: `Flat-out msgs/s, C=${C}`,
    unit: '/s',
    bars: chartServers.map((s) => ({
      label: s.label,
      value: figure(repeats, s.name, `flat@${C}.delivered`),
      highlight: s.hub,
    })),
  },
  {
    title: `Server CPU µs/msg @ ${P.fixedRate / 1000}k msg/s`,
    unit: 'µs',
    bars: chartServers.map((s) => ({
      label: s.label,
      value: figure(repeats, s.name, `fixed@${C}.cpuUs`),
      highlight: s.hub,
    })),
  },
  {
    title: `Idle RSS/conn, C=${P.memHigh}`,
    unit: 'B',
    bars: chartServers.map((s) => ({
      label: s.label,
      value: figure(repeats, s.name, 'idle.bytesPerConn'),
      highlight: s.hub,
    })),
  },
];
const svg = chartSvg(`hono-agent-ws vs raw ws, Socket.IO, Bun pub/sub (${date})`, panels);

const markdown = `### Benchmark results (${date})\n\n${header}\n\n${sections.join('\n\n')}\n\n#### Goals\n\n${goalTable}\n`;
const readme = [
  `![fan-out throughput, CPU per message and idle memory](bench/results/chart.svg)`,
  '',
  `Latest full run: [bench/results/${date}.md](bench/results/${date}.md) (raw figures in \`${date}.json\`).`,
  '',
  header,
  '',
  ...Cs.map((c) =>
    table(
      repeats,
      SERVERS.filter((s) => s.name !== 'plugin-node-batched'),
      [
        { title: `CPU µs/msg @ ${P.fixedRate / 1000}k msg/s, C=${c}`, key: `fixed@${c}.cpuUs`, unit: 'µs' },
        { title: 'p50 / p99 ms', key: `fixed@${c}.p50`, unit: 'ms' },
        { title: `flat msgs/s, C=${c}`, key: `flat@${c}.delivered`, unit: '/s' },
        ...(c === C ? [{ title: 'idle RSS/conn', key: 'idle.bytesPerConn', unit: 'B' }] : []),
      ],
    ).concat('\n'),
  ),
  '### Goals',
  '',
  goalTable,
  '',
  '### Running it',
  '',
  '```sh',
  'npm run bench            # full matrix: 5 repeats, C = 1000 and 5000 (about 20 minutes)',
  'npm run bench -- --quick # seconds-long version of every scenario (CI runs it via test/bench-quick.test.ts)',
  'npm run bench -- --servers=plugin-node,ws --repeats=3 --no-write',
  '```',
  '',
  'Each server runs in its own process (`bench/servers/`), pinned to one core with `taskset` when present; one',
  'load generator (`bench/load.ts`, `ws` clients) on the other core opens C connections over C/10 agents and',
  'publishes ~200-byte task updates through a side channel that is the same code in every server, so the code',
  'under test is unchanged. Server CPU is read from /proc; windows where other processes used more than',
  `${P.maxOther} cores are run again. Scenarios: fixed rate (${P.fixedRate / 1000}k msg/s), flat-out closed loop, batching`,
  `(dense ${P.denseRate} updates/s per agent vs sparse), idle memory and heartbeat sweep, HTTP with autocannon.`,
  '',
].join('\n');

/** Replaces the README's generated results, between its `bench:start` and `bench:end` markers. */
function updateReadme(section: string): void {
  const [start, end] = ['<!-- bench:start -->', '<!-- bench:end -->'];
  const text = readFileSync('README.md', 'utf8');
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README.md has no ${start} … ${end} section to update`);
  writeFileSync('README.md', `${text.slice(0, from + start.length)}\n${section}\n${text.slice(to)}`);
}

const minutes = ((Date.now() - started) / 60_000).toFixed(1);
console.log(markdown);
console.log(`bench: ${minutes} min, ${checks.length} delivery checks, ${failures.length} failures`);
if (write && repeats.length > 0 && exitCode === 0) {
  mkdirSync('bench/results', { recursive: true });
  const json = {
    date: new Date().toISOString(),
    quick,
    parameters: P,
    node: process.version,
    cpus: cpus().map((cpu) => cpu.model),
    pinned: Boolean(taskset),
    servers: SERVERS.map(({ name, label, runtime, batchMs }) => ({ name, label, runtime, batchMs: batchMs ?? 0 })),
    repeats,
    ratios: RATIOS.map((def) => ({ ...def, value: paired(repeats, def) })).filter((row) => row.value),
    goals: goals.map(({ text, op, limit, value, verdict }) => ({ text, op, limit, value, verdict })),
    windows,
    checks,
  };
  const base = quick ? `bench/results/${date}-quick` : `bench/results/${date}`;
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  if (!quick) {
    writeFileSync('bench/results/chart.svg', svg);
    updateReadme(readme);
  }
  log(`bench: wrote ${base}.json, ${base}.md${quick ? '' : ', bench/results/chart.svg and the README results'}`);
}
console.log(`BENCH_CHECKS ${JSON.stringify(checks)}`);
if (failures.length > 0) {
  console.error(`bench: ${failures.length} delivery check(s) FAILED:\n- ${failures.join('\n- ')}`);
  exitCode = 1;
}
process.exit(exitCode);
