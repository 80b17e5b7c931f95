/**
 * Starts a throwaway `redis-server` (the Debian package) on a free port, persistence off, for
 * tests that need a real Redis; it can be stopped and started again on the same port, and
 * frozen (SIGSTOP) and resumed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
}

const launch = async (port: number, dir: string): Promise<ChildProcess> => {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server not ready in 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`could not run redis-server: ${error.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
  return child;
};

const terminate = async (child: ChildProcess | undefined) => {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // A frozen server would not act on SIGTERM until resumed.
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
};

/**
 * Starts redis-server on a free port with persistence off, in a fresh temporary directory.
 *
 * @throws {Error} When it cannot be started (not installed, or not ready within 10 s).
 */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'haw-redis-'));
  let child: ChildProcess | undefined;
  let port = 0;
  // The free port may be taken before Redis binds it; try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir);
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
    stop: () => terminate(child),
    freeze: () => {
      child?.kill('SIGSTOP');
    },
    thaw: () => {
      child?.kill('SIGCONT');
    },
    async start() {
      await terminate(child);
      child = await launch(port, dir);
    },
    async dispose() {
      await terminate(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
