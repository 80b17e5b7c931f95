/**
 * For the engine bridges' tests: a hub served in this process on a random port, a watcher on a
 * real socket, and the task updates it receives, in order, whatever batches they came in.
 */
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import { node, serveNode } from '../../adapters/node.ts';
import { type AgentHub, type AgentHubOptions, createAgentHub, type ServerMessage } from '../../plugin/index.ts';
import { TestClient } from './client.ts';

/** An update as the watcher saw it. */
export type SeenUpdate = Extract<ServerMessage, { type: 'status_update' | 'task_update' }>;

/** A hub served over HTTP and WebSocket for one test. */
export interface ServedHub {
  readonly hub: AgentHub;
  /** Opens a watcher of `agentId` and waits for its `connection_established`. */
  watch(agentId: string): Promise<Watcher>;
  close(): Promise<void>;
}

/** Serves a fresh hub (no heartbeat, quiet unless `options.logger` is given). */
export async function serveHub(options: AgentHubOptions = {}): Promise<ServedHub> {
  const hub = createAgentHub({ heartbeatInterval: 0, logger: false, ...options });
  const app = new Hono();
  app.route('/agents', hub.routes(node));
  const server = await serveNode({ fetch: app.fetch, hub, port: 0, hostname: '127.0.0.1' });
  const watchers: Watcher[] = [];
  return {
    hub,
    async watch(agentId) {
      const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/agents/${agentId}/ws`);
      assert.equal((await client.next(undefined, 5000)).type, 'connection_established');
      const watcher = new Watcher(client);
      watchers.push(watcher);
      return watcher;
    },
    async close() {
      await server.close();
      for (const watcher of watchers)
        assert.deepEqual(watcher.client.problems, [], 'every frame matched asyncapi.yaml');
    },
  };
}

/** A watcher's updates, unwrapped from batches, in the order they arrived. */
export class Watcher {
  constructor(readonly client: TestClient) {}

  /** Every update received so far, batches unwrapped; snapshots and pings left out. */
  updates(): SeenUpdate[] {
    const seen: SeenUpdate[] = [];
    for (const frame of this.client.frames) {
      if (frame.type === 'status_update' || frame.type === 'task_update') seen.push(frame);
      else if (frame.type === 'batch_update') for (const entry of frame.updates) seen.push(entry.content);
    }
    return seen;
  }

  /** Task updates received so far. */
  tasks(): Extract<SeenUpdate, { type: 'task_update' }>[] {
    return this.updates().filter((update) => update.type === 'task_update');
  }

  /** Statuses received so far, in order. */
  statuses(): string[] {
    return this.updates().flatMap((update) => (update.type === 'status_update' ? [update.status] : []));
  }

  /** Waits until `check` holds for the updates received (5 s by default). */
  async until(check: (updates: SeenUpdate[]) => boolean, timeout = 5000, what = 'updates'): Promise<SeenUpdate[]> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const updates = this.updates();
      if (check(updates)) return updates;
      if (Date.now() > deadline)
        throw new Error(`${what} not seen within ${timeout} ms; seen: ${JSON.stringify(updates, null, 1)}`);
      await new Promise((done) => setTimeout(done, 20));
    }
  }

  /** Waits for the agent's status to become `status`. */
  untilStatus(status: string, timeout?: number): Promise<SeenUpdate[]> {
    return this.until(
      (updates) => updates.at(-1)?.type === 'status_update' && this.statuses().at(-1) === status,
      timeout,
      `status ${status}`,
    );
  }
}

/**
 * Every task's updates in order, by task id: `[status, progress]` pairs (with `result` or
 * `error` on the last), and asserts each task's life: running updates, then exactly one final
 * update, and nothing after it.
 */
export function lifecycles(watcher: Watcher): Map<string, Extract<SeenUpdate, { type: 'task_update' }>[]> {
  const byTask = new Map<string, Extract<SeenUpdate, { type: 'task_update' }>[]>();
  for (const update of watcher.tasks()) {
    const list = byTask.get(update.task_id) ?? [];
    list.push(update);
    byTask.set(update.task_id, list);
  }
  for (const [taskId, list] of byTask) {
    const finals = list.filter((update) => update.status === 'completed' || update.status === 'failed');
    assert.equal(finals.length, 1, `${taskId} ends exactly once: ${JSON.stringify(list)}`);
    assert.equal(list.at(-1), finals[0], `${taskId}: nothing after its final update`);
    assert.ok(
      list.slice(0, -1).every((update) => update.status === 'running'),
      `${taskId}: only running before the end`,
    );
    const seqs = list.map((update) => update.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
      `${taskId}: in order`,
    );
  }
  return byTask;
}
