/**
 * The servers under test (one entry of bench/servers/ each) and how they run: each in its own
 * process, pinned to core 0 with `taskset` when there is more than one core, announcing itself
 * with a `BENCH_READY` line (bench/servers/common.ts).
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type NodeVersion, nodeBinary } from '../../scripts/node-versions.ts';
import { runtimeBinary, runtimeEnv } from '../../scripts/runtimes.ts';
import { type ReadyProcess, spawnReady } from '../../scripts/spawn.ts';
import type { Family } from './client.ts';

export interface ServerDef {
  name: string;
  label: string;
  family: Family;
  runtime: 'node' | 'bun' | 'deno';
  /** File under bench/servers/. */
  entry: string;
  batchMs?: number;
  /** Runs the hub: gets the sparse/dense batching scenarios and the HTTP scenario. */
  hub: boolean;
  /**
   * `false`: the hub keeps no history and sends no snapshot (`historySize: 0`, `snapshot: false`),
   * as before resume existed. Plugin servers only; default true.
   */
  history?: boolean;
  /**
   * A variant measured against another server rather than a contender: runs the fixed-rate and
   * flat-out scenarios only, and stays out of the chart and the tables of bench/README.md.
   */
  variant?: boolean;
  /** A Node version from the npm registry (scripts/node-versions.ts) instead of the one running the bench. */
  node?: NodeVersion;
  /** `sqlite`: the hub keeps everything in a SQLite file (`sqliteBroker`), fresh for each start. */
  store?: 'sqlite';
}

/** Every server, in the order they run in the first repeat and appear in the report. */
export const ALL_SERVERS: readonly ServerDef[] = [
  { name: 'plugin-node', label: 'plugin · Node', family: 'agent', runtime: 'node', entry: 'plugin-node.ts', hub: true },
  {
    name: 'plugin-node-nohistory',
    label: 'plugin · Node · no history',
    family: 'agent',
    runtime: 'node',
    entry: 'plugin-node.ts',
    hub: true,
    history: false,
    variant: true,
  },
  {
    name: 'plugin-node-batched',
    label: 'plugin · Node · batch 100 ms',
    family: 'agent',
    runtime: 'node',
    entry: 'plugin-node.ts',
    batchMs: 100,
    hub: true,
  },
  // The store's cost: the same hub on Node 24 (which has SQLite) without and with the file.
  {
    name: 'plugin-node24',
    label: 'plugin · Node 24',
    family: 'agent',
    runtime: 'node',
    entry: 'plugin-node.ts',
    hub: true,
    variant: true,
    node: '24.21.0',
  },
  {
    name: 'plugin-node24-sqlite',
    label: 'plugin · Node 24 · SQLite store',
    family: 'agent',
    runtime: 'node',
    entry: 'plugin-node.ts',
    hub: true,
    variant: true,
    node: '24.21.0',
    store: 'sqlite',
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
  {
    name: 'deno-native',
    label: 'Deno bare upgradeWebSocket',
    family: 'plain',
    runtime: 'deno',
    entry: 'deno-native.ts',
    hub: false,
  },
];

/** The project's own Deno and Bun (scripts/runtimes.ts); a missing one is undefined. */
export interface Runtimes {
  bun: string | undefined;
  deno: string | undefined;
}

export function findRuntimes(): Runtimes {
  const binary = (name: 'bun' | 'deno'): string | undefined => {
    try {
      return runtimeBinary(name);
    } catch {
      return undefined;
    }
  };
  return { bun: binary('bun'), deno: binary('deno') };
}

/**
 * The servers to run: those named (every one when `wanted` is undefined) whose runtime is
 * installed. Says on stderr which servers are skipped for a missing runtime.
 */
export function selectServers(wanted: readonly string[] | undefined, runtimes: Runtimes): ServerDef[] {
  const available = (def: ServerDef) =>
    def.runtime === 'bun' ? runtimes.bun !== undefined : def.runtime === 'deno' ? runtimes.deno !== undefined : true;
  const servers = ALL_SERVERS.filter((def) => (!wanted || wanted.includes(def.name)) && available(def));
  for (const def of ALL_SERVERS) {
    if (!available(def)) console.error(`bench: skipping ${def.name}: ${def.runtime} not installed`);
  }
  return servers;
}

/** Core pinning with `taskset`, when installed. */
export interface Pinning {
  /** The path of `taskset`, or '' when it is not installed. */
  taskset: string;
  /** `command` run on `core` only, or unchanged without `taskset` or on a single core. */
  pin(core: number, command: string[]): string[];
}

export function detectPinning(): Pinning {
  const taskset = spawnSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).stdout.trim();
  return {
    taskset,
    pin: (core, command) => (taskset && cpus().length > 1 ? [taskset, '-c', String(core), ...command] : command),
  };
}

