/**
 * How an agent's object reports its figures to the directory (brokers/cloudflare/directory.ts):
 * only when they changed, at most once per `reportInterval`. A change within the interval is
 * reported by the object's next alarm: the heartbeat's sweep while the agent has sockets (no wake
 * of its own, so a watched agent's figures may be one `heartbeatInterval` old), else an alarm at
 * the end of the interval (the object's `onFigures` hook folds the time `report` returns into its
 * one alarm). The Worker names the directory's binding and the interval in headers
 * of every request it forwards; the object keeps them in its storage so an alarm after an
 * eviction can still report.
 *
 * @module
 */
import { DIRECTORY_HEADER, DIRECTORY_NAME, REPORT_INTERVAL_HEADER } from './directory.ts';
import { type AgentObjectNamespace, type AgentObjectState, OBJECT_ORIGIN } from './shared.ts';

const SCHEMA = `CREATE TABLE IF NOT EXISTS agent_ws_report (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  directory TEXT NOT NULL,
  interval INTEGER NOT NULL
)`;

/**
 * Reports one object's figures to the directory. The object creates one in its constructor,
 * calls `noteRequest` for each request the Worker forwards, and `report` from its `onFigures`
 * hook (after a change, and from each alarm).
 *
 * @internal
 */
export class DirectoryReporter {
  private readonly ctx: AgentObjectState;
  private readonly env: unknown;
  /** The directory's binding, as the Worker named it; none until a request named it. */
  private directory: string | undefined;
  private interval = 10_000;
  /** The JSON last taken by the directory (since this wake), and when it was sent. */
  private last: string | undefined;
  private lastAt = 0;
  /** A report was held back or failed: the next call sends it, changed or not. */
  private due = false;

  /**
   * @param ctx The object's state (its storage keeps the directory's binding name).
   * @param env The Worker's bindings, where the directory's namespace is.
   */
  constructor(ctx: AgentObjectState, env: unknown) {
    this.ctx = ctx;
    this.env = env;
    ctx.storage.sql.exec(SCHEMA);
    const row = ctx.storage.sql.exec('SELECT directory, interval FROM agent_ws_report WHERE id = 1').toArray()[0];
    if (row) {
      this.directory = String(row.directory);
      this.interval = Number(row.interval);
    }
  }

  /**
   * Takes the directory's binding and the interval from a request of the Worker; stored when
   * they differ from what the object has.
   *
   * @param request The forwarded request.
   */
  noteRequest(request: Request): void {
    const directory = request.headers.get(DIRECTORY_HEADER);
    const interval = Number(request.headers.get(REPORT_INTERVAL_HEADER));
    if (!directory || !Number.isInteger(interval) || interval < 0) return;
    if (directory === this.directory && interval === this.interval) return;
    this.directory = directory;
    this.interval = interval;
    this.ctx.storage.sql.exec(
      'INSERT INTO agent_ws_report (id, directory, interval) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET directory = excluded.directory, interval = excluded.interval',
      directory,
      interval,
    );
  }

  /**
   * Reports the figures if they differ from those the directory last took: now when
   * `reportInterval` has passed since the last report, else not yet. The object's `onFigures`
   * hook calls it, and folds the time it returns into the object's one alarm, so a report held
   * back (or one that failed) is sent by that alarm.
   *
   * @param read Builds the object's figures (`ObjectFigures`); called only when a report may be sent.
   * @param changed Whether they changed since the object's last call.
   * @param sweeping Whether the heartbeat's sweep will run the object's alarm anyway (it has
   *   sockets and a heartbeat): a report held back then waits for the sweep, which costs no wake
   *   of its own, rather than setting an alarm before it.
   *
   * @returns When to be called again (milliseconds since the Unix epoch), or `undefined`; never rejects.
   */
  async report(read: () => object, changed: boolean, sweeping: boolean): Promise<number | undefined> {
    if (!this.directory || (!changed && !this.due)) return undefined;
    // The object's own bookkeeping is left out: an alarm that reports counts itself in
    // `alarms`, which would otherwise be a change to report by another alarm, forever.
    const { alarms: _alarms, wakes: _wakes, ...figures } = read() as Record<string, unknown>;
    const json = JSON.stringify(figures);
    if (json === this.last) {
      this.due = false;
      return undefined;
    }
    const now = Date.now();
    if (now - this.lastAt < this.interval) {
      this.due = true;
      return sweeping ? undefined : this.lastAt + this.interval;
    }
    this.lastAt = now;
    try {
      const namespace = (this.env as Record<string, AgentObjectNamespace | undefined>)[this.directory];
      if (!namespace) throw new Error(`no Durable Object binding named ${this.directory}`);
      const response = await namespace
        .get(namespace.idFromName(DIRECTORY_NAME))
        .fetch(new Request(`${OBJECT_ORIGIN}/report`, { method: 'POST', body: json }));
      if (response.status !== 204) throw new Error(`the directory answered HTTP ${response.status}`);
      this.last = json;
      this.due = false;
      return undefined;
    } catch {
      // Tried again by the object's alarm; a directory down costs one request per interval.
      this.due = true;
      return now + Math.max(this.interval, 1000);
    }
  }
}
