/**
 * `request()` (test/helpers/server.ts) always settles: against a server that answers and resets
 * the connection while the body is still being written, one that closes without a word, and
 * one that never answers. In-process servers over `node:net`, so each case is exact.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { request } from './helpers/server.ts';

/** A TCP server running `onConnection` for each client; closed with `close()`. */
async function rawServer(onConnection: (socket: net.Socket) => void): Promise<{ url: string; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/x`,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

const answer413 =
  'HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: 31\r\nConnection: close\r\n\r\n{"error":"payload_too_large"} \n';
/** Larger than what the kernel buffers on loopback, so the client is still writing when cut. */
const body = 'x'.repeat(32 * 1024 * 1024);

describe('request() settles', { timeout: 60_000 }, () => {
  it('when the server answers, then resets while the body is still being written', async () => {
    const server = await rawServer((socket) => {
      socket.once('data', () => socket.write(answer413, () => socket.resetAndDestroy()));
    });
    try {
      const outcome = await request(server.url, { method: 'POST', body, timeout: 20_000 }).then(
        (response) => response.status,
        (error: Error) => error.message,
      );
      // The reset may reach the client before it read the answer: either way, it settled.
      assert.ok(outcome === 413 || /no answer/.test(String(outcome)), String(outcome));
    } finally {
      server.close();
    }
  });

  it('when the server answers, waits, then closes while the body is still being written', async () => {
    const server = await rawServer((socket) => {
      socket.once('data', () => {
        socket.write(answer413);
        setTimeout(() => socket.destroy(), 200);
      });
    });
    try {
      const response = await request(server.url, { method: 'POST', body, timeout: 20_000 });
      assert.equal(response.status, 413);
      assert.match(response.text, /payload_too_large/);
    } finally {
      server.close();
    }
  });

  it('rejects, naming the request, when the server closes without an answer', async () => {
    const server = await rawServer((socket) => socket.once('data', () => socket.destroy()));
    try {
      await assert.rejects(request(server.url, { method: 'POST', body, timeout: 20_000 }), /POST http:.*no answer/);
    } finally {
      server.close();
    }
  });

  it('rejects after its timeout when the server never answers', async () => {
    const server = await rawServer((socket) => socket.resume());
    try {
      await assert.rejects(request(server.url, { timeout: 500 }), /GET http:.* no whole answer within 500 ms/);
    } finally {
      server.close();
    }
  });
});
