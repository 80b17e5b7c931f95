/**
 * The directory of a Worker's agents: one Durable Object (`AgentDirectoryObject`, named
 * `directory`) to which each agent's object reports its figures (brokers/cloudflare/reporter.ts)
 * and the Worker its refusals, and from which the Worker reads the hub-wide stats, the agents
 * listing and the metrics. No figure is asked of the agents' objects when the stats are read:
 * they are as fresh as the last reports (`reportInterval`).
 *
 * @module
 */
import { ERROR_KINDS, type ErrorKind } from '../../plugin/error-kinds.ts';
import { EVICTION_KINDS, STATS_FIGURES } from '../../plugin/figures.ts';
import { BATCH_SIZE_BUCKETS, createHistogram, type Histogram, SEND_DELAY_BUCKETS } from '../../plugin/metrics.ts';
import type { StatusUpdate, TaskUpdate } from '../../plugin/schemas.ts';
import type { AgentSummary, AgentsPage, HubStats } from '../../plugin/stats.ts';
import { AGENT_ID, type AgentObjectState } from './shared.ts';

/** The header in which the Worker names the directory's binding to an agent's object. */
export const DIRECTORY_HEADER = 'X-Agent-WS-Directory';

/** The header in which the Worker tells an agent's object its `reportInterval`. */
export const REPORT_INTERVAL_HEADER = 'X-Agent-WS-Report-Interval';

/** The name of the one directory object (`idFromName`). */
export const DIRECTORY_NAME = 'directory';

/**
 * The histograms of the metrics, summed over the agents' reports; `null` when no agent reported
 * one (the metrics then leave the family out rather than show an empty one as if measured).
 */
export interface DirectoryHistograms {
  readonly batch_size: Histogram | null;
  readonly send_delay: Histogram | null;
}

/**
 * What the directory reads of an agent's report (the object's `ObjectFigures`): its stream
 * position, status and open tasks, and every figure named as the hub's stats name it (counts and
 * `*_by_kind` records). Read by name, so a figure the object adds is summed without a change here.
 */
type Report = Record<string, unknown> & {
  readonly agent_id: string;
  readonly epoch?: string;
  readonly seq?: number;
  readonly status?: StatusUpdate | null;
  readonly open_tasks?: readonly TaskUpdate[];
  readonly open_tasks_total?: number;
};

