/**
 * Starts a throwaway `redis-server` (the Debian package) on a free port, persistence off, for
 * tests that need a real Redis; it can be stopped and started again on the same port, and
 * frozen (SIGSTOP) and resumed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ReadyProcess, spawnReady } from '../../scripts/spawn.ts';

/**
 * Why the Redis tests should be skipped, or `undefined` to run them. They are skipped only when
 * `redis-server` is not installed and CI is not set: in CI a missing Redis fails the run (the
 * start in `before` throws), so a green CI always means the guarantees were exercised.
 */
export function redisSkipReason(): string | undefined {
  if (process.env.CI) return undefined;
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return 'redis-server is not installed (apt-get install redis-server); CI installs it and never skips';
  }
  return undefined;
}

/** A free TCP port on 127.0.0.1 (free when asked: another process could take it before Redis). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A running (or stopped, restartable) redis-server. */
export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  /** Stops the server (SIGTERM; SIGKILL after 5 s); data is gone, as persistence is off. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /**
   * Freezes the server (SIGSTOP): its connections stay open and accept bytes, but nothing is
   * answered, as with a stalled host. Its clock runs on, so expiry times pass meanwhile.
   */
  freeze(): void;
  /** Resumes a frozen server (SIGCONT); it then runs everything sent meanwhile. */
  thaw(): void;
  /** Stops it for good and removes its directory. */
  dispose(): Promise<void>;
  /** Runs one command with `redis-cli` (installed with redis-server) on database `db`: its raw output, trimmed. */
  cli(db: number, ...args: string[]): string;
}

const launch = (port: number, dir: string): Promise<ReadyProcess> =>
  spawnReady({
    name: 'redis-server',
    command: 'redis-server',
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    ready: /Ready to accept connections/,
    timeoutMs: 10_000,
    graceMs: 5_000,
  });

const terminate = async (server: ReadyProcess | undefined) => {
  // A frozen server would not act on SIGTERM until resumed.
  if (server && server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGCONT');
  await server?.stop();
};

/**
 * Starts redis-server on a free port with persistence off, in a fresh temporary directory.
 *
 * @throws {Error} When it cannot be started (not installed, or not ready within 10 s).
 */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'haw-redis-'));
  let server: ReadyProcess | undefined;
  let port = 0;
  // The free port may be taken before Redis binds it; try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      server = await launch(port, dir);
      break;
    } catch (error) {
      if (attempt === 3) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: () => terminate(server),
    freeze: () => {
      server?.child.kill('SIGSTOP');
    },
    thaw: () => {
      server?.child.kill('SIGCONT');
    },
    async start() {
      await terminate(server);
      server = await launch(port, dir);
    },
    async dispose() {
      await terminate(server);
      rmSync(dir, { recursive: true, force: true });
    },
    cli(db, ...args) {
      const run = spawnSync('redis-cli', ['-p', String(port), '-n', String(db), ...args], { encoding: 'utf8' });
      if (run.error || run.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${run.error ?? run.stderr}`);
      return run.stdout.trim();
    },
  };
}
