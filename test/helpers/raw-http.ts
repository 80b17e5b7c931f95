/**
 * Raw HTTP over `node:net` for the upgrade-path tests: requests no HTTP client would send
 * (`Upgrade: h2c` on a plain request, a WebSocket handshake without its key, a header block
 * dribbled byte by byte), and a count of a process's open file descriptors.
 */
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** What a raw exchange saw. */
export interface RawAnswer {
  /** Everything the server sent, as latin1. */
  text: string;
  /** The status code of the first response, 0 if none. */
  status: number;
  /** The first response's body (after the blank line). */
  body: string;
  /**
   * `server` when the server ended or reset the connection, `timeout` when we gave up,
   * `answered` when we closed it ourselves once a whole answer was in (`sendAll` on keep-alive).
   */
  closedBy: 'server' | 'timeout' | 'answered';
  /** Ms from the first byte written to the connection's end. */
  ms: number;
}

/** Parses the first response out of `text`. */
function parse(text: string): { status: number; body: string } {
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
  const split = text.indexOf('\r\n\r\n');
  return { status, body: split < 0 ? '' : text.slice(split + 4) };
}

/** Whether `text` holds a whole first answer: its declared length, or chunks up to the last. */
function isWhole(text: string): boolean {
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) return false;
  const headers = text.slice(0, split);
  const length = /^content-length:\s*(\d+)/im.exec(headers);
  if (length) return text.length - split - 4 >= Number(length[1]);
  return /^transfer-encoding:\s*chunked/im.test(headers) && text.endsWith('\r\n0\r\n\r\n');
}

/** Opens a TCP connection to 127.0.0.1:port. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Waits for the server to end `socket`, collecting what it sends; gives up (and destroys the
 * socket) after `timeout` ms. The socket stays open on our side until then: a client that
 * "stays".
 */
export function answerOf(
  socket: net.Socket,
  timeout = 5000,
  started = Date.now(),
  untilAnswered = false,
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (untilAnswered && isWhole(text)) finish('answered');
    });
    socket.on('error', () => {});
    const finish = (closedBy: RawAnswer['closedBy']) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, ...parse(text), closedBy, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish('timeout'), timeout);
    if (socket.destroyed || socket.readableEnded) finish('server');
    socket.once('end', () => finish('server'));
    socket.once('close', () => finish('server'));
  });
}

/** Sends `request` on a fresh connection and waits for the server to answer and close it. */
export async function exchange(port: number, request: string, timeout = 5000): Promise<RawAnswer> {
  const socket = await connect(port);
  const started = Date.now();
  const answer = answerOf(socket, timeout, started);
  socket.write(request, 'latin1');
  return answer;
}

/** A request head, CRLF-terminated, with `Host`. */
export function head(requestLine: string, headers: Record<string, string>, body = ''): string {
  const lines = [
    requestLine,
    'Host: 127.0.0.1',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** A well-formed `Sec-WebSocket-Key` (RFC 6455's example). */
export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** Open file descriptors of a process (Linux `/proc`). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The soft limit on open files of a process (Linux `/proc`). */
export function fdLimit(pid: number): number {
  const line = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return Number(line?.[1] ?? Number.NaN);
}

/** Runs `task` over `items`, at most `width` at a time. */
export async function inBatches<T, R>(items: T[], width: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += width)
    results.push(...(await Promise.all(items.slice(i, i + width).map(task))));
  return results;
}

/** The suite's `sleep` (test/helpers/wait.ts), still exported here for the files that import it from this module. */
export { sleep } from './wait.ts';

/** What `sendAll` saw: the answer, and how much of the body went out before the end. */
export interface SentAnswer extends RawAnswer {
  /** Bytes of the body written before the connection ended. */
  sent: number;
}

/**
 * Writes `head`, then `body` (a buffer written whole, or a size to send in 64 KiB chunks for as
 * long as the server reads them: a client that never stops), while collecting what the server
 * answers. Settles once a whole answer is in or the server ends the connection, or after
 * `timeout` ms; the socket is destroyed then.
 */
export async function sendAll(
  port: number,
  head: string,
  body: Buffer | number,
  timeout = 30_000,
): Promise<SentAnswer> {
  const socket = await connect(port);
  const started = Date.now();
  const answer = answerOf(socket, timeout, started, true);
  let sent = 0;
  socket.write(head, 'latin1');
  if (Buffer.isBuffer(body)) {
    socket.write(body, (error) => {
      if (!error) sent = body.length;
    });
  } else {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const pump = () => {
      while (!socket.destroyed && sent < body) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    pump();
  }
  return { ...(await answer), sent };
}
