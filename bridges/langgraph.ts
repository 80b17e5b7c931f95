/**
 * `hono-agent-ws/langgraph`: live progress of a LangGraph.js run, in one added line:
 *
 * ```ts
 * import { langGraphCallbacks } from 'hono-agent-ws/langgraph';
 * const output = await graph.invoke(input, { callbacks: [langGraphCallbacks(hub, 'research-agent')] });
 * ```
 *
 * Each node run is a task (`<node>:<end of its run id>`) that starts at 0, follows the node's custom
 * `progress` events (`dispatchCustomEvent('progress', { progress, message }, config)`), and
 * completes with the node's output or fails with its error. The agent's status follows the
 * run: `running`, then `idle`, `failed`, or `interrupted` (a node called `interrupt()`). docs/engines/langgraph.md has the
 * whole mapping and the limits.
 *
 * @module
 */
import { BaseCallbackHandler } from '@langchain/core/callbacks/base';
import type { AgentHandle, AgentHub, TaskHandle } from '../plugin/index.ts';
import { type BridgeOptions, bridgeAgent, guard, taskIdOf } from './shared.ts';

/** Options of `langGraphCallbacks`. */
export interface LangGraphCallbacksOptions extends BridgeOptions {
  /**
   * A task for the whole run: it starts with the graph and completes with the graph's output
   * (or fails with its error). Name a new one for each run.
   */
  taskId?: string;
  /** The name of the custom event that carries `{ progress, message }`. Default `progress`. */
  progressEvent?: string;
}

/** The custom event's data: progress in percent, and an optional message. */
export interface LangGraphProgress {
  progress: number;
  message?: string;
}

/** One run LangChain reported (the graph, a node, or anything inside one). */
interface TrackedRun {
  readonly parent: TrackedRun | undefined;
  /** The node it runs in (`metadata.langgraph_node`), if any. */
  readonly node: string | undefined;
  /** The node's task, for the run of the node itself. */
  readonly task: TaskHandle | undefined;
  /** The outermost run this handler saw start: the graph, or the chain around it. */
  readonly root: boolean;
}

/** LangGraph's interrupts (human in the loop) end a node without it failing. */
const INTERRUPTS = new Set(['GraphInterrupt', 'NodeInterrupt']);

