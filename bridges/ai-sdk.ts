/**
 * `hono-agent-ws/ai-sdk`: live progress of a Vercel AI SDK call, in one added line:
 *
 * ```ts
 * import { aiSdkCallbacks } from 'hono-agent-ws/ai-sdk';
 * const result = await generateText({ model, tools, prompt, ...aiSdkCallbacks(hub, 'support-bot') });
 * ```
 *
 * Each tool call is a task (`<tool>:<tool call id>`) completed with the tool's output or failed
 * with its error; the agent's status follows the call (`running`, the step it is at, then `idle`,
 * `failed` or `aborted`); `options.taskId` names a task for the whole call, completed with the
 * final text. The app's own callbacks go in `options`, under the same names: each is called
 * after the bridge's, with the same event, and its result is what the SDK gets.
 * docs/engines/ai-sdk.md has the whole mapping and the limits.
 *
 * @module
 */
import type { AgentHub, TaskHandle } from '../plugin/index.ts';
import { type BridgeOptions, bridgeAgent, guard, OpenTasks, taskIdOf } from './shared.ts';

/** The callback names of AI SDK 6, which AI SDK 7 still accepts on `generateText` and `streamText`. */
export const AI_SDK_6_CALLBACKS = [
  'experimental_onStart',
  'experimental_onStepStart',
  'experimental_onToolCallStart',
  'experimental_onToolCallFinish',
  'onStepFinish',
  'onFinish',
  'onError',
  'onAbort',
] as const;

/** The callback names of AI SDK 7 (its agents take only these). */
export const AI_SDK_7_CALLBACKS = [
  'onStart',
  'onStepStart',
  'onToolExecutionStart',
  'onToolExecutionEnd',
  'onStepEnd',
  'onEnd',
  'onError',
  'onAbort',
] as const;

/** A callback name of either version. */
export type AiSdkCallbackName = (typeof AI_SDK_6_CALLBACKS)[number] | (typeof AI_SDK_7_CALLBACKS)[number];

/** A callback as the SDK calls it: one event, maybe a promise. */
export type AiSdkCallback = (event: any) => unknown;

/** Options of `aiSdkCallbacks`; the app's own callbacks go here too, by name. */
export type AiSdkCallbacksOptions = BridgeOptions & {
  /** A task for the whole call: started with it, completed with the final text. */
  taskId?: string;
  /**
   * Which names to return: `6` (default) the AI SDK 6 names, which `generateText` and
   * `streamText` of AI SDK 7 still take; `7` the AI SDK 7 names (needed for a 7 `ToolLoopAgent`).
   */
  version?: 6 | 7;
} & { [Name in AiSdkCallbackName]?: AiSdkCallback };

/** What `aiSdkCallbacks` returns: the callbacks to spread into the SDK's options. */
export type AiSdkCallbacks = { [Name in AiSdkCallbackName]?: (event: any) => Promise<void> } & {
  /**
   * Reports a call that failed without a callback (`generateText` has no `onError`: it
   * rejects): fails the whole-call task and open tool tasks, and sets the agent `failed`. Not
   * enumerable, so spreading the callbacks does not pass it on.
   */
  readonly fail: (error: unknown) => void;
};

/** A tool call as the SDK reports it. */
interface ToolCallEvent {
  toolCall?: { toolCallId?: string; toolName?: string };
  // AI SDK 6
  success?: boolean;
  output?: unknown;
  error?: unknown;
  // AI SDK 7
  toolOutput?: { type?: string; output?: unknown; error?: unknown };
}

/**
 * The AI SDK's callbacks (step, tool call, finish, error), reporting the call to the hub: spread
 * them into `generateText`, `streamText` or an agent's options. Nothing they do changes the
 * call: the bridge's part never throws, and a refused update is counted in the hub's stats
 * (`internal_error`) and logged.
 *
 * @param hub The hub.
 * @param agentId The agent the call reports to.
 * @param options See `AiSdkCallbacksOptions`.
 *
 * @returns The callbacks; one set per call.
 *
 * @throws {InvalidUpdateError} When `agentId` is invalid.
 */
