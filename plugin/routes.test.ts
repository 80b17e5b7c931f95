import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hono } from 'hono';
import type { UpgradeWebSocket } from 'hono/ws';
import * as v from 'valibot';
import { createAgentHub } from './hub.ts';
import { AGENT_ID } from './routes.ts';
import { AgentIdSchema, EPOCH, EpochSchema } from './schemas.ts';

test('the routes’ agent id check accepts exactly what AgentIdSchema accepts', () => {
  const samples = [
    '',
    'a',
    'agent-1',
    'a.b_c:d-e',
    'a/b',
    'a b',
    'é',
    'a\n',
    'x'.repeat(128),
    'x'.repeat(129),
    '..',
    ':',
  ];
  for (const sample of samples)
    assert.equal(AGENT_ID.test(sample), v.is(AgentIdSchema, sample), JSON.stringify(sample));
});

test('the WebSocket route’s epoch check accepts exactly what EpochSchema accepts', () => {
  const samples = [
    '',
    'a',
    'k3v9x2m1q7tz',
    'A_b-9',
    'a.b',
    'a b',
    'é',
    'a\n',
    'x'.repeat(64),
    'x'.repeat(65),
    '-',
    ':',
  ];
  for (const sample of samples) assert.equal(EPOCH.test(sample), v.is(EpochSchema, sample), JSON.stringify(sample));
});

test('the hub’s routes keep an app on RegExpRouter, and hand on what is not theirs', async () => {
  const hub = createAgentHub({ logger: false, heartbeatInterval: 0, ingest: true });
  const upgrade = (() => async () => new Response(null)) as unknown as UpgradeWebSocket;
  const app = new Hono().route('/agents', hub.routes(upgrade));
  // The app's own routes: one beside a hub-wide one, and a static one RegExpRouter cannot hold
  // beside `:agent_id` (the hub's routes worked only this way before).
  app.get('/agents/:agent_id/stats', (c) => c.text(`own stats ${c.req.param('agent_id')}`));
  app.get('/agents/all/info', (c) => c.text('all'));
  assert.equal((await app.request('/agents/ws/stats')).status, 200);
  assert.equal(app.router.name, 'SmartRouter + TrieRouter');

  const lean = new Hono().route('/agents', hub.routes(upgrade));
  lean.get('/agents/:agent_id/info', (c) => c.text(`info ${c.req.param('agent_id')}`));
  lean.get('/agents/:agent_id/stats', (c) => c.text(`own stats ${c.req.param('agent_id')}`));
  const stats = await lean.request('/agents/ws/stats');
  assert.equal(stats.status, 200);
  assert.equal(typeof ((await stats.json()) as { total_connections: unknown }).total_connections, 'number');
  assert.equal(lean.router.name, 'SmartRouter + RegExpRouter');
  assert.equal((await lean.request('/agents/ws/metrics')).status, 200);
  assert.equal((await lean.request('/agents/ws/agents')).status, 200);
  assert.equal(await (await lean.request('/agents/a1/info')).text(), 'info a1');
  // Not hub-wide: on to the app's routes, then the app's 404.
  assert.equal(await (await lean.request('/agents/a1/stats')).text(), 'own stats a1');
  assert.equal((await lean.request('/agents/a1/metrics')).status, 404);
  for (const [method, path] of [
    ['GET', '/agents//ws'],
    ['POST', '/agents//updates'],
  ] as const) {
    const refused = await lean.request(path, { method, headers: { upgrade: 'websocket' } });
    assert.equal(refused.status, 400, path);
    assert.equal(((await refused.json()) as { error: string }).error, 'invalid_agent_id');
  }
  for (const path of ['/agents/', '/agents//', '/agents//x/ws']) {
    assert.equal((await lean.request(path)).status, 404, path);
  }
  // The same on TrieRouter.
  assert.equal(await (await app.request('/agents/a1/stats')).text(), 'own stats a1');
  assert.equal(await (await app.request('/agents/all/info')).text(), 'all');
  assert.equal((await app.request('/agents//ws')).status, 400);
  assert.equal((await app.request('/agents//x/ws')).status, 404);
  await hub.close();
});
