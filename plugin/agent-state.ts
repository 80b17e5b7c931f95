import { heldBytes } from './encode.ts';
import type { AgentUpdate, TaskUpdate, UnsequencedUpdate } from './schemas.ts';

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

/**
 * Bytes each update a state holds counts besides its JSON and its task id: the entry, its slot
 * in a map, the string's header. Estimated for V8 on the generous side; test/memory.test.ts
 * checks that the heap after GC stays within what the limits count.
 */
export const HELD_UPDATE_OVERHEAD = 192;

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
 * A task update as a state keeps it when its `result` is too large to keep (over
 * `maxStateBytes`): every other field as it was, `result` left out and `result_omitted: true`.
 *
 * @param update The task update, numbered or not.
 *
 * @returns A copy without `result`.
 */
export function withoutResult<T extends TaskUpdate | Extract<UnsequencedUpdate, { type: 'task_update' }>>(
  update: T,
): T {
  const { result: _left, ...kept } = update;
  return { ...kept, result_omitted: true } as T;
}

/**
 * One update a state holds: its number and its wire JSON, one string shared with every queue,
 * history and frame that has the same update.
 *
 * @internal
 */
export interface HeldUpdate {
  readonly seq: number;
  /** The update's JSON; without its `result` (see `withoutResult`) when that was too large. */
  readonly json: string;
  /** What it counts for: `heldBytes` of the JSON, its task id, and `HELD_UPDATE_OVERHEAD`. */
  readonly bytes: number;
}

/**
 * An agent's current state, as a snapshot shows it: its latest status, and the latest update of
 * its open tasks and its most recent ended ones, kept as JSON (a parsed update can take many
 * times its JSON in memory). Maps keep the order tasks were last updated in.
 *
 * @internal
 */
export interface AgentState {
  status: HeldUpdate | null;
  readonly open: Map<string, HeldUpdate>;
  readonly ended: Map<string, HeldUpdate>;
  /** Bytes of every update held. */
  bytes: number;
  /** The newest update applied: never the one forgotten to make room. */
  newest: HeldUpdate | null;
}

/**
 * What applying one update cost the state besides the update itself.
 *
 * @internal
 */
export interface StateTrim {
  /** Older updates forgotten to stay within the agent's bytes. */
  readonly forgotten: number;
  /** Whether the update's `result` was left out (too large on its own). */
  readonly omitted: boolean;
}

/** Nothing trimmed: shared, so applying an update allocates nothing more. */
const UNTRIMMED: StateTrim = Object.freeze({ forgotten: 0, omitted: false });

/**
 * Creates an empty state.
 *
 * @internal
 */
export const createAgentState = (): AgentState => ({
  status: null,
  open: new Map(),
  ended: new Map(),
  bytes: 0,
  newest: null,
});

/**
 * Empties a state in place.
 *
 * @internal
 */
export function clearAgentState(state: AgentState): void {
  state.status = null;
  state.open.clear();
  state.ended.clear();
  state.bytes = 0;
  state.newest = null;
}

/**
 * Forgets the least recently updated entries of a state until it holds at most `limit` bytes:
 * ended tasks first, then open tasks, then the status; never the newest update.
 *
 * @returns How many entries were forgotten.
 *
 * @internal
 */
export function shrinkState(state: AgentState, limit: number): number {
  let forgotten = 0;
  for (const tasks of [state.ended, state.open]) {
    for (const [id, held] of tasks) {
      if (state.bytes <= limit) return forgotten;
      if (held === state.newest) continue;
      tasks.delete(id);
      state.bytes -= held.bytes;
      forgotten++;
    }
  }
  if (state.bytes > limit && state.status && state.status !== state.newest) {
    state.bytes -= state.status.bytes;
    state.status = null;
    forgotten++;
  }
  return forgotten;
}

/**
 * Moves a state forward by one update; bounded by `MAX_SNAPSHOT_OPEN_TASKS`,
 * `MAX_SNAPSHOT_FINAL_TASKS` and `maxBytes`: over it, the update's `result` is left out if the
 * update is too large on its own, then older entries go (see `shrinkState`).
 *
 * @param json The update's JSON, when the caller has it already (one string for every holder).
 * @param maxBytes Most bytes the state may hold.
 * @param measured `heldBytes(json)`, when the caller measured it already.
 *
 * @internal
 */
