import type { Context, Hono } from 'hono';
import * as v from 'valibot';
import { hubWide, type RouteKit } from './route-kit.ts';
import { AgentIdSchema } from './schemas.ts';
import {
  AGENT_TASKS_DEFAULT,
  AGENT_TASKS_MAX,
  AGENTS_PAGE_DEFAULT,
  AGENTS_PAGE_MAX,
  type AgentsPage,
} from './stats.ts';

/** The agents listing's cursor: the last agent id of a page, base64url, so clients treat it as opaque. */
const encodeCursor = (agentId: string): string =>
  btoa(`a:${agentId}`).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const decodeCursor = (cursor: string): string | undefined => {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return undefined;
  let text: string;
  try {
    text = atob(cursor.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return undefined;
  }
  const agentId = text.slice(2);
  return text.startsWith('a:') && v.is(AgentIdSchema, agentId) ? agentId : undefined;
};

/** A whole number from `min` to `max` in a query parameter; above `max` is `max`; `undefined` if malformed. */
const wholeQuery = (text: string | undefined, fallback: number, min: number, max: number): number | undefined => {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text)) return undefined;
  const value = Number(text);
  return value < min ? undefined : Math.min(value, max);
};

/**
 * Mounts `GET /ws/agents`: the agents the hub knows, a page at a time (a `hubWide` route).
 *
 * @internal
 */
export function mountAgentsRoute(app: Hono, kit: RouteKit): void {
  const { hub, refuse, guard } = kit;
  const list = async (c: Context) => {
    const refused = await guard(c, 'agents', undefined);
    if (refused) return refused;
    const limit = wholeQuery(c.req.query('limit'), AGENTS_PAGE_DEFAULT, 1, AGENTS_PAGE_MAX);
    const tasks = wholeQuery(c.req.query('tasks'), AGENT_TASKS_DEFAULT, 0, AGENT_TASKS_MAX);
    const cursor = c.req.query('cursor');
    const after = cursor === undefined || cursor === '' ? undefined : decodeCursor(cursor);
    if (limit === undefined || tasks === undefined || (cursor && after === undefined)) {
      return refuse(
        c,
        'invalid_query',
        400,
        'invalid_query',
        `limit must be a whole number from 1 (at most ${AGENTS_PAGE_MAX} are listed), tasks one from 0 (at most ${AGENT_TASKS_MAX}), cursor a next_cursor of this route`,
      );
    }
    let page: AgentsPage;
    try {
      page = await hub.listAgents(after, limit, tasks, c);
    } catch {
      // The broker failure is already counted and logged by the hub.
      return c.json({ error: 'unavailable', message: 'could not list the agents; retry later' }, 503);
    }
    return c.json({
      agents: page.agents,
      next_cursor: page.next_cursor === null ? null : encodeCursor(page.next_cursor),
    } satisfies AgentsPage);
  };
  app.get('/:agent_id/agents', hubWide(list));
}
