/**
 * `hono-agent-ws/mastra`: live progress of a Mastra workflow run, in one added line:
 *
 * ```ts
 * import { watchMastraRun } from 'hono-agent-ws/mastra';
 * const run = await workflow.createRun();
 * watchMastraRun(hub, 'etl-agent', run);
 * const stream = run.stream({ inputData }); // read as before
 * ```
 *
 * Each step run is a task (`<step id>:<step call id>`): started, a `foreach` step's
 * `completedCount/totalCount` as progress, completed with its output or failed with its error.
 * The run's status is the agent's: `running`, then `idle`, `failed`, `suspended`, `canceled`.
 * The bridge listens beside the app (`run.watch`): it never reads the stream the app reads.
 * docs/engines/mastra.md has the whole mapping and the limits.
 *
 * @module
 */
import type { AgentHub, TaskHandle } from '../plugin/index.ts';
import { type BridgeOptions, bridgeAgent, guard, OpenTasks, taskIdOf } from './shared.ts';

/** An event of a Mastra workflow run, as `run.watch` hands it over. */
export interface MastraWatchEvent {
  type: string;
  payload?: Record<string, unknown>;
  data?: unknown;
}

/** What the bridge needs of a Mastra workflow `Run` (`await workflow.createRun()`). */
export interface MastraRunLike {
  readonly runId: string;
  /** Listens to the run's events; returns the unsubscribe. */
  watch(listener: (event: MastraWatchEvent) => void | Promise<void>): () => void;
  /** Set by `run.stream()` and `run.resumeStream()`: its `result` settles when the run ends. */
  readonly streamOutput?: { readonly result: PromiseLike<unknown> } | undefined;
}

/** Options of `watchMastraRun`. */
export interface WatchMastraRunOptions extends BridgeOptions {
  /** A task for the whole run, completed with the workflow's result (or failed with its error). */
  taskId?: string;
  /**
   * The promise `run.start()` (or `run.resume()`) returned, when the app does not stream: the
   * bridge learns the run's end from it. With `run.stream()`, the stream's own `result` is used.
   */
  result?: PromiseLike<unknown>;
}

/** How the run ended, as `done` reports it. */
export interface MastraRunOutcome {
  /** The workflow's status (`success`, `failed`, `canceled`, `tripwire`, ...), or `stopped` after `stop()`. */
  readonly status: string;
}

/** What `watchMastraRun` returns. */
export interface MastraRunWatch {
  /** Settles (never rejects) when the run ended, or when `stop()` was called. */
  readonly done: Promise<MastraRunOutcome>;
  /** Stops following the run; publishes nothing more. */
  stop(): void;
}

/** Workflow statuses after which the run can go on (resumed). */
const PAUSED = new Set(['suspended', 'paused', 'waiting']);

/**
 * Follows a Mastra workflow run and reports it to the hub: each step a task, the run's status the
 * agent's. Call it before (or right after, in the same tick as) `run.stream()` or `run.start()`.
 * Nothing it does changes the run: it listens beside the app, never throws into the run, and a
 * refused update is counted in the hub's stats (`internal_error`) and logged.
 *
 * @param hub The hub.
 * @param agentId The agent the run reports to.
 * @param run The run, from `await workflow.createRun()`.
 * @param options See `WatchMastraRunOptions`.
 *
 * @returns `done` and `stop`.
 *
 * @throws {InvalidUpdateError} When `agentId` is invalid.
 */
