/**
 * A tiny HTTP front for the client tests: serves a few static files (the browser page and the
 * client bundle) and passes everything else through to the demo server, WebSocket upgrades as
 * raw TCP. Its `cut()` drops every proxied connection without a close frame, and `refuse()`
 * resets new connections, so a test can force a drop and keep the client out for a while.
 * Same origin as the page for the browser, so the hub's origin check passes.
 */
import http from 'node:http';
import net from 'node:net';

/** A static file. */
export interface StaticFile {
  type: string;
  body: string | Uint8Array;
}

export interface Front {
  readonly port: number;
  readonly http: string;
  readonly ws: string;
  /** Upgrades passed through so far. */
  readonly upgrades: number;
  /** Drops every proxied WebSocket connection (TCP reset, no close frame). */
  cut(): void;
  /** While true, new connections are reset at once. */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

export async function startFront(backendPort: () => number, files: Record<string, StaticFile> = {}): Promise<Front> {
  const piped = new Set<net.Socket>();
  let refusing = false;
  let upgrades = 0;
  const server = http.createServer((req, res) => {
    const file = files[req.url ?? ''];
    if (file) {
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' });
      res.end(file.body);
      return;
    }
    const upstream = http.request(
      { host: '127.0.0.1', port: backendPort(), path: req.url, method: req.method, headers: req.headers, agent: false },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    if (refusing) socket.resetAndDestroy();
  });
  server.on('upgrade', (req, socket: net.Socket, head) => {
    if (refusing) return socket.resetAndDestroy();
    upgrades++;
    const upstream = net.connect(backendPort(), '127.0.0.1');
    let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    upstream.write(`${raw}\r\n`);
    upstream.write(head);
    socket.pipe(upstream).pipe(socket);
    for (const end of [socket, upstream]) {
      piped.add(end);
      end.on('error', () => {});
      end.on('close', () => {
        piped.delete(end);
        socket.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    get upgrades() {
      return upgrades;
    },
    cut() {
      for (const socket of piped) socket.resetAndDestroy();
    },
    refuse(on) {
      refusing = on;
    },
    close() {
      for (const socket of piped) socket.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