/**
 * `command` run with its open-files limit raised to `count` (`ulimit -n`), or to the hard limit
 * when `count` is above it and the limit cannot be raised (no `CAP_SYS_RESOURCE`). What the
 * process got is read back from /proc/<pid>/limits (`openFilesLimit` in bench/lib/proc.ts).
 */
export const withOpenFiles = (count: number, command: readonly string[]): string[] => [
  'sh',
  '-c',
  `ulimit -n ${Math.floor(count)} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`,
  'sh',
  ...command,
];

/** A server that announced itself: where it listens, and its control channel. */
export interface Running {
  process: ReadyProcess;
  pid: number;
  port: number;
  control: number;
}

/** Starts and stops the server processes, and kills whatever is left at the end of the run. */
export interface ServerLauncher {
  /**
   * Starts `def` on core 0 with the heartbeat every `heartbeatMs` (0: off); its stderr is
   * forwarded. A plugin server first publishes `prefill.updates` updates to each of agents 0 to
   * `prefill.agents` − 1 (`--prefill`), none of them counted by the load generator.
   */
  start(
    def: ServerDef,
    heartbeatMs: number,
    prefill?: { agents: number; updates: number },
    openFiles?: number,
  ): Promise<Running>;
  /** SIGTERM, SIGKILL after 3 s (the servers exit on SIGTERM so profilers can write their files). */
  stop(running: Running): Promise<void>;
  /** SIGKILLs every server still running. */
  killAll(): void;
}

/**
 * @param nodeFlags Extra flags for the Node servers (`--node-flags=`).
 */
export function serverLauncher(runtimes: Runtimes, pinning: Pinning, nodeFlags: readonly string[]): ServerLauncher {
  const live = new Set<ReadyProcess>();
  return {
    async start(def, heartbeatMs, prefill, openFiles) {
      const entry = join('bench/servers', def.entry);
      const store = def.store ? join(mkdtempSync(join(tmpdir(), 'bench-store-')), 'agents.db') : '';
      const command =
        def.runtime === 'node'
          ? [def.node ? nodeBinary(def.node) : process.execPath, '--expose-gc', ...nodeFlags, '--import', 'tsx', entry]
          : def.runtime === 'bun'
            ? [runtimes.bun as string, 'run', entry]
            : [runtimes.deno as string, 'run', '-A', '--cached-only', '--v8-flags=--expose-gc', entry];
      const [file, ...args] = pinning.pin(0, openFiles ? withOpenFiles(openFiles, command) : command) as [
        string,
        ...string[],
      ];
      const server = await spawnReady({
        name: def.name,
        command: file,
        args,
        env: {
          ...process.env,
          ...runtimeEnv(),
          BENCH_STORE: store,
          BENCH_BATCH_MS: String(def.batchMs ?? 0),
          BENCH_HISTORY: def.history === false ? '0' : '1',
          BENCH_HEARTBEAT_MS: String(heartbeatMs),
          BENCH_PREFILL: prefill && prefill.updates > 0 ? `${prefill.agents}x${prefill.updates}` : '',
        },
        ready: /BENCH_READY (\{.*\})/,
        streams: ['stdout'],
        timeoutMs: 60_000,
        graceMs: 3_000,
        onOutput: (chunk, stream) => {
          if (stream === 'stderr') process.stderr.write(`[${def.name}] ${chunk}`);
        },
      });
      live.add(server);
      void server.exited.then(() => {
        live.delete(server);
        if (store) rmSync(dirname(store), { recursive: true, force: true });
      });
      const info = JSON.parse(server.match[1] as string) as { port: number; control: number; pid: number };
      return { process: server, ...info };
    },
    async stop(running) {
      await running.process.stop();
    },
    killAll() {
      for (const server of live) server.child.kill('SIGKILL');
    },
  };
}
