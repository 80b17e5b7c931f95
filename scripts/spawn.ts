/**
 * Starts a child process and waits until it prints a line saying it is ready: the one way the
 * tests (test/helpers/server.ts, test/helpers/redis.ts) and the benchmark (bench/lib/servers.ts)
 * start the servers they talk to.
 *
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** One of the two output streams. */
export type Stream = 'stdout' | 'stderr';

export interface SpawnReadyOptions {
  /** Names the process in error messages. */
  name: string;
  command: string;
  args?: readonly string[];
  /** Working directory; the current one unless given. */
  cwd?: string;
  /** The whole environment; `process.env` unless given. */
  env?: NodeJS.ProcessEnv;
  /** The process is ready once this matches what one of `streams` printed so far. */
  ready: RegExp;
  /** Streams `ready` is matched against, each on its own; both unless given. */
  streams?: readonly Stream[];
  /** How long to wait for `ready` before killing the process (SIGKILL); 30 s unless given. */
  timeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL; 5 s unless given. */
  graceMs?: number;
  /** Called with every chunk of output as it arrives, e.g. to forward it. */
  onOutput?: (chunk: string, stream: Stream) => void;
}

/** A started process that printed its ready line. */
export interface ReadyProcess {
  readonly child: ChildProcess;
  /** What `ready` matched (with its capture groups). */
  readonly match: RegExpExecArray;
  /** Everything the process printed so far, stdout and stderr interleaved as received. */
  output(): string;
  /** Resolves with the exit code once the process has exited (`null` when a signal ended it). */
  readonly exited: Promise<number | null>;
  /**
   * Stops the process: SIGTERM, then SIGKILL when it has not exited after `graceMs`. Resolves
   * with the exit code (`null` when a signal ended it); at once when it had already exited.
   */
  stop(): Promise<number | null>;
}

/**
 * Spawns `command` (stdin ignored, stdout and stderr collected) and resolves once `ready`
 * matches its output.
 *
 * @throws {Error} With everything the process printed, when it cannot be run, exits before it is
 *   ready, or is not ready within `timeoutMs` (it is then killed).
 */
export function spawnReady(options: SpawnReadyOptions): Promise<ReadyProcess> {
  const { name, ready, timeoutMs = 30_000, graceMs = 5_000 } = options;
  const streams = options.streams ?? ['stdout', 'stderr'];
  const child = spawn(options.command, options.args ?? [], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  /** Per stream, what it printed until ready (so a line is never split by the other stream). */
  const pending: Record<Stream, string> = { stdout: '', stderr: '' };
  let match: RegExpExecArray | null = null;
  let onReady: (() => void) | undefined;
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream]?.setEncoding('utf8');
    child[stream]?.on('data', (chunk: string) => {
      output += chunk;
      options.onOutput?.(chunk, stream);
      if (match || !streams.includes(stream)) return;
      pending[stream] += chunk;
      match = ready.exec(pending[stream]);
      if (match) {
        pending.stdout = pending.stderr = '';
        onReady?.();
      }
    });
  }
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    // A process that could not be started never exits.
    child.on('error', (error) => {
      spawnError ??= error;
      if (child.pid === undefined) resolve(null);
    });
  });

  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  return new Promise<ReadyProcess>((resolve, reject) => {
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve({ child, match: match as RegExpExecArray, output: () => output, exited, stop });
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(new Error(`${name} was not ready within ${timeoutMs / 1000} s:\n${output}`));
    }, timeoutMs);
    onReady = () => settle();
    void exited.then(async (code) => {
      if (spawnError && child.pid === undefined) {
        settle(new Error(`could not run ${name}: ${spawnError.message}`));
        return;
      }
      // Let the pipes drain, so the error shows the last words (a grandchild may hold them open).
      await new Promise((done) => {
        child.once('close', done);
        setTimeout(done, 200).unref();
      });
      settle(new Error(`${name} exited (${code ?? child.signalCode}) before it was ready:\n${output}`));
    });
  });
}
