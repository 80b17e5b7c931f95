import type { AgentUpdate, StatusUpdate, TaskUpdate } from './schemas.ts';

/**
 * Task statuses that end a task (compared case-insensitively): a snapshot keeps only the most
 * recent tasks in one of these, and every task in any other.
 */
export const FINAL_TASK_STATUSES: readonly string[] = [
  'completed',
  'succeeded',
  'done',
  'failed',
  'error',
  'cancelled',
  'canceled',
  'timed_out',
];

/** Tasks not yet ended a snapshot holds; past this, the least recently updated are forgotten. */
export const MAX_SNAPSHOT_OPEN_TASKS = 500;

/** Ended tasks a snapshot holds: the most recent ones. */
export const MAX_SNAPSHOT_FINAL_TASKS = 20;

const FINAL = new Set(FINAL_TASK_STATUSES);

/** Verdicts of the statuses seen so far (a few distinct ones in practice), to skip `toLowerCase`. */
const verdicts = new Map<string, boolean>();
/**
 * Whether a task update ends its task.
 *
 * @param update The task update.
 *
 * @returns `true` for a status in `FINAL_TASK_STATUSES`.
 */
export const isFinalTask = (update: Pick<TaskUpdate, 'status'>): boolean => {
  const status = update.status;
  let final = verdicts.get(status);
  if (final === undefined) {
    final = FINAL.has(status.toLowerCase());
    // Bounded: statuses are free text of publishers.
    if (verdicts.size >= 256) verdicts.clear();
    verdicts.set(status, final);
  }
  return final;
};

/**
 * An agent's current state, as a snapshot shows it: its latest status, and the latest update of
 * its open tasks and its most recent ended ones. Maps keep the order tasks were last updated in.
 *
 * @internal
 */
export interface AgentState {
  status: StatusUpdate | null;
  readonly open: Map<string, TaskUpdate>;
  readonly ended: Map<string, TaskUpdate>;
}

/**
 * Creates an empty state.
 *
 * @internal
 */
export const createAgentState = (): AgentState => ({ status: null, open: new Map(), ended: new Map() });

/**
 * Moves a state forward by one update; bounded by `MAX_SNAPSHOT_OPEN_TASKS` and
 * `MAX_SNAPSHOT_FINAL_TASKS`.
 *
 * @internal
 */
export function applyUpdate(state: AgentState, update: AgentUpdate): void {
  if (update.type === 'status_update') {
    state.status = update;
    return;
  }
  const { task_id: id } = update;
  if (!state.open.delete(id)) state.ended.delete(id);
  if (isFinalTask(update)) {
    state.ended.set(id, update);
    if (state.ended.size > MAX_SNAPSHOT_FINAL_TASKS) state.ended.delete(state.ended.keys().next().value as string);
  } else {
    state.open.set(id, update);
    if (state.open.size > MAX_SNAPSHOT_OPEN_TASKS) state.open.delete(state.open.keys().next().value as string);
  }
}

/**
 * The tasks of a snapshot, oldest update first.
 *
 * @internal
 */
export const snapshotTasks = (state: AgentState): TaskUpdate[] =>
  [...state.open.values(), ...state.ended.values()].sort((a, b) => a.seq - b.seq);
