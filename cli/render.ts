/**
 * The watcher's model and its two views, as pure functions (no I/O, no clock), so each is
 * tested on its own:
 *
 * - `reduce(state, event)` folds one client event into the state and returns the plain lines
 *   that describe what changed (piped mode prints them as they come);
 * - `screen(state, size)` draws the whole state as lines for a terminal (TTY mode);
 * - `redraw(previous, lines)` turns a new screen into the ANSI text that replaces the previous
 *   one in place.
 *
 * Everything a publisher wrote (task ids, statuses, messages, results, errors) is passed
 * through `clean()` before it reaches a terminal: control characters become spaces, so an
 * update cannot move the cursor, change colours or retitle the window.
 *
 * @module
 */
import { isFinalTask } from '../plugin/agent-state.ts';
import type { StatusUpdate, TaskUpdate } from '../plugin/schemas.ts';

/** The client's connection state. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** What the client says when a connection opens. */
export interface OpenInfo {
  recovered: boolean;
  epoch: string;
  seq: number;
  connectionId: string;
  reconnects: number;
}

/** The agent's state as the server's snapshot gives it. */
export interface SnapshotInfo {
  status: StatusUpdate | null;
  tasks: readonly TaskUpdate[];
  seq: number;
  epoch: string;
}

/** What the client says when a connection closes. */
export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  delayMs?: number;
}

/** Why the client gave up for good. */
export type FatalInfo = { kind: 'handshake_refused'; status?: number; code?: string } | { kind: 'retries_exhausted' };

/** Where an update came from. */
export type UpdateSource = 'live' | 'window' | 'queue' | 'resume';

/** One event of the client, as the watcher sees it. */
export type WatchEvent =
  | { type: 'state'; state: ConnectionState }
  | { type: 'open'; info: OpenInfo }
  | { type: 'snapshot'; snapshot: SnapshotInfo }
  | { type: 'update'; update: StatusUpdate | TaskUpdate; source?: UpdateSource }
  | { type: 'close'; info: CloseInfo }
  | { type: 'fatal'; error: FatalInfo };

/** One task, as shown. */
export interface TaskView {
  readonly id: string;
  readonly status: string;
  readonly progress: number;
  readonly message?: string;
  /** The task's `result`, when it has one (any JSON). */
  readonly result?: unknown;
  readonly error?: string;
  /** Whether `status` is a final one (`completed`, `failed`, ...). */
  readonly ended: boolean;
}

/** Everything the watcher shows. */
export interface WatchState {
  /** The URL watched, with any token in its query hidden. */
  readonly url: string;
  /** The agent id, from the URL's `/agents/{id}/ws`; the URL when it has no such path. */
  readonly agentId: string;
  readonly connection: ConnectionState;
  /** How many times a connection was opened again after the first. */
  readonly reconnects: number;
  /** Whether a connection was ever open. */
  readonly everOpen: boolean;
  /** Whether a connection is open now (from its `open` to its `close`). */
  readonly online: boolean;
  /** The current connection's `recovered` (nothing missed since the last one). */
  readonly recovered: boolean;
  /** While reconnecting: the delay before the next attempt, when known. */
  readonly retryInMs?: number;
  /** The last close, while not open. */
  readonly lastClose?: { readonly code: number; readonly reason: string };
  /** Why the client gave up, when it did. */
  readonly fatal?: FatalInfo;
  /** The position of the last update applied. */
  readonly epoch?: string;
  readonly seq: number;
  readonly status: StatusUpdate | null;
  /** The tasks, in the order they first appeared. */
  readonly tasks: ReadonlyMap<string, TaskView>;
}

/** Ended tasks kept (the oldest are forgotten), as many as a server snapshot holds. */
export const MAX_ENDED_TASKS = 20;

/** Width of the progress bar between its brackets, on a terminal wide enough. */
export const BAR_WIDTH = 20;

/** The agent id in a `/agents/{id}/ws` URL, else `undefined`. */
export function agentIdOf(url: string): string | undefined {
  try {
    const match = /\/agents\/([^/]+)\/ws\/?$/.exec(new URL(url).pathname);
    return match ? decodeURIComponent(match[1]!) : undefined;
  } catch {
    return undefined;
  }
}

