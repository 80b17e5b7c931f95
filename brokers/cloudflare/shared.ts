/**
 * What the Worker and the agents' objects share: the structural Workers types (only what is
 * used, so the package needs no `@cloudflare/workers-types` to type-check), the header and origin
 * of the object's own routes, and the checks both sides run.
 *
 * @module
 */
import * as v from 'valibot';
import { EpochSchema } from '../../plugin/schemas.ts';

/** A server-side socket of workerd, as the hibernation API hands it back. */
export interface WorkersWebSocket {
  send(message: string): void;
  close(code?: number, reason?: string): void;
  serializeAttachment(value: unknown): void;
  deserializeAttachment(): unknown;
  readonly readyState: number;
}

/** The SQL cursor of `ctx.storage.sql.exec`. */
export interface SqlCursor {
  toArray(): Record<string, unknown>[];
}

/** What the object uses of `DurableObjectState` (`this.ctx`). */
export interface AgentObjectState {
  acceptWebSocket(socket: WorkersWebSocket, tags?: string[]): void;
  getWebSockets(tag?: string): WorkersWebSocket[];
  readonly storage: {
    readonly sql: { exec(query: string, ...bindings: unknown[]): SqlCursor };
    transactionSync<T>(body: () => T): T;
    getAlarm(): Promise<number | null>;
    setAlarm(time: number): Promise<void>;
  };
}

/** What the Worker uses of a Durable Object namespace binding. */
export interface AgentObjectNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(request: Request): Promise<Response> };
}

/** The header the Worker names the agent in when it forwards a request to its object. */
export const AGENT_HEADER = 'X-Agent-WS-Agent';

/** The paths of the object's own routes (never reachable from outside: the Worker builds them). */
export const OBJECT_ORIGIN = 'https://agent-ws.object';

/** The agent-id pattern of `AgentIdSchema`, to skip valibot on the common path. */
export const AGENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Where a client asks to resume: the last `seq` it has, in `epoch`. */
export interface ResumePoint {
  readonly since: number;
  readonly epoch: string;
}

/**
 * The resume point of `?since=<seq>&epoch=<epoch>`, read as the hub's routes read it:
 * `undefined` without `since`, `null` when malformed (both are needed, `since` a whole number).
 */
export const resumePointOf = (query: URLSearchParams): ResumePoint | null | undefined => {
  const since = query.get('since');
  if (since === null) return undefined;
  const epoch = query.get('epoch') ?? '';
  if (!/^\d{1,15}$/.test(since) || !v.is(EpochSchema, epoch)) return null;
  return { since: Number(since), epoch };
};

/** `value`, checked to be a whole number, 0 or more; `name` is the option it is. */
export const wholeNumber = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, 0 or more`);
  return value;
};
