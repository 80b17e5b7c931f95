/**
 * Bench server: raw `ws` doing the fan-out by hand, the practical limit on Node: stringify
 * once, one Buffer, `send` to each socket. Heartbeat: the `ws` README's ping/terminate sweep.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { settings, startControl, taskUpdate } from './common.ts';

const agents = new Map<string, Set<WebSocket>>();
const alive = new WeakSet<WebSocket>();
const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (socket, req) => {
  const agent = /^\/agents\/([^/]+)\/ws/.exec(req.url ?? '')?.[1];
  if (!agent) return socket.close(1008);
  let sockets = agents.get(agent);
  if (!sockets) {
    sockets = new Set();
    agents.set(agent, sockets);
  }
  sockets.add(socket);
  alive.add(socket);
  socket.on('pong', () => alive.add(socket));
  socket.on('close', () => {
    sockets.delete(socket);
    if (sockets.size === 0) agents.delete(agent);
  });
});
if (settings.heartbeatMs > 0) {
  setInterval(() => {
    for (const socket of wss.clients) {
      if (!alive.has(socket)) {
        socket.terminate();
        continue;
      }
      alive.delete(socket);
      socket.ping();
    }
  }, settings.heartbeatMs);
}
server.listen(0, '127.0.0.1', () => {
  startControl((server.address() as AddressInfo).port, (agent, message) => {
    const sockets = agents.get(agent);
    if (!sockets) return;
    const frame = Buffer.from(JSON.stringify(taskUpdate(agent, message)));
    for (const socket of sockets) socket.send(frame, { binary: false });
  });
});
