/**
 * The operations routes on the fake runtime: `GET /ws/agents` (listing, pagination, bounds,
 * authorize) and `GET /ws/metrics` (Prometheus text, parsed with parse-prometheus-text-format;
 * the same metrics registered in a prom-client registry).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HTTPException } from 'hono/http-exception';
import { Registry } from 'prom-client';
import { fakeClock } from '../test/helpers/clock.ts';
import { type FakeSocket, fakeRuntime } from '../test/helpers/fake-runtime.ts';
import { parsePrometheus } from '../test/helpers/prometheus.ts';
import { validateHttpBody } from '../test/helpers/server.ts';
import { sleep } from '../test/helpers/wait.ts';
import {
  type AgentHubOptions,
  type AgentsPage,
  createAgentHub,
  ERROR_KINDS,
  type HubAction,
  METRIC_NAMES,
  PROMETHEUS_CONTENT_TYPE,
  registerHubMetrics,
} from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0, snapshot: false, batchInterval: 0 };

const list = async (runtime: ReturnType<typeof fakeRuntime>, query = ''): Promise<AgentsPage> => {
  const response = await runtime.app.request(`/agents/ws/agents${query}`);
  assert.equal(response.status, 200);
  return validateHttpBody('AgentsPage', await response.json()) as AgentsPage;
};

describe('GET /ws/agents', () => {
  it('lists connected, queued and published agents with connections, status, open tasks, seq and epoch', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    const a = (await runtime.connect('a-watched')) as FakeSocket;
    await runtime.connect('a-watched');
    await sleep(0);
    await hub.publishStatus('a-watched', { status: 'running' });
    await hub.publishTask('a-watched', { task_id: 't1', status: 'running', progress: 10 });
    await hub.publishTask('a-watched', { task_id: 't2', status: 'running', progress: 20 });
    await hub.publishTask('a-watched', { task_id: 't1', status: 'completed', progress: 100 });
    await hub.publishTask('b-queued', { task_id: 'x', status: 'running', progress: 0 });
    await sleep(10);
    const page = await list(runtime);
    assert.equal(page.next_cursor, null);
    assert.deepEqual(
      page.agents.map((agent) => agent.agent_id),
      ['a-watched', 'b-queued'],
    );
    const [watched, queued] = page.agents as [AgentsPage['agents'][0], AgentsPage['agents'][0]];
    assert.equal(watched.connections, 2);
    assert.equal(watched.instances, 1);
    assert.equal(watched.status?.status, 'running');
    assert.deepEqual(
      watched.open_tasks.map((task) => task.task_id),
      ['t2'],
    );
    assert.equal(watched.open_tasks_total, 1);
    assert.equal(watched.seq, 4);
    assert.equal(watched.queued, 0);
    assert.ok(a.frames().some((frame) => frame.epoch === watched.epoch));
    assert.equal(queued.connections, 0);
    assert.equal(queued.instances, 0);
    assert.equal(queued.status, null);
    assert.equal(queued.queued, 1);
    assert.equal(queued.seq, 1);
    await hub.close();
  });

  it('pages by agent id with an opaque cursor, bounds limit and tasks, refuses malformed ones', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    const ids = Array.from({ length: 7 }, (_, i) => `agent-${i}`);
    for (const id of [...ids].reverse()) {
      for (let t = 0; t < 4; t++) await hub.publishTask(id, { task_id: `t${t}`, status: 'running', progress: 0 });
    }
    const seen: string[] = [];
    let cursor: string | null = '';
    let pages = 0;
    while (cursor !== null) {
      const page: AgentsPage = await list(runtime, `?limit=3&tasks=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(page.agents.length <= 3);
      for (const agent of page.agents) {
        assert.deepEqual(
          agent.open_tasks.map((task) => task.task_id),
          ['t3', 't2'],
        );
        assert.equal(agent.open_tasks_total, 4);
      }
      seen.push(...page.agents.map((agent) => agent.agent_id));
      if (page.next_cursor) assert.ok(!page.next_cursor.includes('agent'), 'the cursor is opaque');
      cursor = page.next_cursor;
      pages++;
    }
    assert.deepEqual(seen, ids);
    assert.equal(pages, 3);
    assert.equal((await list(runtime, '?tasks=0')).agents[0]?.open_tasks.length, 0);
    assert.equal((await list(runtime, '?limit=100000')).agents.length, 7);
    for (const query of ['?limit=0', '?limit=abc', '?limit=-1', '?tasks=x', '?cursor=%%%', '?cursor=bm9wZQ']) {
      const response = await runtime.app.request(`/agents/ws/agents${query}`);
      assert.equal(response.status, 400, query);
      const body = validateHttpBody('HttpError', await response.json()) as { error: string };
      assert.equal(body.error, 'invalid_query');
    }
    assert.equal(hub.stats().errors_by_kind.invalid_query, 6);
    await hub.close();
  });
});

describe('GET /ws/agents and /ws/metrics are guarded', () => {
  it('asks authorize with actions agents and metrics, no agent id', async () => {
    const asked: [string | undefined, HubAction][] = [];
    const hub = createAgentHub({
      ...quiet,
      authorize: (agentId, c, action) => {
        asked.push([agentId, action]);
        if (c.req.header('authorization') === 'Bearer ok') return true;
        if (c.req.header('authorization')) return false;
        throw new HTTPException(401, { message: 'no credentials' });
      },
    });
    const runtime = fakeRuntime(hub);
    for (const path of ['/agents/ws/agents', '/agents/ws/metrics']) {
      assert.equal((await runtime.app.request(path)).status, 401);
      assert.equal((await runtime.app.request(path, { headers: { authorization: 'Bearer no' } })).status, 403);
      assert.equal((await runtime.app.request(path, { headers: { authorization: 'Bearer ok' } })).status, 200);
    }
    assert.deepEqual(asked, [
      [undefined, 'agents'],
      [undefined, 'agents'],
      [undefined, 'agents'],
      [undefined, 'metrics'],
      [undefined, 'metrics'],
      [undefined, 'metrics'],
    ]);
    await hub.close();
  });
});

describe('GET /ws/metrics', () => {
  it('serves every stats figure in the Prometheus text format 0.0.4, errors by kind, and the histograms', async (t) => {
    const clock = fakeClock(t);
    const hub = createAgentHub({ ...quiet, batchInterval: 20 });
    const runtime = fakeRuntime(hub);
    const socket = (await runtime.connect('m-1')) as FakeSocket;
    await clock.advance(0);
    // One alone, then three in one window: one batch of 3.
    for (let t = 0; t < 4; t++) await hub.publishTask('m-1', { task_id: `t${t}`, status: 'running', progress: 0 });
    await hub.publishTask('m-offline', { task_id: 'x', status: 'running', progress: 0 });
    socket.receive('{not json');
    await clock.advance(60);
    const response = await runtime.app.request('/agents/ws/metrics');
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), PROMETHEUS_CONTENT_TYPE);
    const text = await response.text();
    const byName = parsePrometheus(text);
    const families = [...byName.values()];
    const value = (name: string) => Number(byName.get(`hono_agent_ws_${name}`)?.metrics[0]?.value);
    const stats = hub.stats();
    assert.equal(value('connections_total'), stats.total_connections);
    assert.equal(value('connections_active'), stats.active_connections);
    assert.equal(value('agents_connected'), stats.agents_connected);
    assert.equal(value('messages_sent_total'), stats.messages_sent);
    assert.equal(value('messages_received_total'), stats.messages_received);
    assert.equal(value('updates_published_total'), stats.updates_published);
    assert.equal(value('batches_sent_total'), stats.batches_sent);
    assert.equal(value('messages_queued_total'), stats.messages_queued);
    assert.equal(value('queued_messages'), stats.queued_messages);
    assert.equal(value('messages_dropped_total'), stats.messages_dropped);
    assert.equal(value('start_time_seconds'), Date.parse(stats.started_at) / 1000);
    assert.equal(stats.updates_published, 5);
    assert.equal(stats.messages_queued, 1);
    assert.equal(byName.get('hono_agent_ws_info')?.metrics[0]?.labels?.instance_id, stats.instance_id);
    for (const family of families) {
      if (family.type === 'counter') assert.ok(family.name.endsWith('_total'), family.name);
      assert.ok(family.help.length > 0);
    }
    const errors = byName.get('hono_agent_ws_errors_total');
    assert.equal(errors?.type, 'counter');
    assert.equal(errors?.metrics.length, ERROR_KINDS.length);
    for (const sample of errors?.metrics ?? []) {
      assert.equal(Number(sample.value), stats.errors_by_kind[sample.labels?.kind as (typeof ERROR_KINDS)[number]]);
    }
    assert.match(text, /^hono_agent_ws_errors_total\{kind="invalid_json"\} 1$/m);
    const batch = byName.get('hono_agent_ws_batch_size_updates');
    assert.equal(batch?.type, 'histogram');
    assert.equal(Number(batch?.metrics[0]?.count), stats.batches_sent);
    assert.equal(stats.batches_sent, 1);
    assert.equal(Number(batch?.metrics[0]?.sum), 3);
    assert.equal(batch?.metrics[0]?.buckets?.['2'], '0');
    assert.equal(batch?.metrics[0]?.buckets?.['5'], '1');
    const delay = byName.get('hono_agent_ws_send_delay_seconds');
    assert.equal(delay?.type, 'histogram');
    // Two live frames: the first update alone, then the batch.
    assert.equal(Number(delay?.metrics[0]?.count), 2);
    const delaySum = Number(delay?.metrics[0]?.sum);
    assert.ok(delaySum >= 0.01 && delaySum < 1, `delay sum ${delaySum}`);
    // No cluster figures from the in-memory broker.
    assert.ok(!byName.has('hono_agent_ws_cluster_instances'));
    await hub.close();
  });

  it('registers the same metrics in a prom-client registry, read at each scrape', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    await runtime.connect('p-1');
    await sleep(0);
    await hub.publishStatus('p-1', { status: 'idle' });
    const registry = new Registry();
    const registered = registerHubMetrics(hub, registry);
    assert.deepEqual(
      registered.map((metric) => metric.name),
      METRIC_NAMES,
    );
    const text = await registry.metrics();
    const byName = parsePrometheus(text);
    assert.equal(Number(byName.get('hono_agent_ws_updates_published_total')?.metrics[0]?.value), 1);
    assert.equal(Number(byName.get('hono_agent_ws_connections_active')?.metrics[0]?.value), 1);
    assert.equal(byName.get('hono_agent_ws_errors_total')?.metrics.length, ERROR_KINDS.length);
    assert.equal(Number(byName.get('hono_agent_ws_send_delay_seconds')?.metrics[0]?.count), 1);
    await hub.publishStatus('p-1', { status: 'running' });
    const again = parsePrometheus(await registry.metrics());
    assert.equal(Number(again.get('hono_agent_ws_updates_published_total')?.metrics[0]?.value), 2);
    // The endpoint and the registry agree on every family they both print.
    const endpoint = parsePrometheus(await (await runtime.app.request('/agents/ws/metrics')).text());
    for (const family of endpoint.values()) assert.equal(again.get(family.name)?.type, family.type, family.name);
    await hub.close();
  });
});
