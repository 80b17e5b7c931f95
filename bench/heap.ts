/**
 * Where an idle connection's memory goes, on the Node servers: heap snapshots at `low` and at
 * `conns` idle connections (over `conns / 10` agents), compared class by class.
 *
 *   node --import tsx bench/heap.ts [--conns=2000] [--low=conns/10] [--servers=plugin-node,ws]
 *     [--before=<git rev>] [--heartbeat=1000] [--top=20] [--keep]
 *
 * For each server (bench/servers/<name>.ts, started with `--expose-gc`): connect `low`, GC, read
 * the RSS; connect up to `conns`, wait two heartbeats, GC, read the RSS, write snapshot B; close
 * the connections opened last, GC, write snapshot A. Snapshots hold only live objects, so B − A is what the extra
 * connections keep; the RSS is read before any snapshot is written (writing one grows the RSS).
 * `--before=<rev>` also runs `plugin-node` as of that commit (a temporary `git worktree`), as
 * `plugin-node@<rev>`, in the same run. Prints, per connection: RSS and heap for each server, and
 * the classes (V8 constructor names; `fn()` closures, `(type) name` internals) with the most bytes.
 * Snapshots are written to a temporary directory, deleted unless `--keep`.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { WebSocket } from 'ws';
import { spawnReady } from '../scripts/spawn.ts';
import { rssBytes } from './lib/proc.ts';

const arg = (name: string, fallback: string): string =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const conns = Number(arg('conns', '2000'));
const low = Number(arg('low', String(conns / 10)));
const agents = Math.max(1, Math.round(conns / 10));
const heartbeat = arg('heartbeat', '1000');
const top = Number(arg('top', '20'));
const before = arg('before', '');
const keep = process.argv.includes('--keep');
const dir = mkdtempSync(join(tmpdir(), 'agent-ws-heap-'));

interface Server {
  label: string;
  cwd: string;
  entry: string;
}
const servers: Server[] = arg('servers', 'plugin-node,ws')
  .split(',')
  .map((name) => ({ label: name, cwd: process.cwd(), entry: `bench/servers/${name}.ts` }));
if (before) {
  const cwd = join(dir, 'before');
  execFileSync('git', ['worktree', 'add', '--detach', '--quiet', cwd, before]);
  symlinkSync(resolve('node_modules'), join(cwd, 'node_modules'));
  // The harness (its control channel and `heap` op) as of now; only the code under test is older.
  copyFileSync('bench/servers/common.ts', join(cwd, 'bench/servers/common.ts'));
  servers.unshift({ label: `plugin-node@${before}`, cwd, entry: 'bench/servers/plugin-node.ts' });
}

/** Per-class totals of a heap snapshot: bytes and count by key. */
type Classes = Map<string, { bytes: number; count: number }>;

function readSnapshot(file: string): { classes: Classes; total: number } {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [TYPE, NAME, SIZE] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const classes: Classes = new Map();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + TYPE] as number] as string;
    const name = snap.strings[snap.nodes[i + NAME] as number] as string;
    const size = snap.nodes[i + SIZE] as number;
    const key =
      type === 'object' || type === 'native'
        ? name
        : type === 'closure'
          ? `${name || '(anonymous)'}()`
          : type.includes('string')
            ? '(string)'
            : `(${type}) ${name.slice(0, 40)}`;
    const entry = classes.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += size;
    entry.count++;
    classes.set(key, entry);
    total += size;
  }
  return { classes, total };
}

