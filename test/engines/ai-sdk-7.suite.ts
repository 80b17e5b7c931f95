/**
 * `hono-agent-ws/ai-sdk` against the real Vercel AI SDK 7 (installed here as `ai-7`, an npm
 * alias of `ai@7`, beside AI SDK 6), offline with its `MockLanguageModelV3`; a watcher on a real
 * socket. AI SDK 7 needs Node >= 22: test/engines-node22.test.ts runs this file on the Node 22
 * and 24 binaries.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateText, isStepCount, streamText, ToolLoopAgent, tool } from 'ai-7';
import { convertArrayToReadableStream, MockLanguageModelV3 } from 'ai-7/test';
import { z } from 'zod';
import { aiSdkCallbacks } from '../../bridges/ai-sdk.ts';
import { lifecycles, type ServedHub, serveHub } from '../helpers/engine-watch.ts';

const usage = {
  inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 5, text: 5, reasoning: undefined },
};

/** First a call of `lookup` and of `broken`, then the final text. */
function toolLoopModel() {
  let turn = 0;
  return new MockLanguageModelV3({
    doGenerate: async () =>
      ++turn === 1
        ? {
            content: [
              { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: '{"city":"Brest"}' },
              { type: 'tool-call', toolCallId: 'call-2', toolName: 'broken', input: '{}' },
            ],
            finishReason: { unified: 'tool-calls', raw: undefined },
            usage,
            warnings: [],
          }
        : {
            content: [{ type: 'text', text: 'High tide at 14:02.' }],
            finishReason: { unified: 'stop', raw: 'stop' },
            usage,
            warnings: [],
          },
  });
}

/** The same two turns, streamed. */
function streamingModel() {
  let turn = 0;
  return new MockLanguageModelV3({
    doStream: async () => ({
      // The parts of the two turns differ in kind: one array type for both.
      stream: convertArrayToReadableStream<any>(
        ++turn === 1
          ? [
              { type: 'stream-start', warnings: [] },
              { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: '{"city":"Brest"}' },
              { type: 'tool-call', toolCallId: 'call-2', toolName: 'broken', input: '{}' },
              { type: 'finish', finishReason: { unified: 'tool-calls', raw: undefined }, usage },
            ]
          : [
              { type: 'stream-start', warnings: [] },
              { type: 'text-start', id: 't' },
              { type: 'text-delta', id: 't', delta: 'High tide ' },
              { type: 'text-delta', id: 't', delta: 'at 14:02.' },
              { type: 'text-end', id: 't' },
              { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
            ],
      ),
    }),
  });
}

const tools = {
  lookup: tool({
    description: 'Tide table of a city',
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => ({ city, high: '14:02' }),
  }),
  broken: tool({
    description: 'Always fails',
    inputSchema: z.object({}),
    execute: async (): Promise<string> => {
      throw new Error('tide service down');
    },
  }),
};

/** The tool tasks and the question task ended as they should. */
function assertReported(tasks: ReturnType<typeof lifecycles>, question: string) {
  assert.deepEqual([...tasks.keys()].sort(), ['broken:call-2', 'lookup:call-1', question].sort());
  assert.deepEqual(tasks.get('lookup:call-1')!.at(-1)!.result, { city: 'Brest', high: '14:02' });
  assert.deepEqual(
    [tasks.get('broken:call-2')!.at(-1)!.status, tasks.get('broken:call-2')!.at(-1)!.error],
    ['failed', 'tide service down'],
  );
  assert.equal(tasks.get(question)!.at(-1)!.result, 'High tide at 14:02.');
}

describe('hono-agent-ws/ai-sdk on AI SDK 7', () => {
  let served: ServedHub;
  before(async () => {
    served = await serveHub({ batchInterval: 20 });
  });
  after(() => served.close());

  it('generateText with the default (AI SDK 6) names, which 7 still takes: same text, tools and the call reported', async () => {
    const watcher = await served.watch('ai7-1');
    const ownSteps: number[] = [];
    const plain = await generateText({ model: toolLoopModel(), tools, prompt: 'x', stopWhen: isStepCount(3) });
    const bridged = await generateText({
      model: toolLoopModel(),
      tools,
      prompt: 'x',
      stopWhen: isStepCount(3),
      ...aiSdkCallbacks(served.hub, 'ai7-1', { taskId: 'q1', onStepFinish: () => void ownSteps.push(1) }),
    });
    assert.equal(bridged.text, plain.text);
    assert.equal(ownSteps.length, plain.steps.length, "the app's own onStepFinish runs once per step");
    await watcher.untilStatus('idle');
    assertReported(lifecycles(watcher), 'q1');
  });

  it('streamText with version 7 names: the same text stream', async () => {
    const watcher = await served.watch('ai7-2');
    const read = async (extra: object) => {
      const result = streamText({ model: streamingModel(), tools, prompt: 'x', stopWhen: isStepCount(3), ...extra });
      let text = '';
      for await (const delta of result.textStream) text += delta;
      return text;
    };
    const plain = await read({});
    assert.equal(plain, 'High tide at 14:02.');
    assert.equal(await read(aiSdkCallbacks(served.hub, 'ai7-2', { version: 7, taskId: 'q2' })), plain);
    await watcher.untilStatus('idle');
    assertReported(lifecycles(watcher), 'q2');
  });

  it('a ToolLoopAgent takes the version 7 names: the tools and the call reported', async () => {
    const watcher = await served.watch('ai7-3');
    const agent = new ToolLoopAgent({
      model: toolLoopModel(),
      tools,
      stopWhen: isStepCount(3),
      ...aiSdkCallbacks(served.hub, 'ai7-3', { version: 7, taskId: 'q3' }),
    });
    assert.equal((await agent.generate({ prompt: 'x' })).text, 'High tide at 14:02.');
    await watcher.untilStatus('idle');
    assertReported(lifecycles(watcher), 'q3');
  });
});
