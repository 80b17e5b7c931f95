/**
 * The Node server's upgrade path and slow clients (issue 9, "Sockets that are never released").
 *
 * Node hands every request with `Connection: Upgrade` and an `Upgrade` header to the server's
 * 'upgrade' listeners, and `@hono/node-server`'s listener ignores any `Upgrade` but `websocket`,
 * so without `guardUpgrades` such a socket is never answered nor closed. These tests hold the
 * demo server (child process, as `npm start` runs it) and `serveNode` in-process to: an answer
 * and a close for every request on that path, file descriptors back to their baseline after a
 * flood, service again after a flood under a low `ulimit -n`, and slow clients cut in bounded
 * time by the documented timeouts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { WebSocket } from 'ws';
import {
  guardUpgrades,
  type NodeServer,
  nodeWebSocket,
  routesOptions,
  serveNode,
  serverTimeouts,
  upgradeWebSocket,
} from '../adapters/node.ts';
import { type AgentHubOptions, createAgentHub } from '../plugin/index.ts';
import {
  answerOf,
  connect,
  exchange,
  fdCount,
  fdLimit,
  head,
  inBatches,
  type RawAnswer,
  WS_KEY,
} from './helpers/raw-http.ts';
import { node, type Runtime, type ServerHandle, startServer } from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const h2c = { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA' };
const wsHeaders = {
  Connection: 'Upgrade',
  Upgrade: 'websocket',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': WS_KEY,
};
const update = JSON.stringify({ type: 'status_update', status: 'idle' });

/** Requests on the upgrade path, each with the answer it must get before the server closes. */
const UPGRADE_REQUESTS: { name: string; request: string; check: (answer: RawAnswer) => void }[] = [
  {
    name: 'Upgrade: h2c on the stats route: its 200 JSON',
    request: head('GET /agents/ws/stats HTTP/1.1', h2c),
    check: (answer) => {
      assert.equal(answer.status, 200);
      assert.equal(typeof (JSON.parse(answer.body) as { instance_id: unknown }).instance_id, 'string');
    },
  },
  {
    name: 'Upgrade: foo on the WebSocket route: 426 upgrade_required',
    request: head('GET /agents/probe/ws HTTP/1.1', { Connection: 'Upgrade', Upgrade: 'foo' }),
    check: (answer) => {
      assert.equal(answer.status, 426);
      assert.match(answer.text, /x-agent-ws-error: upgrade_required/i);
      assert.equal((JSON.parse(answer.body) as { error: string }).error, 'upgrade_required');
    },
  },
  {
    name: 'Upgrade: h2c on a POST with a body (what `curl --http2` sends): the body reaches the app',
    request: head(
      'POST /agents/probe/updates HTTP/1.1',
      { ...h2c, 'Content-Type': 'application/json', 'Content-Length': String(update.length) },
      update,
    ),
    check: (answer) => assert.equal(answer.status, 202),
  },
  {
    name: 'Upgrade listing two protocols (h2c, websocket): served as plain HTTP, 426',
    request: head('GET /agents/probe/ws HTTP/1.1', { ...wsHeaders, Upgrade: 'h2c, websocket' }),
    check: (answer) => assert.equal(answer.status, 426),
  },
  {
    name: 'Upgrade: websocket without Sec-WebSocket-Key: 400',
    request: head('GET /agents/probe/ws HTTP/1.1', { Connection: 'Upgrade', Upgrade: 'websocket' }),
    check: (answer) => assert.equal(answer.status, 400),
  },
  {
    name: 'Upgrade: websocket with a bad Sec-WebSocket-Key: 400',
    request: head('GET /agents/probe/ws HTTP/1.1', { ...wsHeaders, 'Sec-WebSocket-Key': 'short' }),
    check: (answer) => assert.equal(answer.status, 400),
  },
  {
    name: 'Upgrade: websocket with Sec-WebSocket-Version 99: 400',
    request: head('GET /agents/probe/ws HTTP/1.1', { ...wsHeaders, 'Sec-WebSocket-Version': '99' }),
    check: (answer) => assert.equal(answer.status, 400),
  },
  {
    name: 'Upgrade: websocket on a route that does not upgrade (stats): its status, no body',
    request: head('GET /agents/ws/stats HTTP/1.1', wsHeaders),
    // @hono/node-server refuses the upgrade with the route's status line and headers only.
    check: (answer) => assert.equal(answer.status, 200),
  },
  {
    name: 'Upgrade: websocket with method POST: 404 or 405 (no such route)',
    request: head('POST /agents/probe/ws HTTP/1.1', wsHeaders),
    check: (answer) => assert.ok([404, 405].includes(answer.status), `status ${answer.status}`),
  },
  {
    name: 'Upgrade: h2c on a path the app does not know: 404',
    request: head('GET /nowhere HTTP/1.1', h2c),
    check: (answer) => assert.equal(answer.status, 404),
  },
  {
    name: 'garbage with Connection: Upgrade: 400 from the parser',
    request: 'NOT HTTP AT ALL\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
    check: (answer) => assert.equal(answer.status, 400),
  },
];