export function applyUpdate(
  state: AgentState,
  update: AgentUpdate,
  json: string = JSON.stringify(update),
  maxBytes: number = Number.POSITIVE_INFINITY,
  measured: number = heldBytes(json),
): StateTrim {
  const idBytes = update.type === 'task_update' ? update.task_id.length : 0;
  let bytes = measured + idBytes + HELD_UPDATE_OVERHEAD;
  let omitted = false;
  if (bytes > maxBytes && update.type === 'task_update' && update.result !== undefined) {
    json = JSON.stringify(withoutResult(update));
    bytes = heldBytes(json) + idBytes + HELD_UPDATE_OVERHEAD;
    omitted = true;
  }
  const held: HeldUpdate = { seq: update.seq, json, bytes };
  state.newest = held;
  state.bytes += bytes;
  if (update.type === 'status_update') {
    if (state.status) state.bytes -= state.status.bytes;
    state.status = held;
  } else {
    const { task_id: id } = update;
    const previous = state.open.get(id) ?? state.ended.get(id);
    if (previous) {
      state.bytes -= previous.bytes;
      if (!state.open.delete(id)) state.ended.delete(id);
    }
    const [tasks, limit] = isFinalTask(update)
      ? [state.ended, MAX_SNAPSHOT_FINAL_TASKS]
      : [state.open, MAX_SNAPSHOT_OPEN_TASKS];
    tasks.set(id, held);
    if (tasks.size > limit) {
      const [oldest, dropped] = tasks.entries().next().value as [string, HeldUpdate];
      tasks.delete(oldest);
      state.bytes -= dropped.bytes;
    }
  }
  const forgotten = state.bytes > maxBytes ? shrinkState(state, maxBytes) : 0;
  return forgotten === 0 && !omitted ? UNTRIMMED : { forgotten, omitted };
}

/**
 * The tasks of a snapshot, oldest update first, as held.
 *
 * @internal
 */
export const heldTasks = (state: AgentState): HeldUpdate[] =>
  [...state.open.values(), ...state.ended.values()].sort((a, b) => a.seq - b.seq);

/**
 * The tasks of a snapshot, oldest update first.
 *
 * @param parse Reads a held JSON back (the hub's adopts it, so it is not serialised again).
 *
 * @internal
 */
export const snapshotTasks = (state: AgentState, parse: (json: string) => AgentUpdate = JSON.parse): TaskUpdate[] =>
  heldTasks(state).map((held) => parse(held.json) as TaskUpdate);

/**
 * What is trimmed from states to keep them within a total, reported per agent.
 *
 * @internal
 */
export type StateEviction = 'state' | 'task' | 'result';

/**
 * States of many agents under one total: `createAgentHub` keeps the state of each agent with a
 * connection here.
 *
 * @internal
 */
export interface StateLedger<K> {
  /** Bytes of every state held. */
  readonly bytes: number;
  /** Applies an update to `owner`'s state, then keeps every state within the bounds. */
  apply(owner: K, state: AgentState, update: AgentUpdate, json: string): void;
  /** Empties `owner`'s state and stops counting it. */
  release(owner: K, state: AgentState): void;
}

/**
 * Creates a ledger: each state within `maxBytes`, all together within `maxTotalBytes`. Over the
 * total, the states updated least recently are cut to their newest update, the one just
 * updated last.
 *
 * @param report Told of every trim: `task` (entries forgotten over `maxBytes`), `result`
 *   (a result left out), `state` (a state cut over the total).
 *
 * @internal
 */
export function createStateLedger<K>(
  maxBytes: number,
  maxTotalBytes: number,
  report: (owner: K, kind: StateEviction, count: number) => void,
): StateLedger<K> {
  const states = new Map<K, AgentState>();
  let total = 0;
  return {
    get bytes() {
      return total;
    },
    apply(owner, state, update, json) {
      const before = state.bytes;
      const trim = applyUpdate(state, update, json, maxBytes);
      total += state.bytes - before;
      states.delete(owner);
      states.set(owner, state);
      if (trim.forgotten > 0) report(owner, 'task', trim.forgotten);
      if (trim.omitted) report(owner, 'result', 1);
      if (total <= maxTotalBytes) return;
      const cut: [K, AgentState][] = [];
      for (const [other, held] of states) {
        if (total <= maxTotalBytes) break;
        if (held === state) continue;
        const had = held.bytes;
        if (shrinkState(held, 0) > 0) report(other, 'state', 1);
        total -= had - held.bytes;
        cut.push([other, held]);
      }
      // Cut to their newest update, they go behind the others: the next time gets further.
      for (const [other, held] of cut) {
        states.delete(other);
        states.set(other, held);
      }
      if (total <= maxTotalBytes) return;
      const had = state.bytes;
      if (shrinkState(state, 0) > 0) report(owner, 'state', 1);
      total -= had - state.bytes;
    },
    release(owner, state) {
      if (states.get(owner) === state) states.delete(owner);
      total -= state.bytes;
      clearAgentState(state);
    },
  };
}