export function watchMastraRun(
  hub: AgentHub,
  agentId: string,
  run: MastraRunLike,
  options: WatchMastraRunOptions = {},
): MastraRunWatch {
  const agent = bridgeAgent(hub, agentId, options);
  const steps = new OpenTasks(agent);
  const operation = 'bridge:mastra';
  /** The latest open task's key of each step id (a `foreach` step's events carry only its id). */
  const keyOfStep = new Map<string, string>();
  /** Starts of each key so far, so a step run again in a loop gets a task id of its own. */
  const starts = new Map<string, number>();
  let whole: TaskHandle | undefined;
  let started = false;
  let following = true;
  let hooked: PromiseLike<unknown> | undefined;
  let settle: (outcome: MastraRunOutcome) => void = () => {};
  const done = new Promise<MastraRunOutcome>((resolve) => {
    settle = resolve;
  });

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

  const stepOf = (payload: Record<string, unknown>): TaskHandle | undefined => {
    const id = String(payload.id ?? payload.stepName ?? '');
    const key = typeof payload.stepCallId === 'string' ? payload.stepCallId : keyOfStep.get(id);
    return key === undefined ? undefined : steps.get(key);
  };
  const takeStep = (payload: Record<string, unknown>): TaskHandle | undefined => {
    const id = String(payload.id ?? '');
    const key = typeof payload.stepCallId === 'string' ? payload.stepCallId : keyOfStep.get(id);
    if (key === undefined) return undefined;
    if (keyOfStep.get(id) === key) keyOfStep.delete(id);
    return steps.take(key);
  };

  const onEvent = (event: MastraWatchEvent) => {
    if (!following) return;
    start();
    hookEnd();
    const payload = (event.payload ?? {}) as Record<string, unknown>;
    switch (event.type) {
      case 'workflow-step-start': {
        const id = String(payload.id ?? 'step');
        const key = typeof payload.stepCallId === 'string' ? payload.stepCallId : `${id}#${run.runId}`;
        const count = (starts.get(key) ?? 0) + 1;
        starts.set(key, count);
        const suffix = typeof payload.stepCallId === 'string' ? payload.stepCallId : run.runId;
        const task = steps.start(key, taskIdOf(id, count > 1 ? `${suffix}:${count}` : suffix), 'started');
        keyOfStep.set(id, key);
        void agent.status('running', { state: 'step', task_id: task.taskId, message: id });
        return;
      }
      case 'workflow-step-progress': {
        const { completedCount, totalCount } = payload;
        if (typeof completedCount !== 'number' || typeof totalCount !== 'number' || totalCount <= 0) return;
        const percent = Math.min(100, Math.max(0, Math.round((100 * completedCount) / totalCount)));
        void stepOf(payload)?.progress(percent, `${completedCount}/${totalCount}`);
        return;
      }
      case 'workflow-step-output': {
        // `writer.write({ progress, message })` inside a step: its progress.
        const output = payload.output as { progress?: unknown; message?: unknown } | undefined;
        if (typeof output?.progress !== 'number') return;
        void stepOf({ id: payload.stepName ?? payload.id })?.progress(
          output.progress,
          typeof output.message === 'string' ? output.message : undefined,
        );
        return;
      }
      case 'workflow-step-result': {
        const status = String(payload.status ?? '');
        if (PAUSED.has(status)) {
          void stepOf(payload)?.progress(0, status);
          void agent.status(status, { state: status, message: String(payload.id ?? '') });
          return;
        }
        const task = takeStep(payload);
        if (!task) return;
        if (status === 'success') void task.complete(payload.output);
        else if (status === 'failed' || status === 'tripwire') void task.fail(payload.error ?? status);
        else void task.complete(payload.output, status);
        return;
      }
      case 'workflow-canceled':
        end({ status: 'canceled' });
        return;
      case 'workflow-paused':
        void agent.status('paused', { state: 'paused' });
        return;
    }
  };

  /** The run ended (or paused) with `result`, a workflow result (`{ status, result, error }`). */
  const end = (result: unknown) => {
    if (!following) return;
    start();
    const {
      status = 'success',
      result: output,
      error,
    } = (result ?? {}) as {
      status?: string;
      result?: unknown;
      error?: unknown;
    };
    if (PAUSED.has(status)) {
      // Resumable: keep following; a resumed stream is hooked on its first event.
      void whole?.progress(0, status);
      void agent.status(status, { state: status });
      return;
    }
    following = false;
    unwatch();
    const failed = status === 'failed' || status === 'tripwire' || status === 'canceled';
    for (const task of steps.drain()) {
      if (failed) void task.fail(error ?? status);
      else void task.complete(undefined, status);
    }
    if (failed) {
      void whole?.fail(error ?? status);
      const message = errorMessage(error) ?? status;
      void agent.status(status === 'canceled' ? 'canceled' : 'failed', { state: status, message });
    } else {
      void whole?.complete(output, status === 'success' ? undefined : status);
      void agent.status('idle');
    }
    settle({ status });
  };

  /** Learns the end from the run's stream (or `options.result`) once there is one. */
  const hookEnd = () => {
    const source = options.result ?? run.streamOutput?.result;
    if (source === undefined || source === hooked) return;
    hooked = source;
    Promise.resolve(source).then(
      (result) => guard(agent, operation, () => end(result)),
      (error: unknown) => guard(agent, operation, () => end({ status: 'failed', error })),
    );
  };

  const unwatch = run.watch((event) => guard(agent, operation, () => onEvent(event)));
  guard(agent, operation, hookEnd);

  return {
    done,
    stop() {
      if (!following) return;
      following = false;
      unwatch();
      settle({ status: 'stopped' });
    },
  };
}

/** The message of an error or of an error-like object, if it has one. */
const errorMessage = (error: unknown): string | undefined => {
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message.slice(0, 8192) : undefined;
};