/** The URL with the value of a `token` query parameter replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has('token')) return url;
    parsed.searchParams.set('token', '***');
    return parsed.toString();
  } catch {
    return url;
  }
}

/** The state before anything happened. */
export function initialState(url: string): WatchState {
  const shown = redactUrl(url);
  return {
    url: shown,
    agentId: agentIdOf(url) ?? shown,
    connection: 'connecting',
    reconnects: 0,
    everOpen: false,
    online: false,
    recovered: false,
    seq: 0,
    status: null,
    tasks: new Map(),
  };
}

/** Control characters (C0, DEL, C1) that could drive a terminal. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** `text` with every control character (newlines, ESC, ...) replaced by a space. */
export const clean = (text: string): string => text.replace(CONTROL, ' ');

/** Cuts `text` to `max` characters (code points), ending with `…` when cut. */
export function truncate(text: string, max: number): string {
  if (max <= 0) return '';
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  return `${chars.slice(0, max - 1).join('')}…`;
}

/** `progress` (0–100) as a whole percentage, `  7%` to `100%`. */
export const percent = (progress: number): string => `${Math.round(progress)}%`.padStart(4);

/** `[#####-----]`: `width` cells, the filled share rounded to the nearest cell. */
export function progressBar(progress: number, width: number = BAR_WIDTH): string {
  const share = Math.min(1, Math.max(0, progress / 100));
  const filled = Math.round(share * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** A task's `result` as one line of JSON (`undefined` when it has none). */
export function resultText(result: unknown): string | undefined {
  if (result === undefined) return undefined;
  try {
    return clean(JSON.stringify(result) ?? String(result));
  } catch {
    return String(result);
  }
}

/** `busy (task-1, 40%: reading)`: a status update in one line. */
export function statusText(status: StatusUpdate | null): string {
  if (!status) return 'unknown';
  const execution = status.execution_status;
  if (!execution) return clean(status.status);
  const details = [clean(execution.state)];
  if (execution.task_id !== undefined) details.push(clean(execution.task_id));
  if (execution.progress !== undefined) details.push(percent(execution.progress).trim());
  let text = `${clean(status.status)} (${details.join(', ')}`;
  if (execution.message) text += `: ${clean(execution.message)}`;
  return `${text})`;
}

/** The task as shown, from its latest update. */
function taskView(update: TaskUpdate): TaskView {
  return {
    id: update.task_id,
    status: update.status,
    progress: update.progress,
    ...(update.message !== undefined ? { message: update.message } : {}),
    ...(update.result !== undefined ? { result: update.result } : {}),
    ...(update.error !== undefined ? { error: update.error } : {}),
    ended: isFinalTask(update),
  };
}

/** Whether two views of a task show the same thing. */
const sameTask = (a: TaskView, b: TaskView): boolean =>
  a.status === b.status &&
  a.progress === b.progress &&
  a.message === b.message &&
  a.error === b.error &&
  resultText(a.result) === resultText(b.result);

/** `task t1: running 40% reading`, `task t1: completed 100% result {"pages":3}`. */
export function taskLine(task: TaskView): string {
  let line = `task ${clean(task.id)}: ${clean(task.status)} ${percent(task.progress).trim()}`;
  if (task.error !== undefined) line += ` error ${truncate(clean(task.error), 1000)}`;
  const result = resultText(task.result);
  if (result !== undefined) line += ` result ${truncate(result, 1000)}`;
  if (task.message && (task.error === undefined || !task.ended)) line += ` — ${truncate(clean(task.message), 1000)}`;
  return line;
}

/** Puts `view` in `tasks`, forgetting the oldest ended tasks past `MAX_ENDED_TASKS`. */
function withTask(tasks: ReadonlyMap<string, TaskView>, view: TaskView): Map<string, TaskView> {
  const next = new Map(tasks);
  next.set(view.id, view);
  let ended = 0;
  for (const task of next.values()) if (task.ended) ended++;
  for (const [id, task] of next) {
    if (ended <= MAX_ENDED_TASKS) break;
    if (task.ended && id !== view.id) {
      next.delete(id);
      ended--;
    }
  }
  return next;
}

/** A delay in seconds, `0.5 s`. */
const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`;

/** What a refusal or a give-up says: `handshake refused: HTTP 401 (unauthorized)`. */
export function fatalText(fatal: FatalInfo): string {
  if (fatal.kind === 'retries_exhausted') return 'gave up: every reconnect attempt failed';
  const status = fatal.status !== undefined ? ` HTTP ${fatal.status}` : '';
  const code = fatal.code !== undefined ? ` (${clean(fatal.code)})` : '';
  return `handshake refused:${status}${code}`.replace(/:$/, '');
}

/**
 * What to do about a refusal, when the CLI can tell: a 401 asks for the token, with the flag
 * and the environment variable that pass it (`tokenGiven`: whether one was sent).
 */
export function fatalHint(fatal: FatalInfo, tokenGiven: boolean): string | undefined {
  if (fatal.kind !== 'handshake_refused' || fatal.status !== 401) return undefined;
  return tokenGiven
    ? 'the server refused this token: check the value of --token <token> (or AGENT_WS_TOKEN)'
    : 'the server wants a token: pass --token <token> (or set AGENT_WS_TOKEN)';
}

/** The result of one event: the new state and the plain lines saying what changed. */
export interface Reduction {
  readonly state: WatchState;
  readonly lines: readonly string[];
}

/**
 * Folds one event into the state.
 *
 * - An update already reflected (same epoch, `seq` not past the state's) is ignored, so a
 *   resume that repeats what a snapshot showed prints nothing twice.
 * - A snapshot replaces the state unless the connection recovered within the same epoch: then
 *   the state the watcher has, plus the `resume` updates that follow, is exact, and they print
 *   what happened while it was away.
 * - The lines name what changed: a status or task that is shown as before prints nothing.
 */
export function reduce(state: WatchState, event: WatchEvent): Reduction {
  switch (event.type) {
    case 'state': {
      const next: WatchState = { ...state, connection: event.state };
      return { state: next, lines: [] };
    }
    case 'open': {
      const { info } = event;
      const next: WatchState = {
        ...state,
        connection: 'open',
        everOpen: true,
        online: true,
        reconnects: Math.max(state.reconnects, info.reconnects),
        recovered: info.recovered && state.epoch === info.epoch,
        retryInMs: undefined,
        lastClose: undefined,
      };
      let line: string;
      if (!state.everOpen) line = `connected: agent ${clean(state.agentId)}, epoch ${info.epoch}, seq ${info.seq}`;
      else if (next.recovered) line = `reconnected (reconnect ${next.reconnects}): recovered, nothing lost`;
      else
        line = `reconnected (reconnect ${next.reconnects}): history not recovered (epoch ${info.epoch}), state from the snapshot`;
      return { state: next, lines: [line] };
    }
    case 'snapshot': {
      const { snapshot } = event;
      if (state.recovered && snapshot.epoch === state.epoch) return { state, lines: [] };
      const lines: string[] = [];
      if (statusText(snapshot.status) !== statusText(state.status) && snapshot.status)
        lines.push(`status: ${statusText(snapshot.status)}`);
      let tasks: Map<string, TaskView> = new Map();
      for (const update of snapshot.tasks) {
        const view = taskView(update);
        const before = state.tasks.get(view.id);
        if (!before || !sameTask(before, view)) lines.push(taskLine(view));
        tasks = withTask(tasks, view);
      }
      const next: WatchState = {
        ...state,
        epoch: snapshot.epoch,
        seq: snapshot.seq,
        status: snapshot.status,
        tasks,
      };
      return { state: next, lines };
    }
    case 'update': {
      const { update } = event;
      if (update.epoch === state.epoch && update.seq <= state.seq) return { state, lines: [] };
      const position = { epoch: update.epoch, seq: update.seq };
      if (update.type === 'status_update') {
        const changed = statusText(update) !== statusText(state.status);
        return {
          state: { ...state, ...position, status: update },
          lines: changed ? [`status: ${statusText(update)}`] : [],
        };
      }
      const view = taskView(update);
      const before = state.tasks.get(view.id);
      return {
        state: { ...state, ...position, tasks: withTask(state.tasks, view) },
        lines: before && sameTask(before, view) ? [] : [taskLine(view)],
      };
    }
    case 'close': {
      const { info } = event;
      const lastClose = { code: info.code, reason: info.reason };
      const why = `code ${info.code}${info.reason ? ` ${clean(info.reason)}` : ''}`;
      if (!info.willReconnect) {
        const next: WatchState = { ...state, connection: 'closed', online: false, lastClose, retryInMs: undefined };
        return { state: next, lines: [] };
      }
      const next: WatchState = {
        ...state,
        connection: 'reconnecting',
        online: false,
        lastClose,
        retryInMs: info.delayMs,
      };
      const delay = info.delayMs !== undefined ? ` in ${seconds(info.delayMs)}` : '';
      const what = state.online ? 'disconnected' : 'connection failed';
      return { state: next, lines: [`${what} (${why}), reconnecting${delay}`] };
    }
    case 'fatal':
      return { state: { ...state, connection: 'closed', fatal: event.error }, lines: [fatalText(event.error)] };
  }
}

/**
 * The connection part of the header: `open`, `reconnecting in 0.5 s (code 1006)`, ... After a
 * fatal error, `closed`: the error itself is written once, to stderr.
 */
export function connectionText(state: WatchState): string {
  let text: string = state.connection;
  if (state.connection === 'reconnecting') {
    if (state.retryInMs !== undefined) text += ` in ${seconds(state.retryInMs)}`;
    if (state.lastClose) text += ` (code ${state.lastClose.code})`;
  }
  if (state.reconnects > 0) text += `, ${state.reconnects} reconnect${state.reconnects === 1 ? '' : 's'}`;
  return text;
}

/** A terminal's size. */
export interface ScreenSize {
  columns: number;
  rows: number;
}

/**
 * The whole state as lines for a terminal of `size`: a header (agent, status, connection) and
 * one line per task, `task-1  [############--------]   60%  running  reading`, with its result
 * or error once it ended. Every line fits in `columns - 1` (so none wraps); tasks that do not
 * fit in `rows - 2` lines (the last row is the cursor's) are counted in one line above them.
 */
export function screen(state: WatchState, size: ScreenSize): string[] {
  const width = Math.max(20, size.columns) - 1;
  const header = `agent ${clean(state.agentId)} · status: ${statusText(state.status)} · ${connectionText(state)}`;
  const lines = [truncate(header, width)];
  const tasks = [...state.tasks.values()];
  if (tasks.length === 0) {
    lines.push(truncate(state.everOpen ? '  (no tasks yet)' : '  (waiting for the agent)', width));
    return lines;
  }
  // Header and tasks leave the last row to the cursor, so the screen never scrolls.
  const room = Math.max(2, size.rows - 2);
  const shown = tasks.length <= room ? tasks : tasks.slice(tasks.length - (room - 1));
  const idWidth = Math.min(24, Math.max(...shown.map((task) => Array.from(clean(task.id)).length)));
  const statusWidth = Math.min(12, Math.max(...shown.map((task) => Array.from(clean(task.status)).length)));
  const barWidth = width >= 60 ? BAR_WIDTH : 10;
  if (shown.length < tasks.length) lines.push(truncate(`  … ${tasks.length - shown.length} earlier tasks`, width));
  for (const task of shown) {
    const id = truncate(clean(task.id), idWidth).padEnd(idWidth);
    const status = truncate(clean(task.status), statusWidth).padEnd(statusWidth);
    let tail = task.message ? clean(task.message) : '';
    if (task.error !== undefined) tail = `error: ${clean(task.error)}`;
    else if (task.ended && task.result !== undefined) tail = `result: ${resultText(task.result)}`;
    const line = `${id}  ${progressBar(task.progress, barWidth)}  ${percent(task.progress)}  ${status}  ${tail}`;
    lines.push(truncate(line.trimEnd(), width));
  }
  return lines;
}

/** ESC [ n A: cursor up `n` lines. */
export const cursorUp = (n: number): string => `\u001b[${n}A`;
/** ESC [ 2 K: erase the whole line. */
export const ERASE_LINE = '\u001b[2K';
/** ESC [ J: erase from the cursor to the end of the screen. */
export const ERASE_DOWN = '\u001b[J';
/** ESC [ 2 J, ESC [ H: erase the screen, cursor to its top left corner. */
export const CLEAR_SCREEN = '\u001b[2J\u001b[H';
/** Hide and show the cursor while drawing. */
export const HIDE_CURSOR = '\u001b[?25l';
export const SHOW_CURSOR = '\u001b[?25h';

/**
 * The text that replaces the `previous` lines just drawn (the cursor below them) with `lines`:
 * up to the first of them, each line erased and written, what is left below erased.
 */
export function redraw(previous: number, lines: readonly string[]): string {
  let text = previous > 0 ? `\r${cursorUp(previous)}` : '';
  for (const line of lines) text += `${ERASE_LINE}${line}\n`;
  return `${text}${ERASE_DOWN}`;
}

/** ANSI escape sequences (CSI and the two-character ones). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ESC is the point.
const ANSI = /\u001b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])/g;

/** `text` without its ANSI escape sequences. */
export const stripAnsi = (text: string): string => text.replace(ANSI, '');