/** Opens sockets `from`..`to` − 1, socket i to agent i % agents, 50 at a time. */
async function open(port: number, sockets: WebSocket[], from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 50) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(i + 50, to); j++) {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/agents/bench-agent-${j % agents}/ws`);
      sockets[j] = socket;
      // The hub's heartbeat is a JSON ping, answered by a JSON pong (ws answers its own pings).
      socket.on('message', (data: Buffer) => {
        if (data.toString('latin1', 0, 15) === '{"type":"ping",') socket.send('{"type":"pong"}');
      });
      batch.push(
        new Promise((done, fail) => {
          socket.once('open', () => done());
          socket.once('error', fail);
        }),
      );
    }
    await Promise.all(batch);
  }
}

interface Measure {
  label: string;
  rssPerConn: number;
  heapPerConn: number;
  classes: Map<string, { bytes: number; count: number }>;
}

async function measure(server: Server): Promise<Measure> {
  const child = await spawnReady({
    name: server.label,
    command: process.execPath,
    args: ['--expose-gc', '--import', 'tsx', server.entry],
    cwd: server.cwd,
    env: { ...process.env, BENCH_HEARTBEAT_MS: heartbeat },
    ready: /BENCH_READY (\{.*\})/,
    streams: ['stdout'],
    timeoutMs: 60_000,
  });
  const info = JSON.parse(child.match[1] as string) as { port: number; control: number; pid: number };
  const control = tcpConnect(info.control, '127.0.0.1');
  let seq = 0;
  let rest = '';
  const waiters = new Map<number, (answer: { rss: number }) => void>();
  control.on('data', (chunk) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const answer = JSON.parse(line) as { id: number; rss: number };
      waiters.get(answer.id)?.(answer);
    }
  });
  const ask = (command: Record<string, unknown>) =>
    new Promise<{ rss: number }>((done, fail) => {
      const id = ++seq;
      const timer = setTimeout(() => fail(new Error(`${server.label}: no answer to ${command.op}`)), 120_000);
      waiters.set(id, (answer) => {
        clearTimeout(timer);
        done(answer);
      });
      control.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  const heap = (file: string) => ask({ op: 'heap', file });
  const gc = () => ask({ op: 'gc' });
  const sockets: WebSocket[] = [];
  try {
    const lowFile = join(dir, `${server.label.replace(/\W/g, '_')}-${low}.heapsnapshot`);
    const highFile = join(dir, `${server.label.replace(/\W/g, '_')}-${conns}.heapsnapshot`);
    await open(info.port, sockets, 0, low);
    // No snapshot here: writing one grows the RSS for good, which would count as the connections'.
    await gc();
    const rssLow = rssBytes(info.pid);
    await open(info.port, sockets, low, conns);
    // Two heartbeat sweeps, as the bench's idle scenario waits between its two readings.
    await new Promise((done) => setTimeout(done, 2 * Number(heartbeat)));
    const rssHigh = (await heap(highFile)).rss;
    for (const socket of sockets.splice(low)) socket.terminate();
    await new Promise((done) => setTimeout(done, 1000));
    await heap(lowFile);
    const a = readSnapshot(lowFile);
    const b = readSnapshot(highFile);
    const n = conns - low;
    const classes: Classes = new Map();
    for (const [key, value] of b.classes) {
      const base = a.classes.get(key) ?? { bytes: 0, count: 0 };
      classes.set(key, { bytes: (value.bytes - base.bytes) / n, count: (value.count - base.count) / n });
    }
    return { label: server.label, rssPerConn: (rssHigh - rssLow) / n, heapPerConn: (b.total - a.total) / n, classes };
  } finally {
    for (const socket of sockets) socket.terminate();
    control.destroy();
    await child.stop();
  }
}

const results: Measure[] = [];
try {
  for (const server of servers) {
    process.stderr.write(`${server.label}: ${low} → ${conns} connections over ${agents} agents\n`);
    results.push(await measure(server));
  }
} finally {
  if (before) execFileSync('git', ['worktree', 'remove', '--force', join(dir, 'before')]);
  if (!keep) rmSync(dir, { recursive: true, force: true });
  else process.stderr.write(`snapshots kept in ${dir}\n`);
}

const kb = (bytes: number) => (bytes / 1024).toFixed(2);
console.log(`\nPer idle connection, ${low} → ${conns} connections over ${agents} agents (KB):\n`);
console.log(`| server | RSS/conn | heap/conn |\n|---|--:|--:|`);
for (const r of results) console.log(`| ${r.label} | ${kb(r.rssPerConn)} | ${kb(r.heapPerConn)} |`);
const keys = new Set<string>();
for (const r of results) {
  const sorted = [...r.classes].sort((x, y) => y[1].bytes - x[1].bytes);
  for (const [key] of sorted.slice(0, top)) keys.add(key);
}
const rows = [...keys].sort(
  (x, y) =>
    Math.max(...results.map((r) => r.classes.get(y)?.bytes ?? 0)) -
    Math.max(...results.map((r) => r.classes.get(x)?.bytes ?? 0)),
);
console.log(`\nHeap per connection by class: bytes (objects)\n`);
console.log(`| class | ${results.map((r) => r.label).join(' | ')} |\n|---|${results.map(() => '--:|').join('')}`);
for (const key of rows) {
  if (results.every((r) => Math.abs(r.classes.get(key)?.bytes ?? 0) < 0.5)) continue;
  const cells = results.map((r) => {
    const c = r.classes.get(key);
    return c && Math.abs(c.bytes) >= 0.5 ? `${c.bytes.toFixed(0)} (${c.count.toFixed(2)})` : '';
  });
  console.log(`| ${key.replace(/\|/g, '\\|')} | ${cells.join(' | ')} |`);
}