/** LangChain messages as a dashboard wants them: their type and content. */
const replaceMessage = (value: object): unknown => {
  const message = value as { lc_namespace?: unknown; content?: unknown; getType?: () => string; type?: unknown };
  if (!Array.isArray(message.lc_namespace) || !('content' in message) || typeof message.getType !== 'function')
    return undefined;
  const { tool_calls: toolCalls, name } = value as { tool_calls?: unknown[]; name?: unknown };
  return {
    type: typeof message.type === 'string' ? message.type : message.getType(),
    content: message.content,
    ...(typeof name === 'string' ? { name } : {}),
    ...(Array.isArray(toolCalls) && toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
  };
};

/**
 * The LangChain callback handler `langGraphCallbacks` returns.
 */
export class LangGraphHubHandler extends BaseCallbackHandler {
  override name = 'hono-agent-ws';
  /** The agent the run reports to. */
  readonly agent: AgentHandle;
  readonly #options: LangGraphCallbacksOptions;
  readonly #runs = new Map<string, TrackedRun>();
  #wholeRun: TaskHandle | undefined;
  /** A node of the current run was interrupted: the run ends normally, but waits for input. */
  #interrupted = false;

  constructor(hub: AgentHub, agentId: string, options: LangGraphCallbacksOptions = {}) {
    // Awaited: the handler returns at once (it never waits for the broker), and the run's last
    // updates are published before `invoke` returns.
    super({ _awaitHandler: true, ignoreLLM: true, ignoreRetriever: true, ignoreAgent: true });
    this.agent = bridgeAgent(hub, agentId, options, replaceMessage);
    this.#options = options;
  }

  /*
   * LangChain's CallbackManager calls `handleChainStart(chain, inputs, runId, parentRunId, tags,
   * metadata, runType, runName, extra)` (@langchain/core 1.x, callbacks/manager.js), while its
   * declaration names them `(chain, inputs, runId, runType, tags, metadata, runName,
   * parentRunId)`: the arguments are read in the order the manager passes them; the tests hold
   * this to the real engine.
   */
  override handleChainStart(_chain: unknown, _inputs: unknown, runId: string, ...rest: unknown[]): void {
    guard(this.agent, 'bridge:langgraph', () => {
      const [parentRunId, tags, metadata, , runName] = rest as [
        string | undefined,
        string[] | undefined,
        Record<string, unknown> | undefined,
        string | undefined,
        string | undefined,
      ];
      const parent = parentRunId === undefined ? undefined : this.#runs.get(parentRunId);
      const node = typeof metadata?.langgraph_node === 'string' ? metadata.langgraph_node : parent?.node;
      const root = parent === undefined;
      let task: TaskHandle | undefined;
      if (root) this.#startRun();
      else if (
        node !== undefined &&
        runName === node &&
        parent.node !== node &&
        !tags?.includes('langsmith:hidden') &&
        node !== '__start__'
      ) {
        // The run id's random end: short in a dashboard, and still unique per node run.
        task = this.agent.task(taskIdOf(node, runId.slice(-12)));
        void task.progress(0, 'started');
        void this.agent.status('running', { state: 'executing', task_id: task.taskId, message: node });
      }
      this.#runs.set(runId, { parent, node, task, root });
    });
  }

  override handleChainEnd(outputs: unknown, runId: string): void {
    guard(this.agent, 'bridge:langgraph', () => {
      const run = this.#runs.get(runId);
      this.#runs.delete(runId);
      if (run?.task) void run.task.complete(outputs);
      if (run?.root) this.#endRun(outputs);
    });
  }

  override handleChainError(error: unknown, runId: string): void {
    guard(this.agent, 'bridge:langgraph', () => {
      const run = this.#runs.get(runId);
      this.#runs.delete(runId);
      const interrupted = error instanceof Error && INTERRUPTS.has(error.name);
      if (interrupted) this.#interrupted = true;
      if (run?.task) {
        if (interrupted) void run.task.complete(undefined, 'interrupted');
        else void run.task.fail(error);
      }
      if (run?.root) this.#failRun(error, interrupted);
    });
  }

  // Tools and custom events inside a node are found through their parents.
  override handleToolStart(_tool: unknown, _input: string, runId: string, parentRunId?: string): void {
    guard(this.agent, 'bridge:langgraph', () => {
      const parent = parentRunId === undefined ? undefined : this.#runs.get(parentRunId);
      if (parent) this.#runs.set(runId, { parent, node: parent.node, task: undefined, root: false });
    });
  }

  override handleToolEnd(_output: unknown, runId: string): void {
    this.#runs.delete(runId);
  }

  override handleToolError(_error: unknown, runId: string): void {
    this.#runs.delete(runId);
  }

  override handleCustomEvent(eventName: string, data: unknown, runId: string): void {
    guard(this.agent, 'bridge:langgraph', () => {
      if (eventName !== (this.#options.progressEvent ?? 'progress')) return;
      const { progress, message } = (data ?? {}) as Partial<LangGraphProgress>;
      let run = this.#runs.get(runId);
      while (run && !run.task) run = run.parent;
      const task = run?.task ?? this.#wholeRun;
      if (!task) return;
      void task.progress(progress as number, typeof message === 'string' ? message : undefined);
    });
  }

  #startRun(): void {
    const { taskId } = this.#options;
    if (taskId !== undefined) {
      this.#wholeRun = this.agent.task(taskId);
      void this.#wholeRun.progress(0, 'started');
    }
    void this.agent.status('running', { state: 'running', ...(taskId === undefined ? {} : { task_id: taskId }) });
  }

  #endRun(outputs: unknown): void {
    const interrupted = this.#interrupted;
    this.#interrupted = false;
    void this.#wholeRun?.complete(outputs, interrupted ? 'interrupted' : undefined);
    this.#wholeRun = undefined;
    // An interrupted graph returns normally (its state says `__interrupt__`): it waits for input.
    if (interrupted) void this.agent.status('interrupted', { state: 'interrupted', message: 'waiting for input' });
    else void this.agent.status('idle');
  }

  #failRun(error: unknown, interrupted: boolean): void {
    if (interrupted) {
      void this.#wholeRun?.complete(undefined, 'interrupted');
      this.#wholeRun = undefined;
      void this.agent.status('interrupted');
      return;
    }
    void this.#wholeRun?.fail(error);
    this.#wholeRun = undefined;
    const message = error instanceof Error ? error.message : String(error);
    void this.agent.status('failed', { state: 'failed', message: message.slice(0, 8192) });
  }
}

/**
 * A LangChain callback handler that reports a LangGraph run to the hub: pass it as `callbacks`
 * to `graph.invoke`, `graph.stream` or `graph.streamEvents`. Nothing it does changes the run:
 * it never throws into it, and a refused update is counted in the hub's stats
 * (`internal_error`) and logged.
 *
 * @param hub The hub.
 * @param agentId The agent the run reports to.
 * @param options See `LangGraphCallbacksOptions`.
 *
 * @returns The handler; one per run.
 *
 * @throws {InvalidUpdateError} When `agentId` is invalid.
 */
export function langGraphCallbacks(
  hub: AgentHub,
  agentId: string,
  options: LangGraphCallbacksOptions = {},
): LangGraphHubHandler {
  return new LangGraphHubHandler(hub, agentId, options);
}
