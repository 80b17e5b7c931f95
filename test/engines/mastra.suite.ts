/**
 * `hono-agent-ws/mastra` against the real Mastra (@mastra/core 1.x), offline: plain-function
 * steps and a `foreach`, a watcher on a real socket. @mastra/core needs Node >= 22.13:
 * test/engines-node22.test.ts runs this file on the Node 22 and 24 binaries
 * (scripts/node-versions.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Mastra } from '@mastra/core/mastra';
import { InMemoryStore } from '@mastra/core/storage';
import { createStep, createWorkflow } from '@mastra/core/workflows';
import { z } from 'zod';
import { watchMastraRun } from '../../bridges/mastra.ts';
import { type BrokerFactory, memoryBroker } from '../../plugin/index.ts';
import { lifecycles, type ServedHub, serveHub } from '../helpers/engine-watch.ts';

const fetchPages = createStep({
  id: 'fetch-pages',
  inputSchema: z.object({ site: z.string(), bad: z.boolean().optional() }),
  outputSchema: z.object({ pages: z.array(z.number()) }),
  execute: async ({ inputData, writer }) => {
    await writer?.write({ progress: 50, message: 'listing pages' });
    return { pages: inputData.bad ? [1, 999, 3] : [1, 2, 3] };
  },
});
const readPage = createStep({
  id: 'read-page',
  inputSchema: z.number(),
  outputSchema: z.number(),
  execute: async ({ inputData }) => {
    if (inputData === 999) throw new Error('page 999 is missing');
    return inputData * 10;
  },
});
const workflow = createWorkflow({
  id: 'crawl',
  inputSchema: z.object({ site: z.string(), bad: z.boolean().optional() }),
  outputSchema: z.array(z.number()),
})
  .then(fetchPages)
  .map(async ({ inputData }) => inputData.pages)
  .foreach(readPage)
  .commit();

/** Reads the app's stream as an app would: every chunk's type, and the result. */
async function readStream(stream: { fullStream: unknown; result: PromiseLike<unknown> }) {
  const types: string[] = [];
  for await (const chunk of stream.fullStream as unknown as AsyncIterable<{ type: string }>) types.push(chunk.type);
  const result = (await stream.result) as { status: string; result?: unknown; error?: { message?: string } };
  return { types, status: result.status, result: result.result, error: result.error?.message };
}

