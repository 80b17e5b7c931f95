/**
 * `hono-agent-ws/openai-agents`: live progress of every OpenAI Agents JS run, in one added line:
 *
 * ```ts
 * import { addTraceProcessor } from '@openai/agents';
 * import { openAIAgentsProcessor } from 'hono-agent-ws/openai-agents';
 * addTraceProcessor(openAIAgentsProcessor(hub, { agentId: (trace) => trace.groupId ?? 'assistant' }));
 * ```
 *
 * A trace processor: it sees each run's trace (the agent id chosen from it by `agentId`) and
 * maps agent runs, tool calls and handoffs to tasks, the run to the agent's status (`running`,
 * then `idle` or `failed`). docs/engines/openai-agents.md has the whole mapping and the limits.
 *
 * @module
 */
import type { Span, SpanData, Trace, TracingProcessor } from '@openai/agents';
import type { AgentHandle, AgentHub } from '../plugin/index.ts';
import { type BridgeOptions, bridgeAgent, guard, OpenTasks, taskIdOf } from './shared.ts';

/** Options of `openAIAgentsProcessor`. */
export interface OpenAIAgentsProcessorOptions extends BridgeOptions {
  /**
   * The agent a trace (one run, or several inside `withTrace`) reports to, from the trace's
   * `name` (the run's `workflowName`), `groupId` or `metadata` (`traceMetadata`); `undefined`
   * leaves that trace out.
   */
  agentId: (trace: Trace) => string | undefined;
}

/** One trace being followed. */
interface FollowedTrace {
  readonly agent: AgentHandle;
  readonly tasks: OpenTasks;
  /** Why the run failed, once a run-level span reported an error. */
  failure: string | undefined;
}

/** A span's error as one line: its message, and the detail the SDK put in `data.error`. */
const spanErrorText = (error: { message: string; data?: Record<string, unknown> }): string => {
  const detail = error.data?.error;
  return typeof detail === 'string' && detail !== '' ? `${error.message}: ${detail}` : error.message;
};

/** A tool's output as the trace has it (a string), as JSON when it is JSON. */
const toolOutput = (output: string): unknown => {
  try {
    return JSON.parse(output);
  } catch {
    return output;
  }
};

/**
 * The trace processor `openAIAgentsProcessor` returns.
 */
export class OpenAIAgentsHubProcessor implements TracingProcessor {
  readonly #hub: AgentHub;
  readonly #options: OpenAIAgentsProcessorOptions;
  readonly #traces = new Map<string, FollowedTrace>();
  #refused = 0;

  constructor(hub: AgentHub, options: OpenAIAgentsProcessorOptions) {
    if (typeof options?.agentId !== 'function')
      throw new TypeError('openAIAgentsProcessor: options.agentId must be a function');
    this.#hub = hub;
    this.#options = options;
  }

  /**
   * Traces left out because `agentId` threw or gave an invalid agent id: nothing else reports
   * them, having no agent to count them against.
   */
  get refusedTraces(): number {
    return this.#refused;
  }

  /** Traces being followed now. */
  get openTraces(): number {
    return this.#traces.size;
  }

  async onTraceStart(trace: Trace): Promise<void> {
    let agent: AgentHandle;
    try {
      const agentId = this.#options.agentId(trace);
      if (agentId === undefined) return;
      agent = bridgeAgent(this.#hub, agentId, this.#options);
    } catch {
      this.#refused++;
      return;
    }
    guard(agent, 'bridge:openai-agents', () => {
      this.#traces.set(trace.traceId, { agent, tasks: new OpenTasks(agent), failure: undefined });
      void agent.status('running', { state: 'running', message: trace.name });
    });
  }

  async onTraceEnd(trace: Trace): Promise<void> {
    this.#end(trace.traceId);
  }

  /**
   * The run ended: at the end of its top `task` span, which the SDK ends even when the run
   * throws (the trace itself is then left open), or else at the end of the trace.
   */
  #end(traceId: string): void {
    const followed = this.#traces.get(traceId);
    if (!followed) return;
    this.#traces.delete(traceId);
    guard(followed.agent, 'bridge:openai-agents', () => {
      const { agent, tasks, failure } = followed;
      for (const task of tasks.drain()) {
        if (failure === undefined) void task.complete(undefined, 'trace ended');
        else void task.fail(failure);
      }
      if (failure === undefined) void agent.status('idle');
      else void agent.status('failed', { state: 'failed', message: failure.slice(0, 8192) });
    });
  }

  async onSpanStart(span: Span<SpanData>): Promise<void> {
    const followed = this.#traces.get(span.traceId);
    if (!followed) return;
    guard(followed.agent, 'bridge:openai-agents', () => {
      const { agent, tasks } = followed;
      const data = span.spanData;
      if (data.type === 'agent') {
        const task = tasks.start(span.spanId, taskIdOf(`agent:${data.name}`, span.spanId), 'started');
        void agent.status('running', { state: 'agent', task_id: task.taskId, message: data.name });
      } else if (data.type === 'function') {
        tasks.start(span.spanId, taskIdOf(`tool:${data.name}`, span.spanId), 'started');
      } else if (data.type === 'turn') {
        void agent.status('running', { state: 'turn', message: `${data.agent_name}: turn ${data.turn}` });
      }
    });
  }

  async onSpanEnd(span: Span<SpanData>): Promise<void> {
    const followed = this.#traces.get(span.traceId);
    if (!followed) return;
    guard(followed.agent, 'bridge:openai-agents', () => {
      const { agent, tasks } = followed;
      const data = span.spanData;
      const error = span.error;
      if (data.type === 'agent' || data.type === 'function') {
        const task = tasks.take(span.spanId);
        if (error) void task?.fail(spanErrorText(error));
        else void task?.complete(data.type === 'function' ? toolOutput(data.output) : undefined);
        // A failed tool is reported to the model and the run goes on; a failed agent fails the run.
        if (error && data.type === 'agent') followed.failure ??= spanErrorText(error);
      } else if (data.type === 'handoff') {
        const route = `${data.from_agent ?? '?'} -> ${data.to_agent ?? '?'}`;
        const task = agent.task(taskIdOf(`handoff:${route}`, span.spanId));
        if (error) void task.fail(spanErrorText(error));
        else void task.complete(undefined, route);
      } else if (data.type === 'task') {
        if (error) followed.failure ??= spanErrorText(error);
        if (span.parentId === null) this.#end(span.traceId);
      }
    });
  }

  async shutdown(): Promise<void> {
    this.#traces.clear();
  }

  async forceFlush(): Promise<void> {}
}

/**
 * A trace processor that reports OpenAI Agents runs to the hub: pass it to `addTraceProcessor`
 * (beside the SDK's own exporter) or `setTraceProcessors`. Tracing must be on: the SDK turns it
 * off under `NODE_ENV=test` and with `OPENAI_AGENTS_DISABLE_TRACING`; `setTracingDisabled(false)`
 * turns it back on. Nothing it does changes a run: it never throws into it, and a refused update
 * is counted in the hub's stats (`internal_error`) and logged.
 *
 * @param hub The hub.
 * @param options See `OpenAIAgentsProcessorOptions`; `agentId` is required.
 *
 * @returns The processor; one for the process is enough.
 *
 * @throws {TypeError} When `options.agentId` is not a function.
 */
export function openAIAgentsProcessor(hub: AgentHub, options: OpenAIAgentsProcessorOptions): OpenAIAgentsHubProcessor {
  return new OpenAIAgentsHubProcessor(hub, options);
}