/** The flood's requests, rotated: the kinds a scanner or a misconfigured proxy sends. */
const FLOOD = [
  head('GET /agents/ws/stats HTTP/1.1', h2c),
  head('GET /agents/probe/ws HTTP/1.1', { Connection: 'Upgrade', Upgrade: 'foo' }),
  head('GET / HTTP/1.1', { Connection: 'Upgrade', Upgrade: 'h2c' }),
  head('GET /agents/probe/ws HTTP/1.1', { Connection: 'Upgrade', Upgrade: 'websocket' }),
];

/** A WebSocket that reaches `open` and receives its first frame, then closes. */
async function webSocketWorks(url: string): Promise<boolean> {
  const socket = new WebSocket(url);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('message', () => resolve());
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed before the first frame')));
    });
    return true;
  } catch {
    return false;
  } finally {
    socket.terminate();
  }
}

async function statsWork(port: number): Promise<boolean> {
  try {
    const answer = await exchange(port, head('GET /agents/ws/stats HTTP/1.1', { Connection: 'close' }), 3000);
    return answer.status === 200;
  } catch {
    return false;
  }
}

/** Waits until a process's descriptor count holds still for a while, and returns it. */
async function settledFds(pid: number, timeout = 10_000): Promise<number> {
  let last = fdCount(pid);
  const deadline = Date.now() + timeout;
  let stableSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(100);
    const now = fdCount(pid);
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 500) break;
  }
  return last;
}

describe('the Node demo answers and closes every request on the upgrade path', { concurrency: false }, () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer(node);
  });
  after(async () => {
    await server?.stop();
  });

  for (const { name, request, check } of UPGRADE_REQUESTS)
    it(name, async () => {
      const answer = await exchange(server.port, request);
      assert.equal(answer.closedBy, 'server', `answered and closed by the server; got ${JSON.stringify(answer.text)}`);
      check(answer);
    });

  it('still upgrades a proper WebSocket handshake, whatever the case of `websocket`', async () => {
    const socket = await connect(server.port);
    const answer = answerOf(socket, 1000);
    socket.write(head('GET /agents/probe/ws HTTP/1.1', { ...wsHeaders, Upgrade: 'WebSocket' }));
    const { text } = await answer;
    assert.match(text, /^HTTP\/1\.1 101 /);
    assert.ok(await webSocketWorks(`${server.ws}/agents/probe/ws`));
  });

  it('releases every descriptor after 400 clients that vanish and 200 that stay', async (t) => {
    const pid = server.process.pid!;
    // Warm up: the first stats request and WebSocket may open descriptors that then stay.
    assert.ok(await statsWork(server.port));
    assert.ok(await webSocketWorks(`${server.ws}/agents/warmup/ws`));
    const baseline = await settledFds(pid);

    // 400 clients send the request line and headers, then vanish: half close (FIN), half reset.
    await inBatches([...Array(400).keys()], 50, async (n) => {
      const socket = await connect(server.port);
      await new Promise<void>((done) => socket.write(FLOOD[n % FLOOD.length]!, () => done()));
      if (n % 2 === 0) socket.destroy();
      else socket.resetAndDestroy();
    });
    const afterVanish = await settledFds(pid);

    // 200 clients connect at once (the server holds one descriptor each), then each sends its
    // request and stays: it never closes its side, so only the server can release the socket.
    const stayers: Socket[] = await inBatches([...Array(200).keys()], 50, () => connect(server.port));
    await waitFor(() => fdCount(pid) >= baseline + 200, 5000, 'the server holding the 200 connections');
    const during = fdCount(pid);
    const answers = await Promise.all(
      stayers.map((socket, n) => {
        const answer = answerOf(socket, 10_000);
        socket.write(FLOOD[n % FLOOD.length]!);
        return answer;
      }),
    );
    const afterStay = await settledFds(pid);
    t.diagnostic(
      `fds: baseline ${baseline}, after 400 vanished ${afterVanish}, 200 connected ${during}, after ${afterStay}`,
    );

    const unanswered = answers.filter((answer) => answer.closedBy !== 'server' || answer.status === 0);
    assert.equal(unanswered.length, 0, 'every client that stayed got an answer, then the server closed');
    assert.ok(afterVanish <= baseline + 3, `after the vanishing clients: ${afterVanish} fds, baseline ${baseline}`);
    assert.ok(afterStay <= baseline + 3, `after the staying clients: ${afterStay} fds, baseline ${baseline}`);
    assert.ok(await statsWork(server.port));
    assert.ok(await webSocketWorks(`${server.ws}/agents/after-flood/ws`));
  });
});

