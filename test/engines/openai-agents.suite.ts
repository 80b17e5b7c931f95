/**
 * `hono-agent-ws/openai-agents` against the real OpenAI Agents JS (@openai/agents 0.x), offline:
 * a fake model (the SDK's `Model` interface) drives a handoff, a tool that works and one that
 * throws; a watcher on a real socket. Its `openai` dependency asks for Node >= 22:
 * test/engines-node22.test.ts runs this file on the Node 22 and 24 binaries.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  Agent,
  type Model,
  type ModelResponse,
  run,
  setTraceProcessors,
  setTracingDisabled,
  tool,
  Usage,
} from '@openai/agents';
import { z } from 'zod';
import { openAIAgentsProcessor } from '../../bridges/openai-agents.ts';
import { type BrokerFactory, memoryBroker } from '../../plugin/index.ts';
import { lifecycles, type ServedHub, serveHub } from '../helpers/engine-watch.ts';

const call = (callId: string, name: string, args: string) => ({
  type: 'function_call' as const,
  callId,
  name,
  arguments: args,
  status: 'completed' as const,
});
const say = (text: string) => ({
  type: 'message' as const,
  role: 'assistant' as const,
  status: 'completed' as const,
  content: [{ type: 'output_text' as const, text }],
});

/** Answers from a script, one response per model call; a thrown Error in the script is thrown. */
function scriptedModel(script: (ModelResponse['output'] | Error)[]): Model {
  let turn = 0;
  return {
    async getResponse() {
      const next = script[Math.min(turn++, script.length - 1)]!;
      if (next instanceof Error) throw next;
      return { usage: new Usage(), output: next };
    },
    // biome-ignore lint/correctness/useYield: streaming is not used by these runs
    async *getStreamedResponse() {
      throw new Error('not streamed here');
    },
  };
}

const lookup = tool({
  name: 'lookup_order',
  description: 'Finds an order',
  parameters: z.object({ order: z.string() }),
  execute: async ({ order }) => ({ order, status: 'shipped' }),
});
const refund = tool({
  name: 'refund',
  description: 'Refunds an order',
  parameters: z.object({}),
  execute: async (): Promise<string> => {
    throw new Error('refunds are closed');
  },
});

/** triage hands off to billing, which calls both tools, then answers. */
function agents() {
  const model = scriptedModel([
    [call('c1', 'transfer_to_billing', '{}')],
    [call('c2', 'lookup_order', '{"order":"A-7"}'), call('c3', 'refund', '{}')],
    [say('Order A-7 has shipped.')],
  ]);
  const billing = new Agent({ name: 'billing', instructions: 'billing', model, tools: [lookup, refund] });
  return new Agent({ name: 'triage', instructions: 'triage', model, handoffs: [billing] });
}

describe('hono-agent-ws/openai-agents', () => {
  let served: ServedHub;
  before(async () => {
    served = await serveHub({ batchInterval: 20 });
    // Tests may run with NODE_ENV=test, under which the SDK turns tracing off by default.
    setTracingDisabled(false);
  });
  after(async () => {
    setTraceProcessors([]);
    await served.close();
  });

  it('agent runs, tool calls and the handoff are tasks; the run is the status; the result is the same', async () => {
    setTraceProcessors([]);
    const plain = await run(agents(), 'Where is my order A-7?');
    const watcher = await served.watch('oa-1');
    const processor = openAIAgentsProcessor(served.hub, {
      agentId: (trace) => (trace.groupId === 'oa-1' ? 'oa-1' : undefined),
    });
    setTraceProcessors([processor]);
    // One `Runner` option: the trace's group id, which `agentId` reads.
    const { Runner } = await import('@openai/agents');
    const bridged = await new Runner({ groupId: 'oa-1' }).run(agents(), 'Where is my order A-7?');
    assert.equal(bridged.finalOutput, plain.finalOutput);
    await watcher.untilStatus('idle');
    const tasks = lifecycles(watcher);
    const byKind = (prefix: string) => [...tasks.entries()].filter(([id]) => id.startsWith(prefix));
    assert.deepEqual(
      byKind('agent:').map(([id, list]) => [id.split(':')[1], list.at(-1)!.status]),
      [
        ['triage', 'completed'],
        ['billing', 'completed'],
      ],
    );
    const [lookupTask] = byKind('tool:lookup_order');
    assert.deepEqual(lookupTask![1].at(-1)!.result, { order: 'A-7', status: 'shipped' });
    const [refundTask] = byKind('tool:refund');
    assert.equal(refundTask![1].at(-1)!.status, 'failed');
    assert.match(refundTask![1].at(-1)!.error!, /Error running tool/);
    const [handoff] = byKind('handoff:');
    assert.equal(handoff![1].at(-1)!.message, 'triage -> billing');
    assert.equal(watcher.statuses()[0], 'running');
    assert.equal(processor.openTraces, 0);
  });

  it('a model that throws: the same error reaches the app, the agent task and the status fail', async () => {
    const watcher = await served.watch('oa-2');
    setTraceProcessors([openAIAgentsProcessor(served.hub, { agentId: () => 'oa-2' })]);
    const broken = new Agent({ name: 'solo', instructions: 'x', model: scriptedModel([new Error('model down')]) });
    await assert.rejects(run(broken, 'hi'), /model down/);
    await watcher.untilStatus('failed');
    const [agentTask] = [...lifecycles(watcher).values()];
    assert.equal(agentTask!.at(-1)!.status, 'failed');
    assert.match(agentTask!.at(-1)!.error!, /model down/);
  });

  it('a broker outage never breaks a run: the same output, every refused update counted by the hub', async () => {
    const down: BrokerFactory = (context) => ({
      ...memoryBroker()(context),
      publish: () => {
        throw new Error('broker down');
      },
    });
    const outage = await serveHub({ broker: down });
    try {
      setTraceProcessors([openAIAgentsProcessor(outage.hub, { agentId: () => 'oa-3' })]);
      const output = await run(agents(), 'Where is my order A-7?');
      assert.equal(output.finalOutput, 'Order A-7 has shipped.');
      assert.ok(outage.hub.stats().errors_by_kind.broker_error >= 8);
    } finally {
      await outage.close();
    }
  });

  it('agentId decides: undefined leaves a trace out, a throw or a bad id is counted as refused', async () => {
    const before = served.hub.stats().updates_published;
    const skip = openAIAgentsProcessor(served.hub, { agentId: () => undefined });
    setTraceProcessors([skip]);
    await run(agents(), 'x');
    assert.equal(served.hub.stats().updates_published, before);
    const bad = openAIAgentsProcessor(served.hub, { agentId: () => 'not an id' });
    setTraceProcessors([bad]);
    const output = await run(agents(), 'x');
    assert.equal(output.finalOutput, 'Order A-7 has shipped.');
    assert.equal(bad.refusedTraces, 1);
    assert.equal(served.hub.stats().updates_published, before);
    assert.throws(() => openAIAgentsProcessor(served.hub, {} as never), /agentId must be a function/);
  });
});
