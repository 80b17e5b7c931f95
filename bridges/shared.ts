/**
 * What every engine bridge shares: a contained agent handle (nothing a bridge publishes can
 * reject into the engine's run), a guard around each engine callback, and task ids that fit.
 *
 * @module
 */
import type { AgentHandle, AgentHub, TaskHandle } from '../plugin/index.ts';

/** Options every bridge takes. */
export interface BridgeOptions {
  /**
   * Most bytes (UTF-8 JSON) of a task's `result`; a larger one is cut with the markers of
   * `toDisplayable`. Default 16384.
   */
  maxResultBytes?: number;
}

/** Longest `task_id` a task update carries (TaskUpdateFieldsSchema). */
const MAX_TASK_ID = 256;

/**
 * The contained handle a bridge publishes through: its calls never reject; what the hub refuses
 * is counted (`internal_error`) and logged by the hub (see `AgentHandleOptions.contained`).
 *
 * @throws {InvalidUpdateError} When `agentId` is invalid: when the bridge is made, before the
 *   engine runs.
 *
 * @internal
 */
export function bridgeAgent(
  hub: AgentHub,
  agentId: string,
  options: BridgeOptions = {},
  replace?: (value: object) => unknown,
): AgentHandle {
  return hub.agent(agentId, {
    contained: true,
    ...(options.maxResultBytes === undefined ? {} : { maxResultBytes: options.maxResultBytes }),
    ...(replace === undefined ? {} : { replace }),
  });
}

/**
 * Runs a bridge's mapping of one engine event; a throw (an event shaped otherwise than
 * expected) is counted and logged through `agent.report`, never passed to the engine.
 *
 * @internal
 */
export function guard(agent: AgentHandle, operation: string, map: () => void): void {
  try {
    map();
  } catch (error) {
    try {
      agent.report(error, operation);
    } catch {
      // Reporting is best effort; the engine's run comes first.
    }
  }
}

/**
 * A task id of `name` and `suffix` (`fetch:7f3c…`) within the 256 characters a task id may
 * have: the name is cut, the suffix that makes it unique is kept.
 *
 * @internal
 */
export function taskIdOf(name: string, suffix: string): string {
  const tail = suffix === '' ? '' : `:${suffix}`;
  const head = (name === '' ? 'task' : name).slice(0, Math.max(1, MAX_TASK_ID - tail.length));
  return (head + tail).slice(0, MAX_TASK_ID);
}

/**
 * A task of the bridge's agent by the engine's own id for it, so later events find it; forgotten
 * once it ends, so a long run holds only its open tasks.
 *
 * @internal
 */
export class OpenTasks {
  readonly #tasks = new Map<string, TaskHandle>();
  constructor(readonly agent: AgentHandle) {}
  /** Starts a task: `progress(0, message)`. */
  start(key: string, taskId: string, message?: string): TaskHandle {
    const task = this.agent.task(taskId);
    this.#tasks.set(key, task);
    void task.progress(0, message);
    return task;
  }
  get(key: string): TaskHandle | undefined {
    return this.#tasks.get(key);
  }
  /** Removes and returns the task, to end it. */
  take(key: string): TaskHandle | undefined {
    const task = this.#tasks.get(key);
    this.#tasks.delete(key);
    return task;
  }
  /** Every task still open, removed. */
  drain(): TaskHandle[] {
    const tasks = [...this.#tasks.values()];
    this.#tasks.clear();
    return tasks;
  }
  get size(): number {
    return this.#tasks.size;
  }
}
