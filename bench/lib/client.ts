/**
 * One bench client connection, as the load generator (bench/load.ts) and the scale scenario's
 * workers (bench/scale-clients.ts) open it: the handshake of each protocol family, its
 * heartbeat answered, and every frame that may carry updates handed on.
 *
 * @module
 */
import WebSocket, { type ClientOptions } from 'ws';

/** How clients speak to a server: the hub's protocol, plain WebSocket, or Socket.IO (engine.io v4). */
export type Family = 'agent' | 'plain' | 'sio';

/** What a connection reports. */
export interface ClientHooks {
  /** A frame that may carry updates; their text starts at `from`. */
  update(data: Buffer, from: number): void;
  /** The server's heartbeat arrived (and was answered). */
  ping(): void;
  /** The connection closed after it was ready. */
  closed(): void;
}

const PONG = '{"type":"pong"}';

/**
 * Opens one connection to `url` and resolves once it is ready: open (plain), the hub's
 * `connection_established` (agent), or the Socket.IO namespace joined (sio).
 */
export function openClient(
  url: string,
  family: Family,
  hooks: ClientHooks,
  options: { timeoutMs: number; localAddress?: string },
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const wsOptions: ClientOptions = { perMessageDeflate: false, skipUTF8Validation: true };
    if (options.localAddress) wsOptions.localAddress = options.localAddress;
    const socket = new WebSocket(url, wsOptions);
    let ready = false;
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`handshake with ${url} timed out after ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    const done = () => {
      ready = true;
      clearTimeout(timer);
      resolve(socket);
    };
    socket.on('error', (error) => {
      if (!ready) {
        clearTimeout(timer);
        reject(error);
      }
    });
    socket.on('close', () => {
      if (ready) hooks.closed();
    });
    if (family === 'plain') {
      // `ws` answers protocol pings itself (autoPong).
      socket.on('open', done);
      socket.on('ping', () => hooks.ping());
      socket.on('message', (data: Buffer) => hooks.update(data, 0));
    } else if (family === 'agent') {
      socket.on('message', (data: Buffer) => {
        // {"type":"ping",…} is the hub's heartbeat; the first frame is connection_established.
        if (data[9] === 0x70 && data[10] === 0x69 && data.toString('latin1', 0, 15) === '{"type":"ping",') {
          hooks.ping();
          socket.send(PONG);
          return;
        }
        if (!ready) {
          if (data.includes('connection_established')) done();
          return;
        }
        // The snapshot after it repeats the agent's latest updates: state, not deliveries.
        if (data[9] === 0x73 && data[10] === 0x6e && data.toString('latin1', 0, 19) === '{"type":"snapshot",') return;
        hooks.update(data, 0);
      });
    } else {
      socket.on('message', (data: Buffer) => {
        const kind = data[0];
        if (kind === 0x32 && data.length === 1) {
          hooks.ping();
          socket.send('3');
        } else if (kind === 0x34 && data[1] === 0x32) hooks.update(data, 2);
        else if (kind === 0x30) socket.send('40');
        else if (kind === 0x34 && data[1] === 0x30 && !ready) done();
      });
    }
  });
}
