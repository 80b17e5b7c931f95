/**
 * Events the hub logs.
 */
export type LogEvent =
  | 'connection_open'
  | 'connection_close'
  | 'connection_resumed'
  | 'connection_dropped'
  | 'send_error'
  | 'bad_frame'
  | 'queue_drop'
  | 'eviction'
  | 'upgrade_rejected'
  | 'request_rejected'
  | 'ingest_rejected'
  | 'broker_error'
  | 'hook_error'
  | 'internal_error'
  | 'heartbeat_sweep_skipped'
  | 'hub_closed';

/**
 * One structured log entry: what happened, to which agent and connection, and the details.
 */
export interface LogEntry {
  /** Severity. */
  level: 'info' | 'warn' | 'error';
  /** What happened. */
  event: LogEvent;
  /** When, ISO-8601. */
  time: string;
  /** The agent concerned, when there is one. */
  agent_id?: string;
  /** The connection concerned, when there is one. */
  connection_id?: string;
  /** Event-specific details (close code, error message, counts). */
  [detail: string]: unknown;
}

/**
 * Receives the hub's log entries.
 */
export type Logger = (entry: LogEntry) => void;

/**
 * The default logger: one JSON line per entry, errors and warnings on the error stream.
 *
 * @param entry The entry.
 */
export const jsonLogger: Logger = (entry) => {
  const line = JSON.stringify(entry);
  if (entry.level === 'info') console.log(line);
  else console.error(line);
};
