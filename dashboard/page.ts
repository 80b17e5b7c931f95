/**
 * The dashboard page's script, run in the browser. Not imported at run time: `npm run dashboard`
 * (scripts/build-dashboard.ts) bundles it with the client through esbuild into
 * `generated-page.ts`, which `dashboard()` inlines into the page, so nothing is built when the
 * app runs and nothing is fetched from a CDN.
 *
 * It reads its settings from the page's `#dashboard-config` JSON, finds the agents (the hub's
 * listing `GET <base>/ws/agents`, else the configured ids, `?agents=a,b` and the form), opens one
 * client per agent on `<base>/<id>/ws`, and polls `GET <base>/ws/stats` for the counters. Every
 * value from the network is written with `textContent`, never as HTML.
 *
 * @module
 */
import { type AgentClient, connectAgent, type Snapshot, type StatusUpdate, type TaskUpdate } from '../client/index.ts';

/** What `dashboard()` puts in the page. */
export interface PageConfig {
  base: string;
  agents: string[];
  refreshInterval: number;
  statsInterval: number;
  maxAgents: number;
  maxTasks: number;
  stats: Record<string, unknown> | null;
}

interface Listed {
  agent_id: string;
  connections?: number;
  status?: string | null;
  open_tasks?: number;
  seq?: number;
  epoch?: string;
  queued?: number;
}

/** One task's row, with the position of the update it shows. */
interface TaskRow {
  row: HTMLElement;
  bar: HTMLProgressElement;
  pct: HTMLElement;
  cells: HTMLElement[];
  progress: number;
  seq: number;
}

/** What the agent's header says it executes, and the `seq` its progress comes from. */
interface Execution {
  state: string;
  task_id?: string;
  progress?: number;
  message?: string;
  progressSeq: number;
}

interface AgentView {
  id: string;
  client: AgentClient | undefined;
  card: HTMLElement;
  state: HTMLElement;
  status: HTMLElement;
  connections: HTMLElement;
  detail: HTMLElement;
  tasks: HTMLElement;
  rows: Map<string, TaskRow>;
  execution: Execution | undefined;
  listed: Listed | undefined;
}

const $ = <T extends HTMLElement>(selector: string): T => document.querySelector(selector) as T;
const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
};

