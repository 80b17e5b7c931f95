/**
 * `serveNode`'s own upgrade path (adapters/node-upgrade.ts): the app's middleware and
 * `authorize` run for the WebSocket route and see a request that behaves as a `Request`; the
 * `101` and the first frames leave in one write; and sockets that misbehave during the upgrade
 * (vanished, half-closed, garbage in the head, a body, a refusal set by a middleware) get an
 * answer or a close, are counted where the hub sees them, and never cost the process.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { WSContext } from 'hono/ws';
import { WebSocket } from 'ws';
import { type NodeServer, node, serveNode, upgradeWebSocket } from '../adapters/node.ts';
import { type AgentHub, type AgentHubOptions, createAgentHub } from '../plugin/index.ts';
import { answerOf, connect, exchange, head, WS_KEY } from './helpers/raw-http.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const wsHeaders = {
  Connection: 'Upgrade',
  Upgrade: 'websocket',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': WS_KEY,
};

/** What the app's middleware saw of the last request to the WebSocket route. */
interface Seen {
  isRequest: boolean;
  method: string;
  url: string;
  probe: string | null;
  iterated: boolean;
  cloned: string | null;
  signal: boolean;
  authorized: number;
  echoClosed?: number;
}

interface Running {
  hub: AgentHub;
  server: NodeServer;
  seen: Seen;
}

/**
 * A hub served by `serveNode` behind an app with a middleware that reads the request the way
 * an app's middleware would, and sets a header on every answer; `/agents/refused-*` are turned
 * into a 409 by the middleware after the hub accepted them.
 */
async function serveWithMiddleware(options: AgentHubOptions = {}): Promise<Running> {
  const seen: Seen = {
    isRequest: false,
    method: '',
    url: '',
    probe: null,
    iterated: false,
    cloned: null,
    signal: false,
    authorized: 0,
  };
  const hub = createAgentHub({
    logger: false,
    authorize: async () => {
      seen.authorized++;
      return true;
    },
    ...options,
  });
  const app = new Hono();
  app.use('*', async (c, next) => {
    const raw = c.req.raw;
    seen.isRequest = raw instanceof Request;
    seen.method = raw.method;
    seen.url = raw.url;
    seen.probe = raw.headers.get('X-Probe');
    seen.iterated = [...raw.headers].some(([name, value]) => name === 'x-probe' && value === seen.probe);
    seen.cloned = raw.clone().headers.get('x-probe');
    seen.signal = raw.signal instanceof AbortSignal;
    await next();
    if (c.req.path.startsWith('/agents/refused-')) c.res = new Response(null, { status: 409 });
    else c.header('X-Middleware', 'ran');
  });
  app.route('/agents', hub.routes(node));
  // A WebSocket route of the app's own: an echo that reports what its context shows.
  app.get(
    '/echo',
    upgradeWebSocket(() => ({
      onOpen(_event, ws) {
        const context = { isContext: ws instanceof WSContext, url: ws.url?.pathname, readyState: ws.readyState };
        ws.send(JSON.stringify(context));
      },
      onMessage(event, ws) {
        ws.send(`echo ${String(event.data)}`);
      },
      onClose(event) {
        seen.echoClosed = event.code;
      },
    })),
  );
  const server = await serveNode({ fetch: app.fetch, hub, port: 0 });
  return { hub, server, seen };
}

/** Opens a client; resolves with its socket, the `101`'s headers and its first frame. */
function open(url: string, headers: Record<string, string> = {}) {
  return new Promise<{ socket: WebSocket; upgradeHeaders: Record<string, unknown>; first: { type: string } }>(
    (resolve, reject) => {
      const socket = new WebSocket(url, { headers });
      let upgradeHeaders: Record<string, unknown> = {};
      socket.once('upgrade', (response) => {
        upgradeHeaders = response.headers;
      });
      socket.once('message', (data) => resolve({ socket, upgradeHeaders, first: JSON.parse(String(data)) }));
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) => reject(new Error(`status ${response.statusCode}`)));
    },
  );
}

