/**
 * `cloudflareHub` on workerd, offline, through miniflare: the hub's own routes in the Worker
 * (authorize and origin checks on every route before anything reaches an object), the hub-wide
 * stats, agents listing and metrics read from the directory object after the agents' objects
 * reported, the counters of what the Worker refuses, the publisher's errors and the dashboard.
 * Every frame is checked against asyncapi.yaml, every stats and listing body against its schema.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { cloudflareHub } from '../adapters/cloudflare.ts';
import { AgentsPageSchema, HubStatsSchema } from '../plugin/index.ts';
import type { AgentsPage, HubStats } from '../plugin/stats.ts';
import { TestClient } from './helpers/client.ts';
import { parsePrometheus } from './helpers/prometheus.ts';
import { waitFor } from './helpers/wait.ts';
import { startWorkerd, type WorkerdServer } from './helpers/workerd.ts';

const ENTRY = fileURLToPath(new URL('./fixtures/cloudflare/hub-worker.ts', import.meta.url));

let server: WorkerdServer;

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.http}${path}`, { headers });

/** The stats as an admin reads them, checked against their schema. */
async function stats(): Promise<HubStats> {
  const response = await get('/agents/ws/stats?token=admin');
  assert.equal(response.status, 200);
  return v.parse(HubStatsSchema, await response.json());
}

/** One page of the listing, checked against its schema. */
async function listing(query = ''): Promise<AgentsPage> {
  const response = await get(`/agents/ws/agents?token=admin${query}`);
  assert.equal(response.status, 200);
  return v.parse(AgentsPageSchema, await response.json());
}

/** Waits until the stats read from the directory satisfy `check`: reports come every 200 ms, or with the next 1 s sweep. */
async function statsReach(check: (figures: HubStats) => boolean, what: string): Promise<HubStats> {
  let last: HubStats | undefined;
  await waitFor(
    async () => {
      last = await stats();
      return check(last);
    },
    10_000,
    what,
    100,
  );
  return last as HubStats;
}