export function aiSdkCallbacks(hub: AgentHub, agentId: string, options: AiSdkCallbacksOptions = {}): AiSdkCallbacks {
  const agent = bridgeAgent(hub, agentId, options);
  const tools = new OpenTasks(agent);
  const operation = 'bridge:ai-sdk';
  let whole: TaskHandle | undefined;
  let started = false;
  let ended = false;

  const start = () => {
    if (started) return;
    started = true;
    if (options.taskId !== undefined) {
      whole = agent.task(options.taskId);
      void whole.progress(0, 'started');
    }
    void agent.status('running', {
      state: 'running',
      ...(options.taskId === undefined ? {} : { task_id: options.taskId }),
    });
  };
  const fail = (error: unknown, status = 'failed') => {
    if (ended) return;
    ended = true;
    for (const task of tools.drain()) void task.fail(error);
    void whole?.fail(error);
    const message = error instanceof Error ? error.message : String(error);
    void agent.status(status, { state: status, message: message.slice(0, 8192) });
  };

  const handlers = {
    start: () => start(),
    stepStart(event: { stepNumber?: number }) {
      start();
      const step = typeof event?.stepNumber === 'number' ? event.stepNumber + 1 : undefined;
      void agent.status('running', {
        state: 'step',
        ...(whole ? { task_id: whole.taskId } : {}),
        ...(step === undefined ? {} : { message: `step ${step}` }),
      });
    },
    toolStart(event: ToolCallEvent) {
      start();
      const { toolCallId = '', toolName = 'tool' } = event.toolCall ?? {};
      tools.start(toolCallId, taskIdOf(toolName, toolCallId), 'started');
    },
    toolEnd(event: ToolCallEvent) {
      const task = tools.take(event.toolCall?.toolCallId ?? '');
      if (!task) return;
      if (event.toolOutput !== undefined) {
        // AI SDK 7: the tool's output part.
        if (event.toolOutput.type === 'tool-error') void task.fail(event.toolOutput.error);
        else void task.complete(event.toolOutput.output);
      } else if (event.success === false) void task.fail(event.error);
      else void task.complete(event.output);
    },
    stepEnd() {},
    end(event: { text?: unknown; finishReason?: unknown }) {
      if (ended) return;
      ended = true;
      start();
      for (const task of tools.drain()) void task.complete(undefined, 'not finished when the call ended');
      void whole?.complete(event?.text, typeof event?.finishReason === 'string' ? event.finishReason : undefined);
      void agent.status('idle');
    },
    error(event: { error?: unknown }) {
      fail(event?.error);
    },
    abort() {
      fail(new Error('aborted'), 'aborted');
    },
  };

  const byName: Record<AiSdkCallbackName, (event: any) => void> = {
    experimental_onStart: handlers.start,
    onStart: handlers.start,
    experimental_onStepStart: handlers.stepStart,
    onStepStart: handlers.stepStart,
    experimental_onToolCallStart: handlers.toolStart,
    onToolExecutionStart: handlers.toolStart,
    experimental_onToolCallFinish: handlers.toolEnd,
    onToolExecutionEnd: handlers.toolEnd,
    onStepFinish: handlers.stepEnd,
    onStepEnd: handlers.stepEnd,
    onFinish: handlers.end,
    onEnd: handlers.end,
    onError: handlers.error,
    onAbort: handlers.abort,
  };

  const callbacks = {} as AiSdkCallbacks & Record<string, unknown>;
  for (const name of options.version === 7 ? AI_SDK_7_CALLBACKS : AI_SDK_6_CALLBACKS) {
    const own = options[name];
    const ours = byName[name];
    callbacks[name] = async (event: unknown) => {
      guard(agent, operation, () => ours(event));
      if (own) await own(event);
      // What the SDK does when no `onError` is given: log it, so adding the bridge hides nothing.
      else if (name === 'onError') console.error((event as { error?: unknown })?.error);
    };
  }
  Object.defineProperty(callbacks, 'fail', {
    value: (error: unknown) => guard(agent, operation, () => fail(error)),
    enumerable: false,
  });
  return callbacks;
}
