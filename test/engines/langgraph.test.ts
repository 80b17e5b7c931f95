/**
 * `hono-agent-ws/langgraph` against the real LangGraph.js (@langchain/langgraph 1.x with
 * @langchain/core 1.x), offline: plain-function nodes, a watcher on a real socket.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dispatchCustomEvent } from '@langchain/core/callbacks/dispatch';
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import type { RunnableConfig } from '@langchain/core/runnables';
import {
  Annotation,
  Command,
  END,
  interrupt,
  MemorySaver,
  MessagesAnnotation,
  START,
  StateGraph,
} from '@langchain/langgraph';
import { langGraphCallbacks } from '../../bridges/langgraph.ts';
import { type BrokerFactory, memoryBroker } from '../../plugin/index.ts';
import { lifecycles, type ServedHub, serveHub } from '../helpers/engine-watch.ts';

const State = Annotation.Root({
  topic: Annotation<string>(),
  notes: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
  fail: Annotation<boolean>(),
  progress: Annotation<number>(),
});

/** search → read → write, each a plain function; `read` reports progress twice. */
function researchGraph() {
  return new StateGraph(State)
    .addNode('search', async (state) => ({ notes: [`searched ${state.topic}`] }))
    .addNode('read', async (state, config: RunnableConfig) => {
      await dispatchCustomEvent('progress', { progress: 30, message: 'page 1 of 3' }, config);
      await dispatchCustomEvent('progress', { progress: state.progress ?? 60, message: 'page 2 of 3' }, config);
      return { notes: ['read 3 pages'] };
    })
    .addNode('write', async (state) => {
      if (state.fail) throw new Error('the writer broke');
      return { notes: ['wrote summary'] };
    })
    .addEdge(START, 'search')
    .addEdge('search', 'read')
    .addEdge('read', 'write')
    .addEdge('write', END)
    .compile();
}