/** Everything a raw socket receives until the server closes it (or `ms` pass). */
async function rawExchange(port: number, write: (socket: Socket) => void, ms = 3000) {
  const socket = await connect(port);
  const answer = answerOf(socket, ms);
  write(socket);
  return answer;
}

describe('serveNode: its own upgrade path', () => {
  let running: Running;
  let url: string;
  before(async () => {
    running = await serveWithMiddleware();
    url = `ws://127.0.0.1:${running.server.port}/agents`;
  });
  after(async () => {
    await running.server.close();
  });

  it("runs the app's middleware and authorize, with a request that behaves as a Request", async () => {
    const authorized = running.seen.authorized;
    const { socket, upgradeHeaders, first } = await open(`${url}/mw-agent/ws?since=0&epoch=abc`, {
      'X-Probe': 'probe-1',
    });
    socket.close();
    assert.equal(first.type, 'connection_established');
    assert.equal(running.seen.authorized, authorized + 1, 'authorize ran once');
    assert.deepEqual(
      { ...running.seen, authorized: 0 },
      {
        isRequest: true,
        method: 'GET',
        url: `http://127.0.0.1:${running.server.port}/agents/mw-agent/ws?since=0&epoch=abc`,
        probe: 'probe-1',
        iterated: true,
        cloned: 'probe-1',
        signal: true,
        authorized: 0,
      },
    );
    assert.equal(upgradeHeaders['x-middleware'], 'ran', "the middleware's header is on the 101");
  });

  it("serves the app's own WebSocket routes made with upgradeWebSocket from hono-agent-ws/node", async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${running.server.port}/echo`);
    const frames: string[] = [];
    socket.on('message', (data) => frames.push(String(data)));
    await new Promise((done) => socket.once('open', done));
    socket.send('hi');
    await waitFor(() => frames.length === 2, 3000, 'two frames');
    socket.close(4321);
    assert.deepEqual(JSON.parse(frames[0] as string), { isContext: true, url: '/echo', readyState: 1 });
    assert.equal(frames[1], 'echo hi');
    await waitFor(() => running.seen.echoClosed === 4321, 3000, 'onClose with the code');
  });

  it('sends the 101 and the first frames in one write', async () => {
    // Counts the writes Node's stream hands the socket (`_write`, `_writev`: one syscall each).
    let writes = 0;
    const count = (socket: Socket) => {
      const target = socket as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
      for (const key of ['_write', '_writev'] as const) {
        const original = target[key].bind(socket);
        target[key] = (...args: unknown[]) => {
          writes++;
          return original(...args);
        };
      }
    };
    running.server.server.once('connection', count);
    const socket = await connect(running.server.port);
    const first = new Promise<string>((resolve) =>
      socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1'))),
    );
    socket.write(head('GET /agents/one-write/ws HTTP/1.1', wsHeaders));
    const chunk = await first;
    await sleep(50);
    socket.destroy();
    assert.match(chunk, /^HTTP\/1\.1 101 /);
    assert.ok(chunk.includes('"type":"connection_established"'), 'connection_established in the same read');
    assert.ok(chunk.includes('"type":"snapshot"'), 'the snapshot in the same read');
    assert.equal(writes, 1, 'one write for the 101, connection_established and the snapshot');
  });

  it("refuses an upgrade a middleware turned into another status, with the middleware's status", async () => {
    const before = (await running.hub.stats()).total_connections;
    const answer = await exchange(running.server.port, head('GET /agents/refused-1/ws HTTP/1.1', wsHeaders));
    assert.equal(answer.status, 409);
    assert.equal(answer.closedBy, 'server');
    assert.equal((await running.hub.stats()).total_connections, before, 'no connection was opened');
  });

  it("keeps the hub's refusals: 400 for a bad agent id, status and error header only", async () => {
    const answer = await exchange(running.server.port, head('GET /agents/bad%20id/ws HTTP/1.1', wsHeaders));
    assert.equal(answer.status, 400);
    assert.match(answer.text, /x-agent-ws-error: invalid_agent_id/i);
    assert.equal(answer.body, '');
    assert.equal(answer.closedBy, 'server');
  });

  it('answers garbage in the request head with 400 and closes', async () => {
    const answer = await rawExchange(running.server.port, (socket) =>
      socket.write('GET /agents/garbage/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\x01\x02 not a header\r\n\r\n', 'latin1'),
    );
    assert.equal(answer.status, 400);
    assert.equal(answer.closedBy, 'server');
  });

  it('closes with 1002, counted, a client whose first bytes after the handshake are garbage', async () => {
    const before = (await running.hub.stats()).errors_by_kind.protocol_error;
    const answer = await rawExchange(running.server.port, (socket) =>
      socket.write(`${head('GET /agents/after-head/ws HTTP/1.1', wsHeaders)}\xff\xffnot a frame`, 'latin1'),
    );
    assert.equal(answer.status, 101);
    assert.equal(answer.closedBy, 'server');
    // The close frame: FIN + close opcode, length 2, code 1002.
    assert.ok(answer.text.includes('\x88\x02\x03\xea'), 'a close frame with 1002');
    await waitFor(
      async () => (await running.hub.stats()).errors_by_kind.protocol_error === before + 1,
      3000,
      'protocol_error counted',
    );
  });

  it('treats a body sent with the upgrade request as WebSocket bytes: 1002, nothing crashes', async () => {
    const answer = await rawExchange(running.server.port, (socket) =>
      socket.write(
        head('GET /agents/with-body/ws HTTP/1.1', { ...wsHeaders, 'Content-Length': '11' }, 'hello=world'),
        'latin1',
      ),
    );
    assert.equal(answer.status, 101);
    assert.equal(answer.closedBy, 'server');
    assert.ok(answer.text.includes('\x88\x02\x03\xea'), 'a close frame with 1002');
    assert.equal((await open(`${url}/after-body/ws`)).first.type, 'connection_established');
  });

  it('answers a POST on the upgrade path with 404, no body, and closes', async () => {
    const answer = await exchange(
      running.server.port,
      head('POST /agents/posted/ws HTTP/1.1', { ...wsHeaders, 'Content-Length': '2' }, '{}'),
    );
    assert.equal(answer.status, 404);
    assert.equal(answer.closedBy, 'server');
  });
});

describe('serveNode: sockets that go away during the upgrade', () => {
  let running: Running;
  before(async () => {
    // authorize answers after 150 ms: the client acts while the app decides.
    running = await serveWithMiddleware({
      authorize: async () => {
        await sleep(150);
        return true;
      },
    });
  });
  after(async () => {
    await running.server.close();
  });

  const connections = () =>
    new Promise<number>((resolve, reject) =>
      running.server.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
    );

  it('releases a half-closed client (FIN after the request) without opening a connection', async () => {
    const before = (await running.hub.stats()).total_connections;
    const answer = await rawExchange(running.server.port, (socket) => {
      socket.write(head('GET /agents/half-closed/ws HTTP/1.1', wsHeaders));
      socket.end();
    });
    assert.equal(answer.closedBy, 'server');
    assert.notEqual(answer.status, 101, 'no handshake with a client that stopped sending');
    await waitFor(async () => (await connections()) === 0, 3000, 'socket released');
    assert.equal((await running.hub.stats()).total_connections, before);
  });

  it('survives clients that vanish while the app decides, and serves the next one', async () => {
    const before = (await running.hub.stats()).total_connections;
    for (let i = 0; i < 10; i++) {
      const socket = await connect(running.server.port);
      socket.on('error', () => {});
      socket.write(head(`GET /agents/vanish-${i}/ws HTTP/1.1`, wsHeaders));
      await sleep(10);
      // Half of them with a reset, half with a plain close.
      if (i % 2) socket.resetAndDestroy();
      else socket.destroy();
    }
    await sleep(300);
    await waitFor(async () => (await connections()) === 0, 3000, 'every socket released');
    const stats = await running.hub.stats();
    assert.equal(stats.total_connections, before, 'no connection opened for a vanished client');
    assert.equal(stats.active_connections, 0);
    const next = await open(`ws://127.0.0.1:${running.server.port}/agents/after-vanish/ws`);
    next.socket.close();
    assert.equal(next.first.type, 'connection_established');
  });
});
