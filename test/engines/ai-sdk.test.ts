/**
 * `hono-agent-ws/ai-sdk` against the real Vercel AI SDK 6 (the line that runs on Node 20),
 * offline: `MockLanguageModelV3` from `ai/test` drives a tool loop; a watcher on a real socket.
 * AI SDK 7 (Node >= 22) runs the docs example in test/package-engines.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateText, stepCountIs, streamText, ToolLoopAgent, tool } from 'ai';
import { convertArrayToReadableStream, MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';
import { aiSdkCallbacks } from '../../bridges/ai-sdk.ts';
import { type BrokerFactory, memoryBroker } from '../../plugin/index.ts';
import { lifecycles, type ServedHub, serveHub } from '../helpers/engine-watch.ts';

const usage = {
  inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 5, text: 5, reasoning: undefined },
};

/** First a call of `lookup` and of `broken`, then the final text. */
function toolLoopModel() {
  let turn = 0;
  return new MockLanguageModelV3({
    doGenerate: async () => {
      turn++;
      if (turn === 1)
        return {
          content: [
            { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: '{"city":"Brest"}' },
            { type: 'tool-call', toolCallId: 'call-2', toolName: 'broken', input: '{}' },
          ],
          finishReason: { unified: 'tool-calls', raw: undefined },
          usage,
          warnings: [],
        };
      return {
        content: [{ type: 'text', text: 'High tide at 14:02.' }],
        finishReason: { unified: 'stop', raw: 'stop' },
        usage,
        warnings: [],
      };
    },
  });
}