describe('hono-agent-ws/langgraph', () => {
  let served: ServedHub;
  before(async () => {
    served = await serveHub({ batchInterval: 20 });
  });
  after(() => served.close());

  it('each node is a task: started, custom progress, completed with its output; the run a task of its own', async () => {
    const watcher = await served.watch('lg-1');
    const graph = researchGraph();
    const plain = await graph.invoke({ topic: 'tides' });
    const bridged = await graph.invoke(
      { topic: 'tides' },
      { callbacks: [langGraphCallbacks(served.hub, 'lg-1', { taskId: 'research-run-1' })] },
    );
    assert.deepEqual(bridged, plain, 'the same output with the bridge');
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    const ids = [...tasks.keys()];
    assert.equal(ids.length, 4, ids.join(', '));
    const [run, search, read, write] = ids;
    assert.equal(run, 'research-run-1');
    assert.match(search!, /^search:[0-9a-f]{12}$/);
    assert.match(read!, /^read:/);
    assert.match(write!, /^write:/);
    assert.deepEqual(
      tasks.get(read!)!.map((update) => [update.status, update.progress, update.message]),
      [
        ['running', 0, 'started'],
        ['running', 30, 'page 1 of 3'],
        ['running', 60, 'page 2 of 3'],
        ['completed', 100, undefined],
      ],
    );
    assert.deepEqual(tasks.get(search!)!.at(-1)!.result, { notes: ['searched tides'] });
    assert.deepEqual(tasks.get(run!)!.at(-1)!.result, plain);
    // Nodes run one after the other: each ends before the next starts.
    const order = watcher.tasks().map((update) => `${update.task_id.split(':')[0]}:${update.status}`);
    assert.ok(order.indexOf('search:completed') < order.indexOf('read:running'));
    assert.ok(order.indexOf('read:completed') < order.indexOf('write:running'));
    assert.equal(watcher.statuses()[0], 'running');
    assert.equal(watcher.statuses().at(-1), 'idle');
    assert.equal(served.hub.stats().errors_by_kind.internal_error, 0);
  });

  it('a node that throws: the same error reaches the app, its task fails, the agent is failed', async () => {
    const watcher = await served.watch('lg-2');
    const graph = researchGraph();
    await assert.rejects(graph.invoke({ topic: 'x', fail: true }), /the writer broke/);
    await assert.rejects(
      graph.invoke(
        { topic: 'x', fail: true },
        { callbacks: [langGraphCallbacks(served.hub, 'lg-2', { taskId: 'r2' })] },
      ),
      (error: Error) => error.message === 'the writer broke',
    );
    await watcher.untilStatus('failed');
    const tasks = lifecycles(watcher);
    const write = [...tasks.entries()].find(([id]) => id.startsWith('write:'))![1];
    assert.deepEqual([write.at(-1)!.status, write.at(-1)!.error], ['failed', 'the writer broke']);
    assert.equal(tasks.get('r2')!.at(-1)!.status, 'failed');
    const failed = watcher.updates().at(-1);
    assert.equal(failed?.type === 'status_update' && failed.execution_status?.message, 'the writer broke');
  });

  it('stream() yields the same chunks with the bridge, and the nodes are reported', async () => {
    const watcher = await served.watch('lg-3');
    const graph = researchGraph();
    const collect = async (callbacks?: ReturnType<typeof langGraphCallbacks>[]) => {
      const chunks: unknown[] = [];
      for await (const chunk of await graph.stream(
        { topic: 'reefs' },
        { streamMode: 'updates', ...(callbacks ? { callbacks } : {}) },
      ))
        chunks.push(chunk);
      return chunks;
    };
    const plain = await collect();
    const bridged = await collect([langGraphCallbacks(served.hub, 'lg-3')]);
    assert.deepEqual(bridged, plain);
    await watcher.untilStatus('idle');
    assert.deepEqual(
      [...lifecycles(watcher).keys()].map((id) => id.split(':')[0]),
      ['search', 'read', 'write'],
    );
  });

  it('streamEvents() yields the same events with the bridge, custom progress events included', async () => {
    const watcher = await served.watch('lg-7');
    const graph = researchGraph();
    const collect = async (callbacks?: ReturnType<typeof langGraphCallbacks>[]) => {
      const events: string[] = [];
      for await (const event of graph.streamEvents(
        { topic: 'kelp' },
        { version: 'v2', ...(callbacks ? { callbacks } : {}) },
      ))
        events.push(`${event.event}:${event.name}`);
      return events;
    };
    const plain = await collect();
    assert.ok(plain.includes('on_custom_event:progress'));
    assert.deepEqual(await collect([langGraphCallbacks(served.hub, 'lg-7')]), plain);
    await watcher.untilStatus('idle');
    const read = [...lifecycles(watcher).entries()].find(([id]) => id.startsWith('read:'))![1];
    assert.deepEqual(
      read.map((update) => update.progress),
      [0, 30, 60, 100],
    );
  });

  it('a node run twice (a loop) is two tasks; messages in a result show as type and content', async () => {
    const watcher = await served.watch('lg-4');
    let turns = 0;
    const graph = new StateGraph(MessagesAnnotation)
      .addNode('agent', async () => {
        turns++;
        return { messages: [new AIMessage(`turn ${turns}`)] };
      })
      .addEdge(START, 'agent')
      .addConditionalEdges('agent', () => (turns < 2 ? 'agent' : END))
      .compile();
    await graph.invoke({ messages: [new HumanMessage('hi')] }, { callbacks: [langGraphCallbacks(served.hub, 'lg-4')] });
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    assert.equal(tasks.size, 2);
    const results = [...tasks.values()].map((list) => list.at(-1)!.result);
    assert.deepEqual(results[0], { messages: [{ type: 'ai', content: 'turn 1' }] });
    assert.deepEqual(results[1], { messages: [{ type: 'ai', content: 'turn 2' }] });
  });

  it('interrupt() (human in the loop): the node ends interrupted, the agent waits; resumed, the run ends idle', async () => {
    const watcher = await served.watch('lg-8');
    const Approval = Annotation.Root({ approved: Annotation<boolean>(), done: Annotation<boolean>() });
    const graph = new StateGraph(Approval)
      .addNode('ask', async () => ({ approved: interrupt({ question: 'publish?' }) as boolean }))
      .addNode('publish', async (state) => ({ done: state.approved }))
      .addEdge(START, 'ask')
      .addEdge('ask', 'publish')
      .addEdge('publish', END)
      .compile({ checkpointer: new MemorySaver() });
    const thread = { configurable: { thread_id: 'lg-8' } };
    const first = await graph.invoke(
      { approved: false },
      { ...thread, callbacks: [langGraphCallbacks(served.hub, 'lg-8', { taskId: 'ask-1' })] },
    );
    assert.ok('__interrupt__' in first);
    await watcher.untilStatus('interrupted');
    let tasks = lifecycles(watcher);
    const asked = [...tasks.entries()].find(([id]) => id.startsWith('ask:'))![1];
    assert.deepEqual([asked.at(-1)!.status, asked.at(-1)!.message], ['completed', 'interrupted']);
    assert.equal(tasks.get('ask-1')!.at(-1)!.message, 'interrupted');
    const second = await graph.invoke(new Command({ resume: true }), {
      ...thread,
      callbacks: [langGraphCallbacks(served.hub, 'lg-8', { taskId: 'ask-2' })],
    });
    assert.equal(second.done, true);
    await watcher.untilStatus('idle');
    tasks = lifecycles(watcher);
    assert.deepEqual(
      [...tasks.keys()].map((id) => id.split(':')[0]),
      ['ask-1', 'ask', 'ask-2', 'ask', 'publish'],
    );
  });

  it('a bad progress event or a broker outage never breaks the run: counted, and the output is the same', async () => {
    const graph = researchGraph();
    const plain = await graph.invoke({ topic: 'x', progress: 500 });
    const before = served.hub.stats().errors_by_kind.internal_error;
    const output = await graph.invoke(
      { topic: 'x', progress: 500 },
      { callbacks: [langGraphCallbacks(served.hub, 'lg-5')] },
    );
    assert.deepEqual(output, plain);
    assert.equal(served.hub.stats().errors_by_kind.internal_error, before + 1, 'the progress of 500, counted');

    const down: BrokerFactory = (context) => ({
      ...memoryBroker()(context),
      publish: () => {
        throw new Error('broker down');
      },
    });
    const outage = await serveHub({ broker: down });
    try {
      const during = await graph.invoke({ topic: 'x' }, { callbacks: [langGraphCallbacks(outage.hub, 'lg-6')] });
      assert.deepEqual(during, await graph.invoke({ topic: 'x' }));
      assert.ok(outage.hub.stats().errors_by_kind.broker_error >= 8, 'every update refused, counted by the hub');
    } finally {
      await outage.close();
    }
  });

  it('refuses a bad agent id when made, before the run', () => {
    assert.throws(() => langGraphCallbacks(served.hub, 'not an id'), /invalid agent id/);
  });
});
