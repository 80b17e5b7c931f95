/**
 * The client-side processes of the bench, pinned to core 1, and the request/answer protocol over
 * their IPC channel: the one load generator (bench/load.ts) and the scale scenario's workers
 * (bench/scale-clients.ts).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { type Pinning, withOpenFiles } from './servers.ts';

/** Sends one command to the load generator; resolves with its result. */
export type Load = <T = unknown>(command: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

export interface LoadGenerator {
  load: Load;
  /** Asks the load generator to exit, then SIGKILLs it. */
  close(): Promise<void>;
}

/** Starts the load generator (bench/load.ts) on core 1. */
export const startLoadGenerator = (pinning: Pinning): LoadGenerator => startWorker(pinning, 'bench/load.ts');

/**
 * Starts `script` (a module answering `{ id, command }` IPC messages) on core 1, allowed
 * `openFiles` file descriptors when given (see `withOpenFiles`).
 */
export function startWorker(pinning: Pinning, script: string, openFiles?: number): LoadGenerator {
  const command = [process.execPath, '--import', 'tsx', script];
  const [file, ...args] = pinning.pin(1, openFiles ? withOpenFiles(openFiles, command) : command) as [
    string,
    ...string[],
  ];
  const child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let seq = 0;
  const waiters = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const waiter = waiters.get(message.id);
    waiters.delete(message.id);
    if (message.error) waiter?.reject(new Error(`load generator: ${message.error}`));
    else waiter?.resolve(message.result);
  });
  child.on('exit', (code) => {
    for (const waiter of waiters.values()) waiter.reject(new Error(`load generator exited (${code})`));
    waiters.clear();
  });

  const load: Load = <T>(command: Record<string, unknown>, timeoutMs = 120_000) => {
    const id = ++seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load generator: ${command.op} timed out`)), timeoutMs);
      waiters.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      child.send({ id, command });
    });
  };

  return {
    load,
    async close() {
      await load({ op: 'exit' }).catch(() => {});
      child.kill('SIGKILL');
    },
  };
}

/**
 * The worker's side of `startWorker`: answers every `{ id, command }` from the parent with
 * `{ id, result }` or `{ id, error }`, and exits when the parent goes.
 */
export function answerCommands<C>(handle: (command: C) => Promise<unknown>): void {
  process.on('message', (message: { id: number; command: C }) => {
    handle(message.command).then(
      (result) => process.send?.({ id: message.id, result }),
      (error: unknown) => process.send?.({ id: message.id, error: String((error as Error)?.stack ?? error) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