/** The same two turns, streamed; `failing` makes the second turn's stream fail. */
function streamingModel(failing = false) {
  let turn = 0;
  return new MockLanguageModelV3({
    doStream: async () => {
      turn++;
      if (turn === 1)
        return {
          stream: convertArrayToReadableStream([
            { type: 'stream-start', warnings: [] },
            { type: 'tool-call', toolCallId: 'call-1', toolName: 'lookup', input: '{"city":"Brest"}' },
            { type: 'finish', finishReason: { unified: 'tool-calls', raw: undefined }, usage },
          ] as const),
        };
      if (failing) throw new Error('model unavailable');
      return {
        stream: convertArrayToReadableStream([
          { type: 'stream-start', warnings: [] },
          { type: 'text-start', id: 't' },
          { type: 'text-delta', id: 't', delta: 'High tide ' },
          { type: 'text-delta', id: 't', delta: 'at 14:02.' },
          { type: 'text-end', id: 't' },
          { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
        ] as const),
      };
    },
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

describe('hono-agent-ws/ai-sdk', () => {
  let served: ServedHub;
  before(async () => {
    served = await serveHub({ batchInterval: 20 });
  });
  after(() => served.close());

  it('generateText: each tool call a task (output or error), the call a task with the final text; the app gets the same', async () => {
    const watcher = await served.watch('ai-1');
    const ownSteps: number[][] = [[], []];
    const call = (own: number, extra: object) =>
      generateText({
        model: toolLoopModel(),
        tools,
        prompt: 'When is high tide in Brest?',
        stopWhen: stepCountIs(3),
        ...extra,
        ...(own === 0
          ? { onStepFinish: (step: { finishReason: string }) => void ownSteps[0]!.push(step.finishReason.length) }
          : {}),
      });
    const plain = await call(0, {});
    const bridged = await call(1, {
      ...aiSdkCallbacks(served.hub, 'ai-1', {
        taskId: 'tide-question',
        onStepFinish: (step: { finishReason: string }) => void ownSteps[1]!.push(step.finishReason.length),
      }),
    });
    assert.equal(bridged.text, plain.text);
    assert.equal(bridged.steps.length, plain.steps.length);
    assert.deepEqual(ownSteps[1], ownSteps[0], "the app's own onStepFinish is called as before");
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    assert.deepEqual([...tasks.keys()].sort(), ['broken:call-2', 'lookup:call-1', 'tide-question']);
    assert.deepEqual(tasks.get('lookup:call-1')!.at(-1)!.result, { city: 'Brest', high: '14:02' });
    assert.deepEqual(
      [tasks.get('broken:call-2')!.at(-1)!.status, tasks.get('broken:call-2')!.at(-1)!.error],
      ['failed', 'tide service down'],
    );
    assert.equal(tasks.get('tide-question')!.at(-1)!.result, 'High tide at 14:02.');
    const steps = watcher
      .updates()
      .flatMap((update) =>
        update.type === 'status_update' ? [update.execution_status?.message ?? update.status] : [],
      );
    assert.deepEqual(steps, ['running', 'step 1', 'step 2', 'idle']);
  });

  it('streamText: the same text stream with the bridge; the tool call reported', async () => {
    const watcher = await served.watch('ai-2');
    const read = async (extra: object) => {
      const result = streamText({
        model: streamingModel(),
        tools,
        prompt: 'tide?',
        stopWhen: stepCountIs(3),
        ...extra,
      });
      let text = '';
      for await (const delta of result.textStream) text += delta;
      return text;
    };
    const plain = await read({});
    assert.equal(await read(aiSdkCallbacks(served.hub, 'ai-2')), plain);
    await watcher.untilStatus('idle');
    assert.deepEqual([...lifecycles(watcher).keys()], ['lookup:call-1']);
  });

  it("streamText failing: the agent is failed, the app's onError is called, or the SDK's default log happens as before", async () => {
    const watcher = await served.watch('ai-3');
    const errors: unknown[] = [];
    const drain = async (extra: object) => {
      const result = streamText({
        model: streamingModel(true),
        tools,
        prompt: 'tide?',
        stopWhen: stepCountIs(3),
        ...extra,
      });
      for await (const _ of result.fullStream);
    };
    await drain(aiSdkCallbacks(served.hub, 'ai-3', { taskId: 'q3', onError: ({ error }) => void errors.push(error) }));
    assert.equal(errors.length, 1);
    await watcher.untilStatus('failed');
    assert.equal(lifecycles(watcher).get('q3')!.at(-1)!.error, 'model unavailable');

    const logged: unknown[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args[0]);
    try {
      await drain({});
      const plainLogs = logged.length;
      await drain(aiSdkCallbacks(served.hub, 'ai-3'));
      assert.equal(logged.length, 2 * plainLogs, 'the same console.error with and without the bridge');
      assert.ok(plainLogs >= 1);
    } finally {
      console.error = original;
    }
  });

  it('streamText aborted by the app: the agent is aborted, the call task failed', async () => {
    const watcher = await served.watch('ai-9');
    const controller = new AbortController();
    const result = streamText({
      model: streamingModel(),
      tools,
      prompt: 'tide?',
      stopWhen: stepCountIs(3),
      abortSignal: controller.signal,
      ...aiSdkCallbacks(served.hub, 'ai-9', { taskId: 'q9' }),
    });
    for await (const part of result.fullStream) if (part.type === 'tool-result') controller.abort();
    await watcher.untilStatus('aborted');
    assert.equal(lifecycles(watcher).get('q9')!.at(-1)!.status, 'failed');
  });

  it('generateText rejecting: the same error reaches the app; fail() (not spread) reports it', async () => {
    const watcher = await served.watch('ai-4');
    const callbacks = aiSdkCallbacks(served.hub, 'ai-4', { taskId: 'q4' });
    assert.ok(!Object.keys(callbacks).includes('fail'));
    assert.ok(!('fail' in { ...callbacks }));
    const model = new MockLanguageModelV3({
      doGenerate: async () => {
        throw new Error('quota exceeded');
      },
    });
    await assert.rejects(generateText({ model, prompt: 'x', maxRetries: 0, ...callbacks }), (error: Error) => {
      callbacks.fail(error);
      return /quota exceeded/.test(error.message);
    });
    await watcher.untilStatus('failed');
    assert.equal(lifecycles(watcher).get('q4')!.at(-1)!.status, 'failed');
  });

  it('an agent (ToolLoopAgent) with the callbacks spread into its settings: the same text, the tools reported', async () => {
    const watcher = await served.watch('ai-8');
    const plain = await new ToolLoopAgent({ model: toolLoopModel(), tools, stopWhen: stepCountIs(3) }).generate({
      prompt: 'tide?',
    });
    const agent = new ToolLoopAgent({
      model: toolLoopModel(),
      tools,
      stopWhen: stepCountIs(3),
      ...aiSdkCallbacks(served.hub, 'ai-8', { taskId: 'agent-q' }),
    });
    const bridged = await agent.generate({ prompt: 'tide?' });
    assert.equal(bridged.text, plain.text);
    await watcher.untilStatus('idle');
    assert.deepEqual([...lifecycles(watcher).keys()].sort(), ['agent-q', 'broken:call-2', 'lookup:call-1']);
  });

  it('version 7 names: the AI SDK 7 callbacks, and its tool event shape', async () => {
    const watcher = await served.watch('ai-5');
    const callbacks = aiSdkCallbacks(served.hub, 'ai-5', { version: 7 });
    assert.deepEqual(Object.keys(callbacks).sort(), [
      'onAbort',
      'onEnd',
      'onError',
      'onStart',
      'onStepEnd',
      'onStepStart',
      'onToolExecutionEnd',
      'onToolExecutionStart',
    ]);
    // The events as AI SDK 7 shapes them (ToolExecutionStartEvent / ToolExecutionEndEvent).
    const toolCall = { toolCallId: 'c7', toolName: 'lookup', input: {} };
    await callbacks.onStart!({});
    await callbacks.onToolExecutionStart!({ callId: 'x', toolCall });
    await callbacks.onToolExecutionEnd!({
      callId: 'x',
      toolCall,
      toolOutput: { type: 'tool-result', output: { ok: 1 } },
    });
    await callbacks.onToolExecutionStart!({ callId: 'x', toolCall: { ...toolCall, toolCallId: 'c8' } });
    await callbacks.onToolExecutionEnd!({
      callId: 'x',
      toolCall: { ...toolCall, toolCallId: 'c8' },
      toolOutput: { type: 'tool-error', error: new Error('nope') },
    });
    await callbacks.onEnd!({ text: 'done' });
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    assert.deepEqual(tasks.get('lookup:c7')!.at(-1)!.result, { ok: 1 });
    assert.equal(tasks.get('lookup:c8')!.at(-1)!.error, 'nope');
  });

  it('a broker outage or an odd event never breaks the call: counted, same text', async () => {
    const down: BrokerFactory = (context) => ({
      ...memoryBroker()(context),
      publish: () => {
        throw new Error('broker down');
      },
    });
    const outage = await serveHub({ broker: down });
    try {
      const result = await generateText({
        model: toolLoopModel(),
        tools,
        prompt: 'x',
        stopWhen: stepCountIs(3),
        ...aiSdkCallbacks(outage.hub, 'ai-6'),
      });
      assert.equal(result.text, 'High tide at 14:02.');
      assert.ok(outage.hub.stats().errors_by_kind.broker_error >= 5);
      const callbacks = aiSdkCallbacks(outage.hub, 'ai-7');
      await callbacks.experimental_onToolCallStart!(null);
      await callbacks.experimental_onStepStart!(undefined);
      assert.ok(outage.hub.stats().errors_by_kind.internal_error >= 1, 'the null event, counted');
    } finally {
      await outage.close();
    }
  });
});
