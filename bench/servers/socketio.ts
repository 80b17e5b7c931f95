/**
 * Bench server: Socket.IO with one room per agent (`io.to(agent).emit`), WebSocket transport.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { settings, startControl, taskUpdate } from './common.ts';

const server = createServer();
const never = 2 ** 31 - 1;
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: settings.heartbeatMs > 0 ? settings.heartbeatMs : never,
  pingTimeout: settings.heartbeatMs > 0 ? 5 * settings.heartbeatMs : never,
});
io.on('connection', (socket) => {
  const agent = socket.handshake.query.agent;
  if (typeof agent === 'string') void socket.join(agent);
});
server.listen(0, '127.0.0.1', () => {
  startControl((server.address() as AddressInfo).port, (agent, message) => {
    io.to(agent).emit('update', taskUpdate(agent, message));
  });
});
