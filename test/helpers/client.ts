/**
 * A WebSocket test client: collects every frame, validates each against the contract, and
 * answers pings unless told not to.
 */
import WebSocket from 'ws';
import type { ServerMessage } from '../../plugin/index.ts';
import { validateClientFrame, validateServerFrame } from './contract.ts';
import { sleep } from './wait.ts';

type FrameOf<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

/** Options of `TestClient.connect`. */
export interface ConnectOptions {
  /** Answer `ping` with `pong` (default true). */
  autoPong?: boolean;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** How long to wait for the handshake (default 5000 ms). */
  timeout?: number;
}

/** How a connection ended. */
export interface Closed {
  code: number;
  reason: string;
}

export class TestClient {
  /** Every frame received, in order. */
  readonly frames: ServerMessage[] = [];
  /** Frames not yet consumed by `next`. */
  readonly #unread: ServerMessage[] = [];
  #waiters: (() => void)[] = [];
  /** Resolves when the socket closes. */
  readonly closed: Promise<Closed>;
  /** Contract or parse failures; asserted empty by `assertClean`. */
  readonly problems: Error[] = [];

  private constructor(
    readonly socket: WebSocket,
    options: ConnectOptions,
  ) {
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.#wake();
      });
    });
    socket.on('error', () => {});
    socket.on('message', (data, isBinary) => {
      try {
        if (isBinary) throw new Error('server sent a binary frame');
        const frame = validateServerFrame(JSON.parse(String(data)));
        this.frames.push(frame);
        if (frame.type === 'ping' && options.autoPong !== false) this.send({ type: 'pong' });
        this.#unread.push(frame);
        this.#wake();
      } catch (error) {
        this.problems.push(error as Error);
        this.#wake();
      }
    });
  }

  #wake() {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Opens a connection; resolves once open, rejects with the HTTP status when refused. */
  static connect(url: string, options: ConnectOptions = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers: options.headers, handshakeTimeout: options.timeout ?? 5000 });
      const client = new TestClient(socket, options);
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => {
          body += chunk;
        });
        response.on('end', () =>
          reject(
            Object.assign(new Error(`HTTP ${response.statusCode}`), {
              status: response.statusCode,
              headers: response.headers,
              body,
            }),
          ),
        );
      });
      socket.once('error', reject);
    });
  }

  /** Resolves with the next unread frame (of `type`, skipping pings unless asked for). */
  async next<T extends ServerMessage['type']>(type?: T, timeout = 3000): Promise<FrameOf<T>> {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (this.problems.length > 0) throw this.problems[0];
      const index = this.#unread.findIndex((frame) => (type ? frame.type === type : frame.type !== 'ping'));
      if (index >= 0) {
        // Frames before the match are consumed too, so order is asserted by consecutive calls.
        const [frame] = this.#unread.splice(0, index + 1).slice(-1);
        return frame as FrameOf<T>;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.socket.readyState === WebSocket.CLOSED) {
        throw new Error(`no ${type ?? 'frame'} within ${timeout} ms; unread: ${JSON.stringify(this.#unread)}`);
      }
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  /** Unread frames other than pings, consumed. */
  drain(): ServerMessage[] {
    return this.#unread.splice(0).filter((frame) => frame.type !== 'ping');
  }

  /**
   * Waits `ms` and asserts no frame other than ping arrived: a window in which something must NOT
   * happen, so it takes real time; keep it as short as what it rules out allows.
   */
  async expectSilence(ms: number): Promise<void> {
    await sleep(ms);
    const extra = this.drain();
    if (extra.length > 0) throw new Error(`expected no frames, got ${JSON.stringify(extra)}`);
  }

  /** Sends a frame as a well-behaved client (validated against the contract first). */
  send(frame: unknown): void {
    validateClientFrame(frame);
    this.socket.send(JSON.stringify(frame));
  }

  /** Sends anything, bypassing the contract: for bad-input tests. */
  sendRaw(data: string | Buffer, binary = false): void {
    this.socket.send(data, { binary });
  }

  close(code = 1000): Promise<Closed> {
    this.socket.close(code);
    return this.closed;
  }

  /** Drops the TCP connection without a close frame. */
  terminate(): Promise<Closed> {
    this.socket.terminate();
    return this.closed;
  }
}
