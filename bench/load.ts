/**
 * The load generator: one process, driven by `bench/run.ts` over IPC (bench/lib/loadgen.ts).
 * It holds every client connection (`ws`), publishes through the server's control channel (see
 * servers/common.ts), counts every logical update it receives (unpacking `batch_update` frames)
 * and measures publish→receive latency, server CPU and the CPU of everything else during each
 * window.
 *
 * Every command answers `{ id, result }` or `{ id, error }`.
 *
 * @module
 */
import autocannon from 'autocannon';
import WebSocket from 'ws';
import { type ClientHooks, type Family, openClient } from './lib/client.ts';
import { type ControlClient, openControl } from './lib/control.ts';
import { answerCommands } from './lib/loadgen.ts';
import { type CpuSnapshot, type CpuWindow, cpuWindow, rssBytes, snapshot } from './lib/proc.ts';

/** One scenario window. */
export interface RunSpec {
  /** `rate`: open loop at `rate` publishes/s; `closed`: as fast as the in-flight bound allows. */
  mode: 'rate' | 'closed';
  /** Publishes per second (mode `rate`). */
  rate?: number;
  /** Most deliveries sent but not yet received; publishing waits beyond it. */
  inflight: number;
  warmupMs: number;
  windowMs: number;
  /** Record publish→receive latency. */
  latency: boolean;
}

export interface RunResult {
  cpu: CpuWindow;
  /** Logical updates received per second in the window (every connection counts). */
  delivered: number;
  /** Server CPU microseconds per delivered logical update. */
  cpuUs: number;
  /** Updates published per second in the window. */
  published: number;
  /** Offers skipped because the in-flight bound was reached (mode `rate`), as a fraction. */
  skipped: number;
  p50: number;
  p99: number;
  samples: number;
  /** Totals for the whole run, drained: every delivery expected vs received. */
  expected: number;
  received: number;
  frames: number;
}

const MARK = Buffer.from('bench|');
const BAR = 0x7c;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- counters shared by every connection ------------------------------------------------

/** Logical updates received, all connections. */
let received = 0;
/** Deliveries owed: every publish adds its agent's connection count. */
let expected = 0;
let frames = 0;
let pings = 0;
let unexpectedCloses = 0;
let recording = false;
const latencies = new Float64Array(2_000_000);
let latencyCount = 0;
let onProgress: (() => void) | undefined;

const countUpdates = (data: Buffer, from: number) => {
  let at = data.indexOf(MARK, from);
  if (at < 0) return;
  frames++;
  const now = recording ? performance.now() : 0;
  while (at >= 0) {
    received++;
    const start = at + MARK.length;
    if (recording && latencyCount < latencies.length) {
      const end = data.indexOf(BAR, start);
      latencies[latencyCount++] = now - Number(data.toString('latin1', start, end));
    }
    at = data.indexOf(MARK, start);
  }
  onProgress?.();
};

// ---- connections --------------------------------------------------------------------------

interface Target {
  serverPid: number;
  port: number;
  control: number;
  family: Family;
}

let target: Target | undefined;
let sockets: WebSocket[] = [];
/** Connections per agent index. */
let perAgent: number[] = [];
let agents = 0;
/** Next agent to publish to, round-robin. */
let cursor = 0;

const urlFor = (t: Target, agent: string) =>
  t.family === 'sio'
    ? `ws://127.0.0.1:${t.port}/socket.io/?EIO=4&transport=websocket&agent=${agent}`
    : `ws://127.0.0.1:${t.port}/agents/${agent}/ws`;

/** Every connection counts into the same totals. */
const hooks: ClientHooks = {
  update: (data, from) => countUpdates(data, from),
  ping: () => {
    pings++;
  },
  closed: () => {
    if (!closing) unexpectedCloses++;
  },
};

const openOne = (t: Target, agentIndex: number): Promise<WebSocket> =>
  openClient(urlFor(t, `bench-agent-${agentIndex}`), t.family, hooks, { timeoutMs: 15_000 });

let closing = false;

