import * as v from 'valibot';
import {
  DEFAULT_MAX_RESULT_BYTES,
  type DisplayableOptions,
  MIN_MAX_RESULT_BYTES,
  toDisplayable,
} from './displayable.ts';
import { InvalidUpdateError } from './errors.ts';
import { AgentIdSchema, type StatusUpdateInput, TaskUpdateFieldsSchema, type TaskUpdateInput } from './schemas.ts';

/** What the agent is executing, as `status()` takes it (a `status_update`'s `execution_status`). */
export type ExecutionStatusInput = NonNullable<StatusUpdateInput['execution_status']>;

/**
 * Where a task is: `new` until its first update, `running` after `progress`, then `completed`
 * or `failed` for good.
 */
export type TaskState = 'new' | 'running' | 'completed' | 'failed';

/** The task statuses a task handle publishes; the last two end the task (`FINAL_TASK_STATUSES`). */
export const TASK_HANDLE_STATUSES = { running: 'running', completed: 'completed', failed: 'failed' } as const;

/**
 * Options of `hub.agent()`.
 */
export interface AgentHandleOptions {
  /**
   * Most bytes (UTF-8 JSON) of a `result` given to `complete`: a larger one is cut, with the
   * markers `toDisplayable` documents. At least 256. Default 16384.
   */
  maxResultBytes?: number;
  /**
   * `false` (default): a refused call rejects its promise, as `publishTask` does. `true`: no
   * call ever rejects, for code that must not be disturbed by its reporting (the engine bridges):
   * a refused update (`InvalidUpdateError`, a call after the task ended) is counted in the hub's
   * stats as `internal_error` and logged (`internal_error`, operation `agent_handle`, throttled);
   * a broker failure is counted and logged by the hub as `broker_error`, as for any publish; a
   * call after `hub.close()` is dropped silently.
   */
  contained?: boolean;
  /**
   * Turns an object the caller knows into a plainer value before a `result` is made displayable
   * (the LangGraph bridge turns LangChain messages into `{ type, content }`); `undefined` keeps
   * the object. See `DisplayableOptions.replace`.
   */
  replace?: (value: object) => unknown;
}

/**
 * One agent, for code that reports its work step by step: `hub.agent('agent-7')`. Each call is
 * one update, validated as `publishStatus` and `publishTask` validate.
 */
export interface AgentHandle {
  /** The agent's id. */
  readonly agentId: string;
  /**
   * Publishes the agent's status (`running`, `idle`, `failed`, ...), optionally with what it is
   * executing.
   *
   * @returns As `publishStatus`; with `contained`, never rejects.
   */
  status(status: string, executionStatus?: ExecutionStatusInput): Promise<void>;
  /**
   * A handle on one task of the agent. Nothing is published until its first call. The handle
   * holds the task's state: a second handle on the same id starts a new life of that task.
   *
   * @throws {InvalidUpdateError} When `taskId` is not 1 to 256 characters.
   */
  task(taskId: string): TaskHandle;
  /**
   * Counts and logs a failure of code reporting for this agent (a bridge's own mapping of an
   * engine's event) as a contained handle counts a refused update: `internal_error` in the
   * stats, an `internal_error` log entry with `operation` (default `bridge`), throttled.
   */
  report(error: unknown, operation?: string): void;
}

/**
 * One task of an agent: `progress` while it runs, then `complete` or `fail`, once. A call after
 * the end is refused: it rejects with `InvalidUpdateError` (with `contained`, it is counted and
 * logged instead), so the task never goes back to running.
 */