const config: PageConfig = JSON.parse($('#dashboard-config').textContent || '{}');
const query = new URLSearchParams(location.search);
const token = query.get('token') ?? undefined;
const refreshInterval = Number(query.get('refresh')) || config.refreshInterval;
const statsInterval = Number(query.get('stats')) || config.statsInterval;
const base = config.base.replace(/\/+$/, '');
const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${base}`;
const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};

const views = new Map<string, AgentView>();
/** Ids wanted but beyond `maxAgents`. */
let hidden = 0;
/** `true` once the listing answered, `false` once it did not (404: not mounted by this hub). */
let listing: boolean | undefined;

const text = (value: unknown): string =>
  value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);

function agentView(id: string): AgentView | undefined {
  const known = views.get(id);
  if (known) return known;
  if (views.size >= config.maxAgents) {
    hidden++;
    return undefined;
  }
  const state = el('span', { class: 'pill', 'data-field': 'state' }, 'connecting');
  const status = el('span', { class: 'status', 'data-field': 'status' }, '—');
  const connections = el('span', { 'data-field': 'connections' }, '—');
  const detail = el('p', { class: 'detail', 'data-field': 'detail' });
  const tasks = el('tbody');
  const card = el(
    'article',
    { class: 'agent', 'data-agent': id },
    el('header', {}, el('h2', {}, id), status, el('span', { class: 'meta' }, 'connections: ', connections), state),
    detail,
    el(
      'table',
      {},
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', {}, 'task'),
          el('th', {}, 'progress'),
          el('th', {}, 'status'),
          el('th', {}, 'message'),
          el('th', {}, 'result / error'),
        ),
      ),
      tasks,
    ),
  );
  const view: AgentView = {
    id,
    client: undefined,
    card,
    state,
    status,
    connections,
    detail,
    tasks,
    rows: new Map(),
    execution: undefined,
    listed: undefined,
  };
  views.set(id, view);
  const list = $('#agents');
  const after = [...list.children].find((node) => (node.getAttribute('data-agent') ?? '') > id);
  list.insertBefore(card, after ?? null);
  $('#empty').hidden = true;
  return view;
}

function showStatus(view: AgentView, update: StatusUpdate | null): void {
  view.status.textContent = update?.status ?? '—';
  view.status.dataset.value = update?.status ?? '';
  const run = update?.execution_status;
  view.execution = run ? { ...run, progressSeq: update.seq } : undefined;
  // A task update newer than this status already moved the task on: its progress holds.
  const row = run?.task_id === undefined ? undefined : view.rows.get(run.task_id);
  if (view.execution && row && row.seq > update!.seq) {
    view.execution.progress = row.progress;
    view.execution.progressSeq = row.seq;
  }
  showExecution(view);
}

/** The header's line: what the agent executes, its progress kept in step with the task's row. */
function showExecution(view: AgentView): void {
  const run = view.execution;
  view.detail.textContent = run
    ? [run.state, run.task_id, run.progress === undefined ? '' : `${run.progress}%`, run.message ?? '']
        .filter(Boolean)
        .join(' · ')
    : '';
}

function showTask(view: AgentView, task: TaskUpdate): void {
  let entry = view.rows.get(task.task_id);
  if (!entry) {
    const bar = el('progress', { max: '100', 'aria-label': `${task.task_id} progress` }) as HTMLProgressElement;
    const pct = el('span', { class: 'pct' });
    const cells = [el('td', { 'data-field': 'status' }), el('td', { 'data-field': 'message' }), el('td')];
    const row = el(
      'tr',
      { 'data-task': task.task_id },
      el('td', { 'data-field': 'task_id' }, task.task_id),
      el('td', { 'data-field': 'progress' }, bar, pct),
      ...cells,
    );
    entry = { row, bar, pct, cells, progress: 0, seq: 0 };
    view.rows.set(task.task_id, entry);
    view.tasks.prepend(row);
    // The newest tasks stay; the oldest row goes once there are more than maxTasks.
    while (view.rows.size > config.maxTasks) {
      const [oldest] = view.rows.keys();
      view.rows.get(oldest!)?.row.remove();
      view.rows.delete(oldest!);
    }
  }
  const progress = Math.max(0, Math.min(100, task.progress ?? (task.status === 'completed' ? 100 : 0)));
  entry.progress = progress;
  entry.seq = task.seq;
  const run = view.execution;
  if (run && run.task_id === task.task_id && task.seq > run.progressSeq) {
    run.progress = progress;
    run.progressSeq = task.seq;
    showExecution(view);
  }
  entry.bar.value = progress;
  entry.bar.setAttribute('value', String(progress));
  entry.bar.setAttribute('aria-valuenow', String(progress));
  entry.pct.textContent = `${progress}%`;
  const [status, message, outcome] = entry.cells as [HTMLElement, HTMLElement, HTMLElement];
  status.textContent = task.status;
  status.className = `status ${task.status}`;
  entry.row.dataset.status = task.status;
  message.textContent = task.message ?? '';
  if (task.error !== undefined) {
    outcome.replaceChildren(el('div', { class: 'clip' }, task.error));
    outcome.setAttribute('data-field', 'error');
    outcome.className = 'error';
  } else if (task.result !== undefined) {
    outcome.replaceChildren(el('div', { class: 'clip' }, text(task.result)));
    outcome.setAttribute('data-field', 'result');
    outcome.className = 'result';
  }
}

function showListed(view: AgentView): void {
  const listed = view.listed;
  view.connections.textContent = listed?.connections === undefined ? '—' : String(listed.connections);
}

function watch(view: AgentView, attempt: { resume?: { epoch: string; seq: number } } = {}): void {
  const client = connectAgent(`${wsBase}/${encodeURIComponent(view.id)}/ws`, {
    ...(token === undefined ? {} : { token }),
    ...(attempt.resume ? { resume: attempt.resume } : {}),
  });
  view.client = client;
  client.on('state', (state) => {
    view.state.textContent = state === 'open' ? 'live' : state;
    view.state.dataset.state = state;
  });
  client.on('snapshot', (snapshot: Snapshot) => {
    showStatus(view, snapshot.status);
    for (const task of snapshot.tasks) showTask(view, task);
  });
  client.on('status_update', (update) => showStatus(view, update));
  client.on('task_update', (task) => showTask(view, task));
  client.on('fatal', (error) => {
    // A position from the listing the server no longer takes: start over without it.
    if (attempt.resume && error.kind === 'handshake_refused' && error.status === 400) return watch(view);
    view.state.textContent =
      error.kind === 'handshake_refused' ? `refused${error.status ? ` (${error.status})` : ''}` : 'gave up';
    view.state.dataset.state = 'fatal';
  });
}

/** Shows an agent and, the first time, connects to it. */
function want(id: string, listed?: Listed): void {
  const fresh = !views.has(id);
  const view = agentView(id);
  if (!view) return;
  if (listed) {
    view.listed = listed;
    showListed(view);
  }
  if (fresh) {
    // Resuming at the listing's position gets the snapshot without taking the offline queue
    // that is waiting for the agent's real consumer.
    const resume =
      listed && typeof listed.epoch === 'string' && typeof listed.seq === 'number'
        ? { epoch: listed.epoch, seq: listed.seq }
        : undefined;
    watch(view, resume ? { resume } : {});
  }
}

/** The hub's listing, up to `maxAgents` agents; `undefined` when it did not answer. */
async function fetchListing(): Promise<Listed[] | undefined> {
  const found: Listed[] = [];
  try {
    let cursor: string | null | undefined;
    let pages = 0;
    do {
      const url = new URL(`${base}/ws/agents`, location.href);
      url.searchParams.set('limit', String(Math.min(100, config.maxAgents)));
      if (cursor) url.searchParams.set('cursor', cursor);
      const res = await fetch(url, { headers });
      if (!res.ok) {
        if (res.status === 404 || res.status === 405) listing = false;
        return undefined;
      }
      listing = true;
      const body = (await res.json()) as { agents?: Listed[]; next_cursor?: string | null };
      for (const agent of body.agents ?? []) if (agent && typeof agent.agent_id === 'string') found.push(agent);
      cursor = body.next_cursor;
    } while (cursor && ++pages < 10 && found.length < config.maxAgents);
  } catch {
    // A network blip: the next round tries again.
    return undefined;
  }
  return found;
}

function showListing(agents: readonly Listed[] | undefined): void {
  for (const agent of agents ?? []) want(agent.agent_id, agent);
  $('#source').textContent =
    listing === true
      ? `agents from ${base}/ws/agents, every ${refreshInterval / 1000} s`
      : 'agents from the page’s list (this hub serves no listing)';
  $('#hidden').textContent = hidden > 0 ? `${hidden} more agents not shown (maxAgents ${config.maxAgents})` : '';
}

/** The stats, or `undefined` (said in the header) when they did not come. */
async function fetchStats(): Promise<Record<string, any> | undefined> {
  try {
    const res = await fetch(new URL(`${base}/ws/stats`, location.href), { headers });
    $('#stats-state').textContent = res.ok ? '' : `stats: HTTP ${res.status}`;
    return res.ok ? await res.json() : undefined;
  } catch {
    $('#stats-state').textContent = 'stats: unreachable';
    return undefined;
  }
}

/** The connections the counter card shows for `stats`. */
const connectionsOf = (stats: Record<string, any>): number =>
  num((stats.cluster as Record<string, number> | undefined)?.active_connections ?? stats.active_connections);

/**
 * This instance's connections as the last listing shown saw them: open now, and accepted since
 * the start (so one connection closing while another opens still counts as a change).
 */
const connectionsKey = (stats: Record<string, any>): string =>
  `${num(stats.active_connections)}/${num(stats.total_connections)}`;

/** `connectionsKey` of the stats shown with the last listing; the listing is asked again when it changes. */
let listedConnections: string | undefined;
/** When the listing was last asked. */
let listedAt = Number.NEGATIVE_INFINITY;

/**
 * One round: the stats every `statsInterval`; the listing every `refreshInterval`, and at once
 * when a connection opened or closed, so the agents' counts and the card change in the same
 * frame and always agree (on one instance; in a cluster the card counts every instance).
 */
async function refresh(): Promise<void> {
  let stats = await fetchStats();
  const moved = stats !== undefined && connectionsKey(stats) !== listedConnections;
  let agents: Listed[] | undefined;
  if (listing !== false && (moved || performance.now() - listedAt >= refreshInterval)) {
    listedAt = performance.now();
    agents = await fetchListing();
    // A connection came or went between the two answers: the stats once more, after the listing.
    const listed = agents?.reduce((sum, agent) => sum + num(agent.connections), 0);
    if (stats && agents && agents.length < config.maxAgents && listed !== num(stats.active_connections))
      stats = (await fetchStats()) ?? stats;
  }
  if (agents || listing === false) showListing(agents);
  if (stats) showStats(stats);
  if (stats && agents) listedConnections = connectionsKey(stats);
}

let previous: { at: number; sent: number; published: number } | undefined;
const num = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
const counter = (name: string, value: string) => {
  const node = document.querySelector(`[data-counter="${name}"]`);
  if (node) node.textContent = value;
};

function showStats(stats: Record<string, any>): void {
  const now = performance.now();
  const cluster = stats.cluster as Record<string, number> | undefined;
  counter('connections', String(connectionsOf(stats)));
  counter('agents_connected', String(num(cluster?.agents_connected ?? stats.agents_connected)));
  counter('queued_messages', String(num(cluster?.queued_messages ?? stats.queued_messages)));
  counter('messages_sent', String(num(stats.messages_sent)));
  counter('updates_published', String(num(stats.updates_published)));
  counter('errors', String(num(stats.errors)));
  const sent = num(stats.messages_sent);
  const published = num(stats.updates_published);
  if (previous && now > previous.at) {
    const seconds = (now - previous.at) / 1000;
    counter('messages_per_second', ((sent - previous.sent) / seconds).toFixed(1));
    counter('updates_per_second', ((published - previous.published) / seconds).toFixed(1));
  }
  previous = { at: now, sent, published };
  const kinds = Object.entries((stats.errors_by_kind ?? {}) as Record<string, number>).filter(([, n]) => num(n) > 0);
  const list = $('#errors');
  list.replaceChildren(
    ...(kinds.length === 0
      ? [el('li', { class: 'none' }, 'no errors')]
      : kinds.map(([kind, n]) => el('li', { 'data-kind': kind }, el('code', {}, kind), ` ${n}`))),
  );
  $('#instance').textContent = `instance ${text(stats.instance_id)} · up ${num(stats.uptime_seconds)} s${
    cluster ? ` · ${num(cluster.instances)} instances` : ''
  }`;
}

for (const id of [...config.agents, ...(query.get('agents') ?? '').split(',')]) if (id.trim()) want(id.trim());
$('#add').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>('#add-id');
  const id = input.value.trim();
  if (id) want(id);
  input.value = '';
});
if (config.stats) showStats(config.stats);
/** Rounds never overlap: a slow answer delays the next round instead of racing it. */
const loop = async () => {
  await refresh();
  setTimeout(loop, statsInterval);
};
void loop();