async function connectMore(count: number, agentCount: number): Promise<number> {
  if (!target) throw new Error('not attached');
  agents = agentCount;
  if (perAgent.length !== agentCount) perAgent = new Array(agentCount).fill(0);
  cursor = 0;
  const started = performance.now();
  const first = sockets.length;
  let next = first;
  const end = first + count;
  const t = target;
  const worker = async () => {
    while (next < end) {
      const index = next++;
      const socket = await openOne(t, index % agentCount);
      sockets.push(socket);
      perAgent[index % agentCount] = (perAgent[index % agentCount] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(100, count) }, worker));
  return performance.now() - started;
}

async function disconnectAll(): Promise<void> {
  closing = true;
  const all = sockets;
  sockets = [];
  perAgent = new Array(agents).fill(0);
  await Promise.race([
    Promise.all(
      all.map(
        (socket) =>
          new Promise<void>((resolve) => {
            if (socket.readyState === WebSocket.CLOSED) return resolve();
            socket.once('close', () => resolve());
            socket.close();
          }),
      ),
    ),
    sleep(5_000),
  ]);
  for (const socket of all) socket.terminate();
  closing = false;
}

// ---- control channel ------------------------------------------------------------------------

let control: ControlClient | undefined;

async function attach(t: Target): Promise<void> {
  target = t;
  received = 0;
  expected = 0;
  frames = 0;
  pings = 0;
  unexpectedCloses = 0;
  control = await openControl(t.control);
}

function ask(op: string): Promise<Record<string, unknown>> {
  if (!control) throw new Error('not attached');
  return control.ask(op);
}

/** Publishes `count` updates, round-robin over the agents, in lines of at most 1000. */
function publish(count: number): void {
  const socket = control;
  if (!socket || agents === 0) return;
  while (count > 0) {
    const n = Math.min(count, 1000);
    const list = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const agent = cursor;
      cursor = cursor + 1 >= agents ? 0 : cursor + 1;
      list[i] = agent;
      expected += perAgent[agent] ?? 0;
    }
    socket.send({ op: 'pub', t: performance.now(), a: list });
    count -= n;
  }
}

/** Waits until every owed delivery arrived (or the deadline passed), then a little longer for extras. */
async function drain(timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (received < expected && performance.now() < deadline) await sleep(5);
  await sleep(30);
}

const meanSubscribers = () => sockets.length / Math.max(1, agents);