export interface TaskHandle {
  /** The task's id. */
  readonly taskId: string;
  /** Where the task is; it changes when a call is accepted, before the broker answers. */
  readonly state: TaskState;
  /**
   * Publishes `status: running` with `progress` (0 to 100) and an optional message.
   *
   * @returns As `publishTask`; rejects with `InvalidUpdateError` for a progress outside 0 to 100
   *   and after the task ended.
   */
  progress(progress: number, message?: string): Promise<void>;
  /**
   * Ends the task: `status: completed`, `progress: 100`, and `result` made displayable
   * (`toDisplayable`, bounded by `maxResultBytes` and the hub's `maxUpdateDepth`).
   *
   * @returns As `publishTask`; rejects with `InvalidUpdateError` after the task ended.
   */
  complete(result?: unknown, message?: string): Promise<void>;
  /**
   * Ends the task: `status: failed` with `error` as text (an `Error`'s message, with its name
   * when not plain `Error`), at the last progress published.
   *
   * @returns As `publishTask`; rejects with `InvalidUpdateError` after the task ended.
   */
  fail(error: unknown): Promise<void>;
}

/** What a handle needs of the hub. */
export interface AgentHandleHost {
  readonly options: { readonly maxUpdateDepth: number };
  publishStatus(agentId: string, update: StatusUpdateInput): Promise<void>;
  publishTask(agentId: string, update: TaskUpdateInput): Promise<void>;
}

/** The `maxLength` of a string schema's pipe: the schemas stay the one place the limits are written. */
const maxLengthOf = (schema: { readonly pipe?: readonly unknown[] }): number => {
  const action = schema.pipe?.find((item) => (item as { type?: string }).type === 'max_length') as
    | { requirement: number }
    | undefined;
  if (!action) throw new Error('hono-agent-ws: schema without max_length');
  return action.requirement;
};

/** Longest `message` and `error` of a task update. */
const MAX_TEXT = maxLengthOf(TaskUpdateFieldsSchema.entries.message.wrapped);
/** Longest `task_id`. */
const MAX_TASK_ID = maxLengthOf(TaskUpdateFieldsSchema.entries.task_id);

/** A text cut to what a task update carries, ending `…[+N chars]` when cut. */
export function boundText(text: string, max: number = MAX_TEXT): string {
  if (text.length <= max) return text;
  const marker = (left: number) => `…[+${left} chars]`;
  let keep = max - marker(text.length).length;
  if (/[\ud800-\udbff]/.test(text[keep - 1] as string)) keep--;
  return text.slice(0, keep) + marker(text.length - keep);
}

/**
 * An error as text: `message`, or `Name: message` for a named error (an `Error`, or an object
 * with a `message`); anything else as JSON, or as `String()` gives it. At most 8192 characters.
 */
export function errorText(error: unknown): string {
  if (error instanceof Error) {
    const message = error.message || String(error);
    return boundText(error.name && error.name !== 'Error' ? `${error.name}: ${message}` : message);
  }
  if (typeof error === 'string') return boundText(error);
  // An error that crossed a serialisation boundary (an engine's event): `{ name, message }`.
  const { name, message } = (typeof error === 'object' && error !== null ? error : {}) as {
    name?: unknown;
    message?: unknown;
  };
  if (typeof message === 'string' && message !== '')
    return boundText(typeof name === 'string' && name !== '' && name !== 'Error' ? `${name}: ${message}` : message);
  try {
    const json = JSON.stringify(error);
    if (typeof json === 'string') return boundText(json);
  } catch {}
  return boundText(String(error));
}

/** An `InvalidUpdateError` of one issue, worded as the schemas word theirs. */
const refusal = (what: string, message: string): InvalidUpdateError => {
  const failed = v.safeParse(
    v.custom(() => false, message),
    undefined,
  );
  return new InvalidUpdateError(what, failed.issues as [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]);
};

/**
 * Creates the handle `hub.agent()` returns.
 *
 * @param host The hub.
 * @param agentId The agent.
 * @param options See `AgentHandleOptions`.
 * @param failed Counts and logs a contained failure (the hub's `internal_error`).
 *
 * @throws {InvalidUpdateError} When `agentId` is invalid.
 * @throws {TypeError} When an option is invalid.
 *
 * @internal
 */
