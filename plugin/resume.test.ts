/**
 * Sequence numbers, resume and snapshots, through the in-process fake runtime: a watcher that
 * reconnects with `?since=&epoch=` gets exactly what it missed, and every connection starts from
 * the agent's current state.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeClock } from '../test/helpers/clock.ts';
import { type FakeSocket, fakeRuntime } from '../test/helpers/fake-runtime.ts';
import { sleep } from '../test/helpers/wait.ts';
import { type AgentHubOptions, type BrokerFactory, createAgentHub, memoryBroker } from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0 };
type Runtime = ReturnType<typeof fakeRuntime>;
const open = async (runtime: Runtime, agentId: string, query = '') => {
  const socket = await runtime.connect(agentId, {}, query);
  assert.ok(!(socket instanceof Response), `connection accepted (${query})`);
  return socket as FakeSocket;
};
const task = (n: number, status = 'running') => ({ task_id: `t${n}`, status, progress: Math.min(n, 100) });
type Frame = ReturnType<FakeSocket['frames']>[number];
/** Every update a socket received, batches unpacked, as `seq`s. */
const seqs = (socket: FakeSocket) =>
  socket.frames().flatMap((frame: Frame) => {
    if (frame.type === 'task_update' || frame.type === 'status_update') return [frame.seq as number];
    if (frame.type === 'batch_update')
      return frame.updates.map((entry: { content: { seq: number } }) => entry.content.seq);
    return [];
  });
const first = (socket: FakeSocket, type: string) => socket.frames().find((frame: Frame) => frame.type === type);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('sequence numbers', () => {
  it('numbers every update 1, 2, 3 per agent and announces epoch and seq on connect', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    for (let n = 1; n <= 3; n++) await hub.publishTask('a', task(n));
    await hub.publishTask('b', task(9));
    const socket = await open(runtime, 'a');
    const hello = first(socket, 'connection_established');
    assert.equal(hello?.seq, 3);
    assert.equal(hello?.recovered, false);
    assert.match(hello?.epoch, /^[a-z0-9]{12}$/);
    await hub.publishTask('a', task(4));
    const frames = socket.frames();
    assert.deepEqual(
      frames.map((frame: Frame) => frame.type),
      ['connection_established', 'snapshot', 'batch_update', 'task_update'],
    );
    assert.deepEqual(seqs(socket), [1, 2, 3, 4]);
    assert.ok(
      frames.slice(2).every((frame: Frame) => (frame.epoch ?? frame.updates?.[0].content.epoch) === hello?.epoch),
    );
    await hub.close();
  });
});

describe('resume', () => {
  it('two tabs: one reloads while the other stays; it gets exactly what it missed, once, in order', async (t) => {
    const clock = fakeClock(t);
    const hub = createAgentHub({ ...quiet, batchInterval: 20 });
    const runtime = fakeRuntime(hub);
    const stays = await open(runtime, 'a');
    const reloads = await open(runtime, 'a');
    for (let n = 1; n <= 5; n++) await hub.publishTask('a', task(n));
    await clock.advance(40);
    const { epoch } = first(reloads, 'connection_established') as Frame;
    const last = seqs(reloads).at(-1);
    assert.equal(last, 5);
    reloads.peerClosed(1001);
    for (let n = 6; n <= 25; n++) await hub.publishTask('a', task(n));
    // A window is open with updates in it while the tab comes back.
    const back = await open(runtime, 'a', `?since=${last}&epoch=${epoch}`);
    for (let n = 26; n <= 30; n++) await hub.publishTask('a', task(n));
    await clock.advance(60);
    const hello = first(back, 'connection_established') as Frame;
    assert.equal(hello.recovered, true);
    const resumed = back.frames().find((frame: Frame) => frame.type === 'batch_update' && frame.source === 'resume');
    assert.ok(resumed, 'a resume batch');
    assert.deepEqual(seqs(back), range(6, 30));
    assert.deepEqual(seqs(stays), range(1, 30));
    await hub.close();
  });

  it('the only tab reloads: it resumes from history, without the queue twice', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    const tab = await open(runtime, 'a');
    await hub.publishTask('a', task(1));
    const { epoch } = first(tab, 'connection_established') as Frame;
    tab.peerClosed(1001);
    for (let n = 2; n <= 8; n++) await hub.publishTask('a', task(n));
    const back = await open(runtime, 'a', `?since=1&epoch=${epoch}`);
    assert.equal(first(back, 'connection_established')?.recovered, true);
    assert.deepEqual(seqs(back), range(2, 8));
    assert.deepEqual(
      back.frames().map((frame: Frame) => frame.source ?? frame.type),
      ['connection_established', 'snapshot', 'resume'],
    );
    await hub.close();
  });

  it('nothing missed: recovered, and no batch', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    await hub.publishTask('a', task(1));
    const tab = await open(runtime, 'a');
    const { epoch } = first(tab, 'connection_established') as Frame;
    const back = await open(runtime, 'a', `?since=1&epoch=${epoch}`);
    assert.equal(first(back, 'connection_established')?.recovered, true);
    assert.deepEqual(
      back.frames().map((frame: Frame) => frame.type),
      ['connection_established', 'snapshot'],
    );
    await hub.close();
  });

  it('history overflowed, a wrong or old epoch, a seq from the future: recovered false, and the snapshot', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0, historySize: 5 });
    const runtime = fakeRuntime(hub);
    const tab = await open(runtime, 'a');
    const { epoch } = first(tab, 'connection_established') as Frame;
    for (let n = 1; n <= 20; n++) await hub.publishTask('a', task(n));
    for (const query of [`?since=3&epoch=${epoch}`, '?since=19&epoch=other', `?since=99&epoch=${epoch}`]) {
      const back = await open(runtime, 'a', query);
      assert.equal(first(back, 'connection_established')?.recovered, false, query);
      assert.equal(first(back, 'snapshot')?.seq, 20, query);
      assert.deepEqual(seqs(back), [], query);
    }
    await hub.close();
  });

  it('refuses a malformed resume point with 400 invalid_resume', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    for (const query of ['?since=abc&epoch=e', '?since=3', '?since=-1&epoch=e', '?since=3&epoch=bad%20epoch']) {
      const response = (await runtime.connect('a', {}, query)) as Response;
      assert.equal(response.status, 400, query);
      assert.equal(response.headers.get('x-agent-ws-error'), 'invalid_resume');
    }
    assert.equal(hub.stats().errors_by_kind.invalid_resume, 4);
    await hub.close();
  });

  it('resumes through a broker that answers asynchronously, pausing the channel meanwhile', async (t) => {
    const clock = fakeClock(t);
    const factory: BrokerFactory = (context) => {
      const inner = memoryBroker()(context);
      return {
        ...inner,
        history: async (...args) => {
          await sleep(30);
          return inner.history(...args);
        },
      };
    };
    const hub = createAgentHub({ ...quiet, batchInterval: 0, broker: factory });
    const runtime = fakeRuntime(hub);
    const stays = await open(runtime, 'a');
    const leaves = await open(runtime, 'a');
    await hub.publishTask('a', task(1));
    const { epoch } = first(leaves, 'connection_established') as Frame;
    leaves.peerClosed(1001);
    for (let n = 2; n <= 5; n++) await hub.publishTask('a', task(n));
    const back = await open(runtime, 'a', `?since=1&epoch=${epoch}`);
    // Published while the history is read: held, then sent to everyone after the resume.
    for (let n = 6; n <= 9; n++) await hub.publishTask('a', task(n));
    await clock.advance(80);
    assert.equal(first(back, 'connection_established')?.recovered, true);
    assert.deepEqual(seqs(back), range(2, 9));
    assert.deepEqual(seqs(stays), range(1, 9));
    await hub.close();
  });
});

