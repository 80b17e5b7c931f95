/**
 * An example Worker: each agent's channel in a Durable Object, the hub's routes under `/agents`
 * and the dashboard at `/dashboard`, both behind one token, and a route of the app that
 * publishes a task. Deploy with `npx wrangler deploy` (wrangler.jsonc names the bindings); see
 * docs/cloudflare.md.
 */
import { type Context, Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { timingSafeEqual } from 'hono/utils/buffer';
import { AgentChannelObject, AgentDirectoryObject, cloudflareHub } from 'hono-agent-ws/cloudflare';
import { dashboard, tokenRequired } from 'hono-agent-ws/dashboard';

/** The Worker's bindings, as wrangler.jsonc declares them. */
interface Env {
  AGENT_CHANNEL: unknown;
  AGENT_DIRECTORY: unknown;
  AGENT_TOKEN: string;
}

/** The agents' objects: the class wrangler.jsonc binds as `AGENT_CHANNEL`. */
export class AgentChannel extends AgentChannelObject {
  static override options = { heartbeatInterval: 30_000 };
}

/** The directory: the class wrangler.jsonc binds as `AGENT_DIRECTORY`. */
export { AgentDirectoryObject as AgentDirectory };

/** `?token=` or `Authorization: Bearer`: the dashboard passes the token it was opened with to both. */
async function hasToken(c: Context<{ Bindings: Env }>): Promise<boolean> {
  const given = c.req.query('token') ?? c.req.header('authorization')?.replace(/^Bearer\s+/i, '') ?? '';
  return c.env.AGENT_TOKEN !== '' && (await timingSafeEqual(given, c.env.AGENT_TOKEN));
}

const hub = cloudflareHub<{ Bindings: Env }>({
  channel: 'AGENT_CHANNEL',
  directory: 'AGENT_DIRECTORY',
  ingest: true,
  // Runs in the Worker on every route, before anything reaches an object.
  authorize: async (_agentId, c) => {
    if (!(await hasToken(c))) throw new HTTPException(401, { message: 'a valid token is required' });
    return true;
  },
});

const app = new Hono<{ Bindings: Env }>();
app.route('/agents', hub.routes());
app.use('/dashboard', async (c, next) => ((await hasToken(c)) ? next() : tokenRequired(c)));
app.route('/dashboard', dashboard(hub, { base: '/agents' }));

// A route of the app publishing as Worker code would (a queue consumer, a cron, an orchestrator).
app.post('/jobs/:agent_id', async (c) => {
  if (!(await hasToken(c))) return tokenRequired(c);
  const taskId = crypto.randomUUID();
  await hub.publisher(c.env, c.executionCtx).publishTask(c.req.param('agent_id'), {
    task_id: taskId,
    status: 'started',
    progress: 0,
  });
  return c.json({ task_id: taskId }, 202);
});

export default app;
