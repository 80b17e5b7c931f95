/**
 * A client of a bench server's control channel (bench/servers/common.ts): one JSON object per
 * line each way. Used by the load generator and the scale scenario.
 *
 * @module
 */
import { connect } from 'node:net';

export interface ControlClient {
  /** Sends one command without waiting (e.g. `pub`). */
  send(command: Record<string, unknown>): void;
  /** Sends `{op, id}` and resolves with the server's answer to that id. */
  ask(op: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Bytes written but not yet sent: publishers back off when the server falls behind. */
  readonly writableLength: number;
  close(): void;
}

/** Connects to the control channel on `port` of 127.0.0.1. */
export async function openControl(port: number): Promise<ControlClient> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  let seq = 0;
  const waiters = new Map<number, (reply: Record<string, unknown>) => void>();
  let rest = '';
  socket.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const reply = JSON.parse(line) as Record<string, unknown>;
      waiters.get(reply.id as number)?.(reply);
      waiters.delete(reply.id as number);
    }
  });
  socket.on('error', () => {});
  return {
    send: (command) => socket.write(`${JSON.stringify(command)}\n`),
    ask(op, timeoutMs = 30_000) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`control ${op} timed out`)), timeoutMs);
        waiters.set(id, (reply) => {
          clearTimeout(timer);
          resolve(reply);
        });
        socket.write(`${JSON.stringify({ op, id })}\n`);
      });
    },
    get writableLength() {
      return socket.writableLength;
    },
    close: () => socket.destroy(),
  };
}
