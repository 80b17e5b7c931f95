/**
 * One worker of the scale scenario (bench/lib/scenarios/scale.ts): holds its share of the idle
 * connections, all watching one agent, answers the heartbeat, and times every broadcast it
 * receives. Several of them run at once because one process may hold only as many sockets as
 * its open-files limit allows.
 *
 * Time is `process.hrtime` (CLOCK_MONOTONIC), the same clock in every process of the machine,
 * so the publisher's send time carried in the update can be compared with the receive time here.
 *
 * Driven over IPC; every command answers `{ id, result }` or `{ id, error }`.
 *
 * @module
 */
import WebSocket from 'ws';
import { type ClientHooks, type Family, openClient } from './lib/client.ts';
import { answerCommands } from './lib/loadgen.ts';
import { monotonicMs } from './lib/proc.ts';

interface OpenSpec {
  /** ws://host:port/agents/<agent>/ws */
  url: string;
  family: Family;
  count: number;
  /** Local addresses to bind, used in turn (127.0.0.2, …), so the ephemeral ports do not run out. */
  sources: string[];
  /** Handshakes in flight at once. */
  concurrency: number;
}

const MARK = Buffer.from('bench|');
const BAR = 0x7c;

let sockets: WebSocket[] = [];
let pings = 0;
let unexpectedCloses = 0;
let closing = false;
let latencies: number[] = [];
let waiter: { count: number; resolve: () => void } | undefined;

const onUpdate = (data: Buffer) => {
  const at = data.indexOf(MARK);
  if (at < 0) return;
  const now = monotonicMs();
  const start = at + MARK.length;
  latencies.push(now - Number(data.toString('latin1', start, data.indexOf(BAR, start))));
  if (waiter && latencies.length >= waiter.count) waiter.resolve();
};

const hooks: ClientHooks = {
  update: onUpdate,
  ping: () => {
    pings++;
  },
  closed: () => {
    if (!closing) unexpectedCloses++;
  },
};

const openOne = (spec: OpenSpec, source: string): Promise<WebSocket> =>
  openClient(spec.url, spec.family, hooks, { timeoutMs: 30_000, localAddress: source });

async function open(spec: OpenSpec) {
  const started = monotonicMs();
  let next = 0;
  let failed = 0;
  let firstError = '';
  const worker = async () => {
    while (next < spec.count) {
      const index = next++;
      try {
        sockets.push(await openOne(spec, spec.sources[index % spec.sources.length] as string));
      } catch (error) {
        failed++;
        firstError ||= String((error as Error).message ?? error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.count) }, worker));
  return { ms: monotonicMs() - started, opened: sockets.length, failed, firstError };
}

/** Resolves once `count` broadcasts arrived since the last `arm`, or after `timeoutMs`. */
async function collect(count: number, timeoutMs: number) {
  if (latencies.length < count) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      waiter = {
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
    waiter = undefined;
  }
  return latencies;
}

type Command =
  | { op: 'open'; spec: OpenSpec }
  | { op: 'arm' }
  | { op: 'collect'; count: number; timeoutMs: number }
  | { op: 'status' }
  | { op: 'exit' };

async function handle(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'open':
      return open(command.spec);
    case 'arm':
      latencies = [];
      return undefined;
    case 'collect':
      return collect(command.count, command.timeoutMs);
    case 'status':
      return { open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length, pings, unexpectedCloses };
    case 'exit':
      closing = true;
      for (const socket of sockets) socket.terminate();
      sockets = [];
      setTimeout(() => process.exit(0), 10);
      return undefined;
  }
}

answerCommands(handle);
