/**
 * The one load generator process (bench/load.ts), pinned to core 1, and the request/answer
 * protocol over its IPC channel.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import type { Pinning } from './servers.ts';

/** Sends one command to the load generator; resolves with its result. */
export type Load = <T = unknown>(command: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

export interface LoadGenerator {
  load: Load;
  /** Asks the load generator to exit, then SIGKILLs it. */
  close(): Promise<void>;
}

export function startLoadGenerator(pinning: Pinning): LoadGenerator {
  const [file, ...args] = pinning.pin(1, [process.execPath, '--import', 'tsx', 'bench/load.ts']) as [
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