describe('hono-agent-ws/mastra', () => {
  let served: ServedHub;
  before(async () => {
    served = await serveHub({ batchInterval: 20 });
  });
  after(() => served.close());

  it('stream(): each step a task, foreach progress, the run a task; the app reads the same stream', async () => {
    const watcher = await served.watch('ms-1');
    const plain = await readStream((await workflow.createRun()).stream({ inputData: { site: 'a' } }));
    const run = await workflow.createRun();
    const watch = watchMastraRun(served.hub, 'ms-1', run, { taskId: 'crawl-a' });
    const bridged = await readStream(run.stream({ inputData: { site: 'a' } }));
    assert.deepEqual(bridged, plain, 'the same chunks, status and result');
    assert.deepEqual(await watch.done, { status: 'success' });
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    const ids = [...tasks.keys()];
    assert.equal(ids[0], 'crawl-a');
    assert.match(ids[1]!, /^fetch-pages:/);
    assert.match(ids[3]!, /^read-page:/);
    assert.deepEqual(
      tasks.get(ids[1]!)!.map((update) => [update.progress, update.message]),
      [
        [0, 'started'],
        [50, 'listing pages'],
        [100, undefined],
      ],
    );
    assert.deepEqual(tasks.get(ids[1]!)!.at(-1)!.result, { pages: [1, 2, 3] });
    assert.deepEqual(
      tasks.get(ids[3]!)!.map((update) => [update.status, update.progress]),
      [
        ['running', 0],
        ['running', 33],
        ['running', 67],
        ['running', 100],
        ['completed', 100],
      ],
    );
    assert.deepEqual(tasks.get('crawl-a')!.at(-1)!.result, [10, 20, 30]);
  });

  it('a step that throws: its task fails, the run fails, the app sees the same failure', async () => {
    const watcher = await served.watch('ms-2');
    const plain = await readStream((await workflow.createRun()).stream({ inputData: { site: 'b', bad: true } }));
    const run = await workflow.createRun();
    const watch = watchMastraRun(served.hub, 'ms-2', run);
    const bridged = await readStream(run.stream({ inputData: { site: 'b', bad: true } }));
    assert.deepEqual(bridged, plain);
    assert.equal(bridged.status, 'failed');
    assert.deepEqual(await watch.done, { status: 'failed' });
    await watcher.untilStatus('failed');
    const tasks = [...lifecycles(watcher).entries()];
    const read = tasks.find(([id]) => id.startsWith('read-page:'))![1];
    assert.deepEqual([read.at(-1)!.status, read.at(-1)!.error], ['failed', 'page 999 is missing']);
  });

  it('start(): the end is learned from the promise passed as result', async () => {
    const watcher = await served.watch('ms-3');
    const run = await workflow.createRun();
    const started = run.start({ inputData: { site: 'c' } });
    const watch = watchMastraRun(served.hub, 'ms-3', run, { result: started });
    assert.equal((await started).status, 'success');
    assert.deepEqual(await watch.done, { status: 'success' });
    await watcher.untilStatus('idle');
    assert.equal(lifecycles(watcher).size, 3);
  });

  it('a broker outage never breaks the run: the same stream, every refused update counted by the hub', async () => {
    const down: BrokerFactory = (context) => ({
      ...memoryBroker()(context),
      publish: () => {
        throw new Error('broker down');
      },
    });
    const outage = await serveHub({ broker: down });
    try {
      const plain = await readStream((await workflow.createRun()).stream({ inputData: { site: 'e' } }));
      const run = await workflow.createRun();
      const watch = watchMastraRun(outage.hub, 'ms-5', run, { taskId: 'e' });
      assert.deepEqual(await readStream(run.stream({ inputData: { site: 'e' } })), plain);
      assert.deepEqual(await watch.done, { status: 'success' });
      assert.ok(outage.hub.stats().errors_by_kind.broker_error >= 10);
    } finally {
      await outage.close();
    }
  });

  it('suspended, then resumed with resumeStream(): followed across both, done once the run ends', async () => {
    const approve = createStep({
      id: 'approve',
      inputSchema: z.object({ site: z.string() }),
      resumeSchema: z.object({ ok: z.boolean() }),
      outputSchema: z.object({ approved: z.boolean() }),
      execute: async ({ resumeData, suspend }) => {
        if (!resumeData) return suspend({ question: 'crawl it?' });
        return { approved: resumeData.ok };
      },
    });
    const gated = createWorkflow({
      id: 'gated',
      inputSchema: z.object({ site: z.string() }),
      outputSchema: z.object({ approved: z.boolean() }),
    })
      .then(approve)
      .commit();
    // Resuming needs the run's snapshot: a Mastra instance with storage.
    const mastra = new Mastra({ workflows: { gated }, storage: new InMemoryStore(), logger: false });
    const watcher = await served.watch('ms-6');
    const run = await mastra.getWorkflow('gated').createRun();
    const watch = watchMastraRun(served.hub, 'ms-6', run, { taskId: 'gated-1' });
    const first = await readStream(run.stream({ inputData: { site: 'f' } }));
    assert.equal(first.status, 'suspended');
    await watcher.untilStatus('suspended');
    const second = await readStream(run.resumeStream({ step: 'approve', resumeData: { ok: true } }));
    assert.equal(second.status, 'success');
    assert.deepEqual(await watch.done, { status: 'success' });
    await watcher.untilStatus('idle');
    assert.deepEqual(lifecycles(watcher).get('gated-1')!.at(-1)!.result, { approved: true });
  });

  it('run.cancel() mid-step: the step task fails, the agent is canceled, done settles canceled', async () => {
    const wait = createStep({
      id: 'wait-for-ever',
      inputSchema: z.object({}),
      outputSchema: z.object({}),
      execute: ({ abortSignal }) =>
        new Promise((_resolve, reject) => abortSignal.addEventListener('abort', () => reject(new Error('canceled')))),
    });
    const waiting = createWorkflow({ id: 'waiting', inputSchema: z.object({}), outputSchema: z.object({}) })
      .then(wait)
      .commit();
    const watcher = await served.watch('ms-7');
    const run = await waiting.createRun();
    const watch = watchMastraRun(served.hub, 'ms-7', run, { taskId: 'w1' });
    const stream = run.stream({ inputData: {} });
    const reading = readStream(stream);
    await watcher.until((updates) =>
      updates.some((update) => update.type === 'task_update' && update.task_id.startsWith('wait-for-ever:')),
    );
    await run.cancel();
    const read = await reading;
    assert.equal(read.status, 'canceled');
    assert.deepEqual(await watch.done, { status: 'canceled' });
    await watcher.untilStatus('canceled');
    for (const [, updates] of lifecycles(watcher)) assert.equal(updates.at(-1)!.status, 'failed');
  });

  it('stop(): nothing more is published, done settles', async () => {
    const run = await workflow.createRun();
    const watch = watchMastraRun(served.hub, 'ms-4', run);
    watch.stop();
    const before = served.hub.stats().updates_published;
    await readStream(run.stream({ inputData: { site: 'd' } }));
    assert.deepEqual(await watch.done, { status: 'stopped' });
    assert.equal(served.hub.stats().updates_published, before);
  });
});