/** Publishes one update per agent and waits for every connection to get it. */
async function probe(): Promise<{ expected: number; received: number }> {
  const before = { expected, received };
  publish(agents);
  await drain(15_000);
  return { expected: expected - before.expected, received: received - before.received };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function run(spec: RunSpec): Promise<RunResult> {
  if (!target) throw new Error('not attached');
  const serverPid = target.serverPid;
  await drain(5_000);
  const startExpected = expected;
  const startReceived = received;
  const subscribers = meanSubscribers();
  let sent = 0;
  let skipped = 0;
  let stopped = false;
  const room = () => {
    if ((control?.writableLength ?? 0) > 4 * 1024 * 1024) return 0;
    return Math.floor((spec.inflight - (expected - received)) / subscribers);
  };
  const started = performance.now();
  let timer: ReturnType<typeof setInterval>;
  if (spec.mode === 'rate') {
    const rate = spec.rate ?? 0;
    timer = setInterval(() => {
      if (stopped) return;
      const due = Math.floor(((performance.now() - started) * rate) / 1000) - sent - skipped;
      if (due <= 0) return;
      const n = Math.max(0, Math.min(due, room()));
      skipped += due - n;
      sent += n;
      publish(n);
    }, 2);
  } else {
    const chunk = Math.max(1, Math.floor(spec.inflight / subscribers / 16));
    let scheduled = false;
    const topUp = () => {
      scheduled = false;
      if (stopped) return;
      const n = room();
      if (n >= chunk) {
        sent += n;
        publish(n);
      }
    };
    onProgress = () => {
      if (!scheduled) {
        scheduled = true;
        setImmediate(topUp);
      }
    };
    timer = setInterval(topUp, 5);
    topUp();
  }
  try {
    await sleep(spec.warmupMs);
    const a: CpuSnapshot = snapshot(serverPid);
    const r0 = received;
    const s0 = sent;
    latencyCount = 0;
    recording = spec.latency;
    await sleep(spec.windowMs);
    recording = false;
    const b = snapshot(serverPid);
    const r1 = received;
    const s1 = sent;
    stopped = true;
    clearInterval(timer);
    onProgress = undefined;
    await drain(20_000);
    const cpu = cpuWindow(a, b);
    const sorted = latencies.slice(0, latencyCount).sort();
    return {
      cpu,
      delivered: (r1 - r0) / cpu.seconds,
      cpuUs: (cpu.serverSeconds * 1e6) / Math.max(1, r1 - r0),
      published: (s1 - s0) / cpu.seconds,
      skipped: skipped / Math.max(1, sent + skipped),
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      samples: latencyCount,
      expected: expected - startExpected,
      received: received - startReceived,
      frames,
    };
  } finally {
    stopped = true;
    recording = false;
    clearInterval(timer);
    onProgress = undefined;
  }
}

/** Idle connections for a window: heartbeat pings seen and server CPU. */
async function idle(windowMs: number) {
  if (!target) throw new Error('not attached');
  const p0 = pings;
  const a = snapshot(target.serverPid);
  await sleep(windowMs);
  const b = snapshot(target.serverPid);
  const cpu = cpuWindow(a, b);
  const seen = pings - p0;
  return {
    cpu,
    pings: seen,
    sweeps: seen / Math.max(1, sockets.length),
    usPerPing: seen > 0 ? (cpu.serverSeconds * 1e6) / seen : Number.NaN,
    open: sockets.length,
    unexpectedCloses,
  };
}

async function gcRss(): Promise<{ rss: number; gc: boolean }> {
  if (!target) throw new Error('not attached');
  const reply = await ask('gc');
  await sleep(200);
  return { rss: rssBytes(target.serverPid), gc: reply.gc === true };
}

interface HttpSpec {
  path: string;
  method: 'GET' | 'POST';
  body?: string;
  connections: number;
  durationMs?: number;
  amount?: number;
}

async function http(spec: HttpSpec) {
  if (!target) throw new Error('not attached');
  const a = snapshot(target.serverPid);
  const result = await autocannon({
    url: `http://127.0.0.1:${target.port}${spec.path}`,
    method: spec.method,
    body: spec.body,
    headers: spec.body ? { 'content-type': 'application/json' } : {},
    connections: spec.connections,
    ...(spec.amount ? { amount: spec.amount } : { duration: (spec.durationMs ?? 1000) / 1000 }),
  });
  const b = snapshot(target.serverPid);
  const cpu = cpuWindow(a, b);
  const total = result.requests.total;
  return {
    cpu,
    rps: total / cpu.seconds,
    cpuUs: (cpu.serverSeconds * 1e6) / Math.max(1, total),
    total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    p50: result.latency.p50,
  };
}

// ---- IPC ------------------------------------------------------------------------------------

type Command =
  | { op: 'attach'; target: Target }
  | { op: 'connect'; count: number; agents: number }
  | { op: 'probe' }
  | { op: 'run'; spec: RunSpec }
  | { op: 'idle'; windowMs: number }
  | { op: 'gc' }
  | { op: 'http'; spec: HttpSpec }
  | { op: 'disconnect' }
  | { op: 'detach' }
  | { op: 'exit' };

async function handle(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'attach':
      return attach(command.target);
    case 'connect':
      return { ms: await connectMore(command.count, command.agents), open: sockets.length };
    case 'probe':
      return probe();
    case 'run':
      return run(command.spec);
    case 'idle':
      return idle(command.windowMs);
    case 'gc':
      return gcRss();
    case 'http':
      return http(command.spec);
    case 'disconnect':
      return disconnectAll();
    case 'detach':
      control?.close();
      control = undefined;
      target = undefined;
      return undefined;
    case 'exit':
      setTimeout(() => process.exit(0), 10);
      return undefined;
  }
}

answerCommands(handle);