/** Stats fields summed over the agents' reports: the counts an object keeps for its agent. */
const SUMMED = STATS_FIGURES.filter(
  (figure) =>
    figure.value === 'count' &&
    figure.name !== 'errors' &&
    figure.name !== 'uptime_seconds' &&
    figure.name !== 'agents_connected',
).map((figure) => figure.name);

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS agent_ws_directory (
     agent_id TEXT PRIMARY KEY,
     figures TEXT NOT NULL,
     reported_at INTEGER NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS agent_ws_directory_errors (
     kind TEXT PRIMARY KEY,
     count INTEGER NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS agent_ws_directory_meta (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     instance_id TEXT NOT NULL,
     started_at INTEGER NOT NULL
   )`,
];

/** A number of a report, 0 when absent or not a whole number 0 or more. */
const countOf = (value: unknown): number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : 0;

/** Adds a reported histogram (same bounds) to `into`; one of other bounds is ignored. */
const addHistogram = (into: Histogram, reported: unknown): boolean => {
  const histogram = reported as Partial<Histogram> | undefined;
  if (!histogram || !Array.isArray(histogram.counts) || histogram.counts.length !== into.bounds.length) return false;
  histogram.counts.forEach((count, i) => {
    (into.counts[i] as number) += countOf(count);
  });
  into.sum += typeof histogram.sum === 'number' && Number.isFinite(histogram.sum) ? histogram.sum : 0;
  into.count += countOf(histogram.count);
  return true;
};

/**
 * The directory object. Export it from the Worker under the class name its `durable_objects`
 * binding names (default binding `AGENT_DIRECTORY`), with `new_sqlite_classes` in its migration.
 * Its routes are the Worker's and the agents' objects' only (`OBJECT_ORIGIN`): `POST /report`,
 * `POST /errors`, `GET /stats`, `GET /metrics`, `GET /agents`.
 */
export class AgentDirectoryObject {
  /** The object's state: its storage. */
  protected readonly ctx: AgentObjectState;
  /** The latest report of each agent, parsed once per wake (open tasks stay in storage). */
  private reports: Map<string, Report> | undefined;
  private readonly instanceId: string;
  private readonly startedAt: number;

  /**
   * Runs on every start of the object.
   *
   * @param ctx The object's `DurableObjectState`.
   * @param _env The Worker's bindings (unused).
   */
  constructor(ctx: AgentObjectState, _env?: unknown) {
    this.ctx = ctx;
    const { sql } = ctx.storage;
    for (const statement of SCHEMA) sql.exec(statement);
    const row = sql.exec('SELECT instance_id, started_at FROM agent_ws_directory_meta WHERE id = 1').toArray()[0];
    if (row) {
      this.instanceId = String(row.instance_id);
      this.startedAt = Number(row.started_at);
    } else {
      this.instanceId = crypto.randomUUID();
      this.startedAt = Date.now();
      sql.exec(
        'INSERT INTO agent_ws_directory_meta (id, instance_id, started_at) VALUES (1, ?, ?)',
        this.instanceId,
        this.startedAt,
      );
    }
  }

  /**
   * The directory's routes.
   *
   * @param request A report, or a question of the Worker.
   *
   * @returns 204 for a report taken, the JSON answer of a question, 400 for a malformed report.
   */
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === 'POST' && url.pathname === '/report') return this.takeReport(await request.text());
    if (request.method === 'POST' && url.pathname === '/errors') return this.takeErrors(await request.text());
    if (request.method === 'GET' && url.pathname === '/stats') return Response.json(this.stats());
    if (request.method === 'GET' && url.pathname === '/metrics') {
      return Response.json({ stats: this.stats(), histograms: this.histograms() });
    }
    if (request.method === 'GET' && url.pathname === '/agents') {
      const query = url.searchParams;
      return Response.json(
        this.listAgents(
          query.get('after') ?? undefined,
          Number(query.get('limit') ?? 50),
          Number(query.get('tasks') ?? 20),
        ),
      );
    }
    return new Response('not found', { status: 404 });
  }

  /** Every agent's latest report, read from storage the first time after a wake. */
  private loaded(): Map<string, Report> {
    if (this.reports) return this.reports;
    const reports = new Map<string, Report>();
    for (const row of this.ctx.storage.sql.exec('SELECT agent_id, figures FROM agent_ws_directory').toArray()) {
      const report = JSON.parse(String(row.figures)) as Report;
      reports.set(String(row.agent_id), { ...report, open_tasks: undefined });
    }
    this.reports = reports;
    return reports;
  }

  private takeReport(body: string): Response {
    let report: Report;
    try {
      report = JSON.parse(body) as Report;
    } catch {
      return new Response('report is not JSON', { status: 400 });
    }
    if (typeof report !== 'object' || report === null || !AGENT_ID.test(String(report.agent_id))) {
      return new Response('report without a valid agent_id', { status: 400 });
    }
    this.ctx.storage.sql.exec(
      'INSERT INTO agent_ws_directory (agent_id, figures, reported_at) VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET figures = excluded.figures, reported_at = excluded.reported_at',
      report.agent_id,
      body,
      Date.now(),
    );
    this.loaded().set(report.agent_id, { ...report, open_tasks: undefined });
    return new Response(null, { status: 204 });
  }

  private takeErrors(body: string): Response {
    let counts: Record<string, unknown>;
    try {
      counts = JSON.parse(body) as Record<string, unknown>;
    } catch {
      return new Response('counts are not JSON', { status: 400 });
    }
    for (const kind of ERROR_KINDS) {
      const count = countOf(counts?.[kind]);
      if (count === 0) continue;
      this.ctx.storage.sql.exec(
        'INSERT INTO agent_ws_directory_errors (kind, count) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET count = count + excluded.count',
        kind,
        count,
      );
    }
    return new Response(null, { status: 204 });
  }

  /** The hub-wide stats: the agents' figures summed, with the Worker's refusals. */
  private stats(): HubStats {
    const reports = this.loaded();
    const sums: Record<string, number> = Object.fromEntries(SUMMED.map((name) => [name, 0]));
    const errors = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0])) as Record<ErrorKind, number>;
    const evictions = Object.fromEntries(EVICTION_KINDS.map((kind) => [kind, 0])) as Record<string, number>;
    let agentsConnected = 0;
    for (const report of reports.values()) {
      for (const name of SUMMED) (sums[name] as number) += countOf(report[name]);
      const reportedErrors = report.errors_by_kind as Record<string, unknown> | undefined;
      for (const kind of ERROR_KINDS) errors[kind] += countOf(reportedErrors?.[kind]);
      const reportedEvictions = report.evictions_by_kind as Record<string, unknown> | undefined;
      for (const kind of EVICTION_KINDS) (evictions[kind] as number) += countOf(reportedEvictions?.[kind]);
      if (countOf(report.active_connections) > 0) agentsConnected++;
    }
    for (const row of this.ctx.storage.sql.exec('SELECT kind, count FROM agent_ws_directory_errors').toArray()) {
      const kind = String(row.kind) as ErrorKind;
      if (kind in errors) errors[kind] += Number(row.count);
    }
    let total = 0;
    for (const kind of ERROR_KINDS) total += errors[kind];
    const figures: Record<string, unknown> = {};
    // In the order of the stats (`STATS_FIGURES`), as the hub serves them.
    for (const figure of STATS_FIGURES) {
      switch (figure.name) {
        case 'instance_id':
          figures[figure.name] = this.instanceId;
          break;
        case 'agents_connected':
          figures[figure.name] = agentsConnected;
          break;
        case 'errors':
          figures[figure.name] = total;
          break;
        case 'errors_by_kind':
          figures[figure.name] = errors;
          break;
        case 'evictions_by_kind':
          figures[figure.name] = evictions;
          break;
        case 'started_at':
          figures[figure.name] = new Date(this.startedAt).toISOString();
          break;
        case 'uptime_seconds':
          figures[figure.name] = Math.round((Date.now() - this.startedAt) / 1000);
          break;
        default:
          figures[figure.name] = sums[figure.name] ?? 0;
      }
    }
    return figures as HubStats;
  }

  /** The histograms summed over the agents that report them. */
  private histograms(): DirectoryHistograms {
    const batchSize = createHistogram(BATCH_SIZE_BUCKETS);
    const sendDelay = createHistogram(SEND_DELAY_BUCKETS);
    let batchReported = false;
    let delayReported = false;
    for (const report of this.loaded().values()) {
      batchReported = addHistogram(batchSize, report.batch_size) || batchReported;
      delayReported = addHistogram(sendDelay, report.send_delay) || delayReported;
    }
    return { batch_size: batchReported ? batchSize : null, send_delay: delayReported ? sendDelay : null };
  }

  /** A page of the agents that reported, in agent id order, after `after`. */
  private listAgents(after: string | undefined, limit: number, maxTasks: number): AgentsPage {
    const rows = this.ctx.storage.sql
      .exec(
        'SELECT agent_id, figures FROM agent_ws_directory WHERE agent_id > ? ORDER BY agent_id LIMIT ?',
        after ?? '',
        limit + 1,
      )
      .toArray();
    const page = rows.slice(0, limit);
    return {
      agents: page.map((row): AgentSummary => {
        const report = JSON.parse(String(row.figures)) as Report;
        const connections = countOf(report.active_connections);
        const open = report.open_tasks ?? [];
        return {
          agent_id: String(row.agent_id),
          connections,
          instances: connections > 0 ? 1 : 0,
          status: report.status ?? null,
          open_tasks: maxTasks > 0 ? open.slice(0, maxTasks) : [],
          open_tasks_total: countOf(report.open_tasks_total ?? open.length),
          seq: countOf(report.seq),
          epoch: typeof report.epoch === 'string' ? report.epoch : '',
          queued: countOf(report.queued_messages),
        };
      }),
      next_cursor: rows.length > limit ? String(page.at(-1)?.agent_id) : null,
    };
  }
}
