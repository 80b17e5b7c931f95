/**
 * Instructions per delivered message of a Node bench server (bench/servers/), counted by
 * valgrind's callgrind: repeatable where wall-clock CPU on a shared machine is not.
 *
 * Starts the server under `valgrind --tool=callgrind --instr-atstart=no`, opens `conns` clients
 * over `conns / 10` agents, warms up, then counts only the measured rounds (`callgrind_control
 * -i on/off` around them): each round publishes one update to every agent through the control
 * channel and waits until every client has it (closed loop). Prints the server's instructions
 * (Ir) per delivered message.
 *
 * `node --import tsx bench/micro/callgrind.ts <server> [conns] [rounds] [warm-up rounds]`, server
 * = `plugin-node`, `ws`, `socketio`, `plugin-bun` or `bun-native` (run by Bun).
 *
 * @module
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as tcp } from 'node:net';
import { WebSocket } from 'ws';
import { runtimeBinary, runtimeEnv } from '../../scripts/runtimes.ts';

const [name = 'plugin-node', connsText = '1000', roundsText = '20', warmText = '10'] = process.argv.slice(2);
const conns = Number(connsText);
const rounds = Number(roundsText);
const warm = Number(warmText);
const agents = conns / 10;
const out = `/tmp/callgrind.${name}.${process.pid}.out`;

// `PROFILE=<dir>`: no valgrind, a `--cpu-prof` profile of the whole run instead.
const profile = process.env.PROFILE;
// `BUNDLE=<file>`: run that prebuilt bundle of the server instead (line numbers in profiles).
const bun = name.includes('bun');
const entry = process.env.BUNDLE
  ? [process.execPath, process.env.BUNDLE]
  : bun
    ? [runtimeBinary('bun'), 'run', `bench/servers/${name}.ts`]
    : [process.execPath, '--import', 'tsx', `bench/servers/${name}.ts`];
const server = spawn(
  profile ? process.execPath : 'valgrind',
  profile
    ? ['--cpu-prof', `--cpu-prof-dir=${profile}`, ...entry.slice(1)]
    : ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, ...entry],
  { env: { ...process.env, ...runtimeEnv(), BENCH_HEARTBEAT_MS: '0' }, stdio: ['ignore', 'pipe', 'inherit'] },
);
const ready = await new Promise<{ port: number; control: number; pid: number }>((resolve) => {
  let text = '';
  server.stdout.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    const match = /BENCH_READY (\{.*\})/.exec(text);
    if (match) resolve(JSON.parse(match[1] as string));
  });
});

let delivered = 0;
const sockets: WebSocket[] = [];
for (let i = 0; i < conns; i++) {
  const socket = new WebSocket(`ws://127.0.0.1:${ready.port}/agents/bench-agent-${i % agents}/ws`);
  socket.on('message', (data) => {
    if (String(data).includes('bench|')) delivered++;
  });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  sockets.push(socket);
}
const control = tcp(ready.control, '127.0.0.1');
await new Promise((resolve) => control.once('connect', resolve));
const all = Array.from({ length: agents }, (_, i) => i);
const round = async () => {
  const target = delivered + conns;
  control.write(`${JSON.stringify({ op: 'pub', t: 0, a: all })}\n`);
  while (delivered < target) await new Promise((resolve) => setTimeout(resolve, 5));
};
await new Promise((resolve) => setTimeout(resolve, 1000));
for (let r = 0; r < warm; r++) await round();
if (!profile) execFileSync('callgrind_control', ['-i', 'on', String(ready.pid)], { stdio: 'ignore' });
for (let r = 0; r < rounds; r++) await round();
if (!profile) execFileSync('callgrind_control', ['-i', 'off', String(ready.pid)], { stdio: 'ignore' });
for (const socket of sockets) socket.terminate();
control.destroy();
server.kill('SIGTERM');
await new Promise((resolve) => server.once('exit', resolve));
if (profile) process.exit(0);
const summary = /^totals:\s+(\d+)/m.exec(readFileSync(out, 'utf8'));
const instructions = Number(summary?.[1] ?? Number.NaN);
console.log(
  `${name}: ${conns} conns, ${rounds} rounds, ${rounds * conns} messages: ${instructions} Ir, ${Math.round(instructions / (rounds * conns))} Ir/message`,
);