describe('the Node demo under ulimit -n 256 serves again once a flood ends', () => {
  const LIMIT = 256;
  const limited: Runtime = {
    name: `node (ulimit -n ${LIMIT})`,
    // `exec` keeps the pid, so /proc/<pid> is the server's.
    command: () => [
      'bash',
      ['-c', `ulimit -n ${LIMIT} && exec "$0" --import tsx examples/demo/node.ts`, process.execPath],
    ],
  };
  let server: ServerHandle;
  before(async () => {
    server = await startServer(limited);
  });
  after(async () => {
    await server?.stop();
  });

  it('600 upgrade requests from clients that stay, all at once, leave stats and WebSockets working', async (t) => {
    const pid = server.process.pid!;
    assert.equal(fdLimit(pid), LIMIT, 'the server runs under the low limit');
    assert.ok(await statsWork(server.port));
    const baseline = await settledFds(pid);

    // All 600 connect and send at once; past the limit the server's accept fails (libuv then
    // accepts and closes the excess), so some clients are refused or reset: that is fine, as
    // long as the server recovers. None of them ever closes its side.
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, fdCount(pid));
    }, 5);
    const answers = await Promise.all(
      [...Array(600).keys()].map(async (n): Promise<RawAnswer | 'refused'> => {
        try {
          const socket = await connect(server.port);
          const answer = answerOf(socket, 15_000);
          socket.write(FLOOD[n % FLOOD.length]!);
          return await answer;
        } catch {
          return 'refused';
        }
      }),
    );
    clearInterval(sampler);
    const count = (what: (answer: RawAnswer) => boolean) =>
      answers.filter((answer) => answer !== 'refused' && what(answer)).length;
    const answered = count((answer) => answer.status > 0);
    const dropped = count((answer) => answer.status === 0 && answer.closedBy === 'server');
    const timedOut = count((answer) => answer.closedBy === 'timeout');
    const refused = answers.filter((answer) => answer === 'refused').length;
    const after = await settledFds(pid);
    t.diagnostic(
      `limit ${LIMIT}: fds baseline ${baseline}, peak seen ${peak}, after ${after}; of 600: ${answered} answered, ` +
        `${dropped} closed unanswered (accept failed), ${refused} refused, ${timedOut} left open by the server`,
    );

    assert.equal(server.process.exitCode, null, `the server is still running:\n${server.output()}`);
    assert.equal(timedOut, 0, 'the server closed every connection it accepted');
    assert.ok(after <= baseline + 3, `fds back to the baseline: ${after}, baseline ${baseline}`);
    await waitFor(() => statsWork(server.port), 5000, 'stats answering');
    await waitFor(() => webSocketWorks(`${server.ws}/agents/after-ulimit-flood/ws`), 5000, 'WebSocket connects');
  });
});

/** `serveNode` in-process with the hub's routes mounted, as the demo does. */
async function serveHub(options: Partial<Parameters<typeof serveNode>[0]> = {}, hubOptions: AgentHubOptions = {}) {
  const hub = createAgentHub({ logger: false, ingest: true, ...hubOptions });
  const app = new Hono();
  app.route('/agents', hub.routes(upgradeWebSocket, routesOptions));
  return serveNode({ fetch: app.fetch, hub, port: 0, ...options });
}