export function createAgentHandle(
  host: AgentHandleHost,
  agentId: string,
  options: AgentHandleOptions = {},
  failed: (operation: string, error: unknown) => void,
): AgentHandle {
  const id = v.safeParse(AgentIdSchema, agentId);
  if (!id.success) throw new InvalidUpdateError('agent id', id.issues);
  const maxResultBytes = options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
  if (!Number.isInteger(maxResultBytes) || maxResultBytes < MIN_MAX_RESULT_BYTES)
    throw new TypeError(`hub.agent: maxResultBytes must be a whole number >= ${MIN_MAX_RESULT_BYTES}`);
  const contained = options.contained === true;
  const bounds: DisplayableOptions = {
    maxBytes: maxResultBytes,
    maxDepth: host.options.maxUpdateDepth,
    ...(options.replace === undefined ? {} : { replace: options.replace }),
  };

  /** A refused call: rejected, or (contained) counted and logged. */
  const refuse = (error: InvalidUpdateError): Promise<void> => {
    if (!contained) return Promise.reject(error);
    failed('agent_handle', error);
    return Promise.resolve();
  };
  /** A publish's promise, as the handle's options want it. */
  const settle = (publishing: Promise<void>): Promise<void> => {
    if (!contained) return publishing;
    // A broker failure is already counted (`broker_error`) and logged by the hub; a closed hub
    // is the app shutting down: neither is counted twice.
    return publishing.then(undefined, (error: unknown) => {
      if (error instanceof InvalidUpdateError) failed('agent_handle', error);
    });
  };

  const task = (taskId: string): TaskHandle => {
    if (typeof taskId !== 'string' || taskId.length === 0 || taskId.length > MAX_TASK_ID)
      throw refusal('task update', `task_id must be 1 to ${MAX_TASK_ID} characters`);
    let state: TaskState = 'new';
    let last = 0;
    /** Moves the task to `next`, or refuses when it has ended. */
    const move = (next: TaskState): InvalidUpdateError | undefined => {
      if (state === 'completed' || state === 'failed')
        return refusal('task update', `task ${taskId} already ${state}: a task's final state cannot change`);
      state = next;
      return undefined;
    };
    return {
      taskId,
      get state() {
        return state;
      },
      progress(progress, message) {
        if (typeof progress !== 'number' || !Number.isFinite(progress) || progress < 0 || progress > 100)
          return refuse(refusal('task update', `progress must be a number from 0 to 100, got ${String(progress)}`));
        const ended = move('running');
        if (ended) return refuse(ended);
        last = progress;
        return settle(
          host.publishTask(agentId, {
            task_id: taskId,
            status: TASK_HANDLE_STATUSES.running,
            progress,
            ...(message === undefined ? {} : { message: boundText(String(message)) }),
          }),
        );
      },
      complete(result, message) {
        const ended = move('completed');
        if (ended) return refuse(ended);
        last = 100;
        const shown = result === undefined ? undefined : toDisplayable(result, bounds);
        return settle(
          host.publishTask(agentId, {
            task_id: taskId,
            status: TASK_HANDLE_STATUSES.completed,
            progress: 100,
            ...(message === undefined ? {} : { message: boundText(String(message)) }),
            ...(shown === undefined ? {} : { result: shown }),
          }),
        );
      },
      fail(error) {
        const ended = move('failed');
        if (ended) return refuse(ended);
        return settle(
          host.publishTask(agentId, {
            task_id: taskId,
            status: TASK_HANDLE_STATUSES.failed,
            progress: last,
            error: errorText(error),
          }),
        );
      },
    };
  };

  return {
    agentId,
    status(status, executionStatus) {
      return settle(
        host.publishStatus(agentId, {
          status,
          ...(executionStatus === undefined ? {} : { execution_status: executionStatus }),
        }),
      );
    },
    task,
    report(error, operation = 'bridge') {
      failed(operation, error);
    },
  };
}