describe('snapshot', () => {
  it('a dashboard that joins mid-task sees the current status and every running task at once', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    await hub.publishStatus('a', { status: 'busy', execution_status: { state: 'executing', task_id: 't2' } });
    await hub.publishTask('a', task(1));
    await hub.publishTask('a', task(2));
    await hub.publishTask('a', { ...task(1, 'completed'), progress: 100, result: { ok: true } });
    await hub.publishTask('a', { ...task(2), progress: 60 });
    const socket = await open(runtime, 'a');
    const snapshot = first(socket, 'snapshot') as Frame;
    assert.equal(snapshot.seq, 5);
    assert.equal(snapshot.status.status, 'busy');
    assert.deepEqual(
      snapshot.tasks.map((t: { task_id: string; status: string; progress: number }) => [
        t.task_id,
        t.status,
        t.progress,
      ]),
      [
        ['t1', 'completed', 100],
        ['t2', 'running', 60],
      ],
    );
    await hub.close();
  });

  it('an agent never seen: status null, no tasks, seq 0', async () => {
    const hub = createAgentHub(quiet);
    const socket = await open(fakeRuntime(hub), 'fresh');
    const snapshot = first(socket, 'snapshot') as Frame;
    assert.equal(snapshot.status, null);
    assert.deepEqual(snapshot.tasks, []);
    assert.equal(snapshot.seq, 0);
    await hub.close();
  });

  it('five watchers joining an offline agent together all get the same snapshot and queue', async () => {
    const hub = createAgentHub({ ...quiet, batchInterval: 0 });
    const runtime = fakeRuntime(hub);
    for (let n = 1; n <= 7; n++) await hub.publishTask('a', task(n));
    const watchers = await Promise.all(Array.from({ length: 5 }, () => open(runtime, 'a')));
    for (const watcher of watchers) {
      const { timestamp: _mine, ...snapshot } = first(watcher, 'snapshot') as Frame;
      const { timestamp: _theirs, ...firstSnapshot } = first(watchers[0] as FakeSocket, 'snapshot') as Frame;
      assert.deepEqual(snapshot, firstSnapshot);
      const queue = watcher.frames().find((frame: Frame) => frame.source === 'queue');
      assert.ok(queue, 'a queue batch');
      assert.deepEqual(seqs(watcher), range(1, 7));
    }
    await hub.close();
  });

  it('can be turned off', async () => {
    const hub = createAgentHub({ ...quiet, snapshot: false });
    const socket = await open(fakeRuntime(hub), 'a');
    assert.equal(first(socket, 'snapshot'), undefined);
    await hub.close();
  });
});