/** Live connections of a server, upgraded and half-upgraded ones included (`net`'s own count). */
const connections = (server: NodeServer['server']) =>
  new Promise<number>((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );

describe('guardUpgrades', () => {
  it('serveNode installs it: one upgrade listener, h2c answered', async () => {
    const running = await serveHub();
    try {
      assert.equal(running.server.listenerCount('upgrade'), 1);
      const answer = await exchange(running.port, head('GET /agents/ws/stats HTTP/1.1', h2c));
      assert.equal(answer.closedBy, 'server');
      assert.equal(answer.status, 200);
    } finally {
      await running.close();
    }
  });

  it("guards a server from @hono/node-server's serve() called directly, once however often it is called", async () => {
    const hub = createAgentHub({ logger: false });
    const app = new Hono();
    app.route('/agents', hub.routes(upgradeWebSocket, routesOptions));
    const server = serve({
      fetch: app.fetch,
      port: 0,
      hostname: '127.0.0.1',
      websocket: nodeWebSocket(hub),
      serverOptions: serverTimeouts,
    });
    try {
      assert.equal(guardUpgrades(guardUpgrades(server)), server);
      assert.equal(server.listenerCount('upgrade'), 1);
      assert.equal((server as Server).headersTimeout, serverTimeouts.headersTimeout);
      await new Promise((done) => server.once('listening', done));
      const { port } = server.address() as AddressInfo;
      const refused = await exchange(port, head('GET /agents/probe/ws HTTP/1.1', h2c));
      assert.equal(refused.closedBy, 'server');
      assert.equal(refused.status, 426);
      assert.ok(await webSocketWorks(`ws://127.0.0.1:${port}/agents/probe/ws`));
    } finally {
      await hub.close();
      server.close();
      if ('closeAllConnections' in server) server.closeAllConnections();
    }
  });

  it('releases a socket whose upgrade fails mid-way, and the process survives it', async () => {
    // A bare node:http server with an upgrade listener that throws, one that rejects, and one
    // that never answers: the guard destroys the socket for the first two; the third (a
    // listener that returns without touching the socket) is what the guard cannot fix for
    // websocket upgrades, so the app's own listener must answer those.
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    const server = createServer((_req, res) => res.end('plain'));
    server.on('upgrade', (req) => {
      if (req.url === '/throws') throw new Error('boom');
    });
    server.on('upgrade', async (req) => {
      await sleep(10);
      if (req.url === '/rejects') throw new Error('boom, later');
    });
    guardUpgrades(server);
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const { port } = server.address() as AddressInfo;
    try {
      for (const path of ['/throws', '/rejects']) {
        const answer = await exchange(port, head(`GET ${path} HTTP/1.1`, wsHeaders), 3000);
        assert.equal(answer.closedBy, 'server', `${path}: the socket is released`);
      }
      const plain = await exchange(port, head('GET /throws HTTP/1.1', h2c), 3000);
      assert.equal(plain.closedBy, 'server');
      assert.equal(plain.body, 'plain', 'a non-websocket upgrade never reaches the listeners');
      // An unhandled rejection would be reported within a turn or two: a short quiet window.
      await sleep(50);
      assert.deepEqual(rejections, []);
      await waitFor(async () => (await connections(server)) === 0, 3000, 'no connection left');
    } finally {
      process.off('unhandledRejection', onRejection);
      server.close();
      server.closeAllConnections();
    }
  });

  it('releases a socket whose client vanishes while the upgrade is being authorized', async () => {
    const running = await serveHub(
      {},
      {
        authorize: async () => {
          await sleep(300);
          return true;
        },
      },
    );
    try {
      const vanishing = await inBatches([...Array(20).keys()], 20, async () => {
        const socket = await connect(running.port);
        socket.write(head('GET /agents/probe/ws HTTP/1.1', wsHeaders));
        await sleep(20);
        socket.destroy();
      });
      assert.equal(vanishing.length, 20);
      await waitFor(async () => (await connections(running.server)) === 0, 5000, 'every connection released');
    } finally {
      await running.close();
    }
  });
});

describe('serveNode cuts slow clients within its timeouts', { concurrency: false }, () => {
  const HEADERS = 500;
  const REQUEST = 1000;
  const KEEP_ALIVE = 300;
  const CHECK = 100;
  // Bounds with generous slack for a loaded machine; each cut must land inside its own.
  const SLACK = 2000;
  let running: NodeServer;
  before(async () => {
    running = await serveHub({
      headersTimeout: HEADERS,
      requestTimeout: REQUEST,
      keepAliveTimeout: KEEP_ALIVE,
      connectionsCheckingInterval: CHECK,
    });
  });
  after(async () => {
    await running?.close();
  });

  /** Writes `text` one byte every `every` ms until the socket closes; resolves with the answer. */
  async function dribble(text: string, every = 100, prefix = ''): Promise<RawAnswer> {
    const socket = await connect(running.port);
    const started = Date.now();
    const answer = answerOf(socket, 15_000, started);
    if (prefix) socket.write(prefix);
    let i = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || i >= text.length) return clearInterval(timer);
      socket.write(text[i++]!);
    }, every);
    const result = await answer;
    clearInterval(timer);
    return result;
  }

  it('applies the documented defaults when none are given', async () => {
    const defaults = await serveHub();
    try {
      const server = defaults.server as Server;
      assert.equal(server.headersTimeout, serverTimeouts.headersTimeout);
      assert.equal(server.requestTimeout, serverTimeouts.requestTimeout);
      assert.equal(server.keepAliveTimeout, serverTimeouts.keepAliveTimeout);
      assert.deepEqual(serverTimeouts, {
        headersTimeout: 10_000,
        requestTimeout: 30_000,
        keepAliveTimeout: 5_000,
        connectionsCheckingInterval: 1_000,
      });
    } finally {
      await defaults.close();
    }
  });

  it('a client dribbling its headers (slowloris) is cut by headersTimeout, with 408', async (t) => {
    const slow = `X-Slow: ${'a'.repeat(200)}`;
    const answer = await dribble(slow, 50, 'GET /agents/ws/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    t.diagnostic(`cut after ${answer.ms} ms (headersTimeout ${HEADERS}, check every ${CHECK})`);
    assert.equal(answer.closedBy, 'server');
    assert.equal(answer.status, 408);
    assert.ok(answer.ms >= HEADERS - 50 && answer.ms <= HEADERS + CHECK + SLACK, `cut after ${answer.ms} ms`);
  });

  it('a WebSocket handshake dribbled byte by byte is cut the same way', async (t) => {
    const answer = await dribble(head('GET /agents/probe/ws HTTP/1.1', wsHeaders), 50);
    t.diagnostic(`cut after ${answer.ms} ms`);
    assert.equal(answer.closedBy, 'server');
    assert.ok(answer.ms <= HEADERS + CHECK + SLACK, `cut after ${answer.ms} ms`);
  });

  it('a client that connects and sends nothing is cut too', async (t) => {
    const socket = await connect(running.port);
    const answer = await answerOf(socket, 15_000);
    t.diagnostic(`cut after ${answer.ms} ms`);
    assert.equal(answer.closedBy, 'server');
    assert.equal(answer.status, 408);
    assert.ok(answer.ms <= Math.max(HEADERS, KEEP_ALIVE + 1000) + CHECK + SLACK, `cut after ${answer.ms} ms`);
  });

  it('a client dribbling its body is cut by requestTimeout', async (t) => {
    const answer = await dribble(
      'x'.repeat(1000),
      50,
      head('POST /agents/probe/updates HTTP/1.1', { 'Content-Type': 'application/json', 'Content-Length': '1000' }),
    );
    t.diagnostic(`cut after ${answer.ms} ms (requestTimeout ${REQUEST})`);
    assert.equal(answer.closedBy, 'server');
    assert.ok(answer.ms >= REQUEST - 50 && answer.ms <= REQUEST + CHECK + SLACK, `cut after ${answer.ms} ms`);
  });

  it('an idle keep-alive connection is closed after keepAliveTimeout', async (t) => {
    const socket = await connect(running.port);
    const answer = answerOf(socket, 15_000);
    socket.write(head('GET /agents/ws/stats HTTP/1.1', {}));
    const result = await answer;
    t.diagnostic(`closed ${result.ms} ms after the request (keepAliveTimeout ${KEEP_ALIVE}; Node adds 1 s)`);
    assert.equal(result.status, 200);
    assert.equal(result.closedBy, 'server');
    assert.ok(result.ms <= KEEP_ALIVE + 1000 + SLACK, `closed after ${result.ms} ms`);
  });

  it('an upgraded WebSocket outlives every timeout', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${running.port}/agents/long-lived/ws`);
    try {
      await new Promise((resolve, reject) => {
        socket.once('message', resolve);
        socket.once('error', reject);
      });
      // Past every HTTP timeout, which the socket must outlive: nothing must happen, so real time.
      await sleep(REQUEST + CHECK * 5);
      assert.equal(socket.readyState, WebSocket.OPEN);
      const pong = new Promise((resolve) =>
        socket.on('message', (data) => String(data).includes('pong') && resolve(true)),
      );
      socket.send(JSON.stringify({ type: 'ping' }));
      assert.equal(await pong, true);
    } finally {
      socket.terminate();
    }
  });
});