const ingest = (agentId: string, body: unknown, token = 'admin', contentType = 'application/json') =>
  fetch(`${server.http}/agents/${agentId}/updates${token ? `?token=${token}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** A refused upgrade's status and error code (the code travels in `X-Agent-WS-Error`). */
async function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<[number, string]> {
  let refusal: [number, string] = [0, ''];
  await assert.rejects(
    TestClient.connect(url, { headers }),
    (error: { status?: number; headers?: Record<string, string> }) => {
      refusal = [error.status ?? 0, error.headers?.['x-agent-ws-error'] ?? ''];
      return true;
    },
  );
  return refusal;
}

before(async () => {
  server = await startWorkerd(ENTRY, { AGENT_CHANNEL: 'AgentChannel', AGENT_DIRECTORY: 'AgentDirectoryObject' });
});

after(async () => {
  await server?.mf.dispose();
});

describe('cloudflareHub: options', () => {
  test('are validated as the hub’s, with the function’s name', () => {
    assert.throws(
      () => cloudflareHub({ maxIngestBytes: -1 }),
      /^TypeError: cloudflareHub: invalid options\n- maxIngestBytes/,
    );
    assert.throws(() => cloudflareHub({ reportInterval: 1.5 }), /^TypeError: reportInterval must be a whole number/);
    assert.throws(() => cloudflareHub({ channel: '' }), /^TypeError: channel must name a binding/);
  });
});

describe('cloudflareHub: the checks run in the Worker, on every route', () => {
  test('authorize guards the socket, ingest, stats, listing and metrics: 401 without a token, 403 when it says no', async () => {
    const errorsBefore = (await stats()).errors_by_kind;
    const routes: [string, () => Promise<[number, string]>][] = [
      ['watch', () => refusedUpgrade(`${server.ws}/agents/guarded/ws`)],
      [
        'publish',
        async () => {
          const response = await ingest('guarded', { type: 'status_update', status: 'x' }, '');
          return [response.status, response.headers.get('x-agent-ws-error') ?? ''];
        },
      ],
      ...['stats', 'agents', 'metrics'].map((route): [string, () => Promise<[number, string]>] => [
        route,
        async () => {
          const response = await get(`/agents/ws/${route}`);
          return [response.status, response.headers.get('x-agent-ws-error') ?? ''];
        },
      ]),
    ];
    for (const [route, attempt] of routes) assert.deepEqual(await attempt(), [401, 'unauthorized'], route);
    // A watcher's token may watch, not publish or read the hub's figures.
    const denied = await ingest('guarded', { type: 'status_update', status: 'x' }, 'watcher');
    assert.equal(denied.status, 403);
    for (const route of ['stats', 'agents', 'metrics']) {
      const response = await get(`/agents/ws/${route}?token=watcher`);
      assert.equal(response.status, 403, route);
      assert.equal(((await response.json()) as { error: string }).error, 'forbidden');
    }
    assert.deepEqual(await refusedUpgrade(`${server.ws}/agents/guarded/ws?token=deny`), [403, 'forbidden']);
    // Nothing reached the agent's object: it was never asked, so it never reported.
    assert.equal(
      (await listing()).agents.find((agent) => agent.agent_id === 'guarded'),
      undefined,
    );
    // The Worker's refusals are counted in the directory, as the hub counts its own.
    const after = await statsReach(
      (figures) =>
        figures.errors_by_kind.unauthorized >= errorsBefore.unauthorized + 5 &&
        figures.errors_by_kind.forbidden >= errorsBefore.forbidden + 5,
      'the refusals counted',
    );
    assert.equal(after.errors_by_kind.unauthorized, errorsBefore.unauthorized + 5);
    assert.equal(after.errors_by_kind.forbidden, errorsBefore.forbidden + 5);
  });

  test('an authorize hook that fails is a 500, counted as internal_error, and no socket', async () => {
    const before = (await stats()).errors_by_kind.internal_error;
    const [status] = await refusedUpgrade(`${server.ws}/agents/boom/ws?token=boom`);
    assert.equal(status, 500);
    assert.equal((await get('/agents/ws/stats?token=boom')).status, 500);
    await statsReach((figures) => figures.errors_by_kind.internal_error === before + 2, 'internal_error counted');
  });

  test('a foreign browser origin is refused with 403 origin_forbidden; the listed one and the own host are let in', async () => {
    assert.deepEqual(
      await refusedUpgrade(`${server.ws}/agents/origins/ws?token=watcher`, { Origin: 'https://evil.example' }),
      [403, 'origin_forbidden'],
    );
    for (const origin of ['https://allowed.example', server.http]) {
      const client = await TestClient.connect(`${server.ws}/agents/origins/ws?token=watcher`, {
        headers: { Origin: origin },
      });
      assert.equal((await client.next('connection_established')).agent_id, 'origins');
      client.close();
      assert.deepEqual(client.problems, []);
    }
  });

  test('the socket route refuses a bad id, a bad resume point and a plain GET with the hub’s codes', async () => {
    assert.deepEqual(await refusedUpgrade(`${server.ws}/agents/bad%20id/ws?token=admin`), [400, 'invalid_agent_id']);
    assert.deepEqual(await refusedUpgrade(`${server.ws}/agents/a/ws?token=admin&since=x`), [400, 'invalid_resume']);
    const plain = await get('/agents/a/ws?token=admin');
    assert.equal(plain.status, 426);
    assert.equal(plain.headers.get('x-agent-ws-error'), 'upgrade_required');
    const query = await get('/agents/ws/agents?token=admin&limit=0');
    assert.equal(query.status, 400);
    assert.equal(((await query.json()) as { error: string }).error, 'invalid_query');
  });
});

describe('cloudflareHub: ingest and the publisher', () => {
  test('ingest answers each bad request as the hub does, and counts it', async () => {
    const before = (await stats()).errors_by_kind.ingest_rejected;
    const answers: [Response, number, string][] = [
      [await ingest('bad%20id', { type: 'status_update', status: 'x' }), 400, 'invalid_agent_id'],
      [await ingest('ingest-bad', '{'), 400, 'invalid_json'],
      [await ingest('ingest-bad', { type: 'status_update', status: 42 }), 400, 'invalid_update'],
      [
        await ingest('ingest-bad', { type: 'status_update', status: 'x' }, 'admin', 'text/plain'),
        415,
        'unsupported_media_type',
      ],
    ];
    for (const [response, status, error] of answers) {
      assert.equal(response.status, status, error);
      assert.equal(((await response.json()) as { error: string }).error, error);
    }
    const accepted = await ingest('ingest-bad', [
      { type: 'status_update', status: 'one' },
      { type: 'status_update', status: 'two' },
    ]);
    assert.equal(accepted.status, 202);
    assert.deepEqual(await accepted.json(), { accepted: 2 });
    await statsReach((figures) => figures.errors_by_kind.ingest_rejected === before + 4, 'ingest_rejected counted');
  });

  test('the publisher rejects an invalid update with InvalidUpdateError, and a failed publish with an Error it counts', async () => {
    const publish = (agentId: string, body: unknown, broken = false) =>
      fetch(`${server.http}/app/${agentId}/status${broken ? '?broken=1' : ''}`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
    const badId = await publish('bad%20id', { status: 'x' });
    assert.equal(badId.status, 400);
    assert.match(((await badId.json()) as { invalid: string }).invalid, /agent id/);
    const badField = await publish('publisher', { status: 42 });
    assert.equal(badField.status, 400);
    assert.match(((await badField.json()) as { invalid: string }).invalid, /status/);
    const before = (await stats()).errors_by_kind.broker_error;
    const failed = await publish('publisher', { status: 'lost' }, true);
    assert.equal(failed.status, 502);
    assert.match(((await failed.json()) as { failed: string }).failed, /NO_SUCH_BINDING/);
    assert.equal((await stats()).errors_by_kind.broker_error, before + 1, 'counted before the promise rejected');
    assert.equal((await publish('publisher', { status: 'ok' })).status, 204);
  });
});

describe('cloudflareHub: stats, listing and metrics across objects', () => {
  test('two agents’ objects report: the stats sum them, the listing pages through them, the metrics render them', async () => {
    const first = await TestClient.connect(`${server.ws}/agents/fleet-a/ws?token=admin`);
    const second = await TestClient.connect(`${server.ws}/agents/fleet-b/ws?token=admin`);
    const third = await TestClient.connect(`${server.ws}/agents/fleet-b/ws?token=admin`);
    for (const client of [first, second, third]) await client.next('snapshot');
    assert.equal((await ingest('fleet-a', { type: 'status_update', status: 'running' })).status, 202);
    assert.equal(
      (await ingest('fleet-b', { type: 'task_update', task_id: 't1', status: 'working', progress: 10 })).status,
      202,
    );
    assert.equal((await first.next('status_update')).status, 'running');
    for (const client of [second, third]) assert.equal((await client.next('task_update')).task_id, 't1');

    // The other groups run side by side with their own agents: the hub-wide figures include
    // theirs, so both objects' reports are awaited in the listing, and the sums are bounds.
    const fleetOf = async () =>
      (await listing('&limit=500')).agents.filter((agent) => agent.agent_id.startsWith('fleet-'));
    await waitFor(
      async () => {
        const reported = await fleetOf();
        return (
          reported.map((agent) => `${agent.agent_id}:${agent.connections}:${agent.seq}`).join() ===
          'fleet-a:1:1,fleet-b:2:1'
        );
      },
      10_000,
      'both objects reported',
      100,
    );
    const figures = await stats();
    assert.ok(figures.agents_connected >= 2);
    assert.ok(figures.active_connections >= 3);
    assert.ok(figures.total_connections >= 3);
    assert.ok(figures.updates_published >= 2);
    assert.ok(figures.messages_sent >= 3, 'one frame per socket');

    const fleet = await fleetOf();
    assert.deepEqual(
      fleet.map((agent) => [agent.agent_id, agent.connections, agent.seq]),
      [
        ['fleet-a', 1, 1],
        ['fleet-b', 2, 1],
      ],
    );
    assert.equal(fleet[0]?.status?.status, 'running');
    assert.deepEqual(
      fleet[1]?.open_tasks.map((task) => task.task_id),
      ['t1'],
    );
    // Pages of one, cursor after cursor: fleet-b comes right after fleet-a.
    const walked: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null && walked.length < 50) {
      const page: AgentsPage = await listing(`&limit=1&cursor=${cursor}`);
      walked.push(...page.agents.map((agent) => agent.agent_id));
      cursor = page.next_cursor;
    }
    assert.equal(walked[walked.indexOf('fleet-a') + 1], 'fleet-b');
    assert.deepEqual(walked, [...walked].sort(), 'in agent id order');

    const metrics = await get('/agents/ws/metrics?token=admin');
    assert.equal(metrics.status, 200);
    const families = parsePrometheus(await metrics.text());
    assert.equal(
      families.get('hono_agent_ws_connections_active')?.metrics[0]?.value,
      String(figures.active_connections),
    );
    // The histograms are the objects' own, summed by the directory as the counters are: every
    // batch built is in the batch size histogram, and each live frame in the send delay one.
    const batches = families.get('hono_agent_ws_batch_size_updates')?.metrics[0];
    assert.equal(Number(batches?.count), Number(families.get('hono_agent_ws_batches_sent_total')?.metrics[0]?.value));
    const delays = families.get('hono_agent_ws_send_delay_seconds')?.metrics[0];
    assert.ok(Number(delays?.count) >= 2, 'fleet-a’s status and fleet-b’s task, at least');
    assert.ok(Number(delays?.sum) >= 0 && Number(delays?.sum) < Number(delays?.count) * 10, 'seconds, not ms');

    third.close();
    await waitFor(
      async () => (await fleetOf()).find((agent) => agent.agent_id === 'fleet-b')?.connections === 1,
      10_000,
      'the close reported',
      100,
    );
    for (const client of [first, second, third])
      assert.deepEqual(client.problems, [], 'every frame matched asyncapi.yaml');
    first.close();
    second.close();
  });

  test('the dashboard page is served, with the directory’s stats in it', async () => {
    await statsReach((current) => current.total_connections > 0, 'some figures');
    const response = await get('/dashboard?token=admin', { Accept: 'text/html' });
    assert.equal(response.status, 200);
    const page = await response.text();
    const config = JSON.parse(
      /<script type="application\/json" id="dashboard-config">(.*?)<\/script>/s.exec(page)?.[1] ?? 'null',
    ) as { base: string; stats: HubStats | null };
    assert.equal(config.base, '/agents');
    assert.ok(config.stats && config.stats.total_connections > 0, 'the stats are the directory’s');
  });
});
