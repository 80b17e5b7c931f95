/**
 * The Worker's side of the agents' channels on Cloudflare: the routes that forward each agent's
 * requests to its Durable Object (`AgentChannelObject`), and a publisher for Worker code.
 *
 * @module
 */
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import * as v from 'valibot';
import { nestsDeeperThan } from '../../plugin/encode.ts';
import { describeIssues, InvalidUpdateError, type IssueAt, issuesAt } from '../../plugin/errors.ts';
import type { AuthorizeHook } from '../../plugin/options.ts';
import {
  AgentIdSchema,
  type HttpErrorCode,
  IngestBodySchema,
  StatusUpdateFieldsSchema,
  type StatusUpdateInput,
  TaskUpdateFieldsSchema,
  type TaskUpdateInput,
} from '../../plugin/schemas.ts';
import {
  AGENT_HEADER,
  AGENT_ID,
  type AgentObjectNamespace,
  OBJECT_ORIGIN,
  resumePointOf,
  wholeNumber,
} from './shared.ts';

/** Hands validated, stamped updates to the agent's object, which numbers and sends them. */
const publishTo = (namespace: AgentObjectNamespace, agentId: string, updates: readonly object[]): Promise<Response> =>
  namespace.get(namespace.idFromName(agentId)).fetch(
    new Request(`${OBJECT_ORIGIN}/publish`, {
      method: 'POST',
      headers: { [AGENT_HEADER]: agentId, 'Content-Type': 'application/json' },
      body: JSON.stringify(updates),
    }),
  );

/**
 * Publishes to agents' objects from Worker code (a queue consumer, a cron, a route of the app).
 */
export interface CloudflarePublisher {
  /**
   * Publishes a status update; `type`, `agent_id` and `timestamp` are added.
   *
   * @returns A promise that resolves once the agent's object numbered and sent it, and rejects
   *   with `InvalidUpdateError` when the agent id or the update is invalid, or with an `Error`
   *   when the object did not take it.
   */
  publishStatus(agentId: string, update: StatusUpdateInput): Promise<void>;
  /**
   * Publishes a task update; `type`, `agent_id` and `timestamp` are added.
   *
   * @returns As `publishStatus`; a `result` nesting deeper than `maxUpdateDepth` is invalid.
   */
  publishTask(agentId: string, update: TaskUpdateInput): Promise<void>;
}

/**
 * Creates the publisher of a Durable Object namespace of `AgentChannelObject`:
 * `cloudflarePublisher(env.AGENT_WS).publishStatus('agent-1', { status: 'running' })`.
 *
 * @param namespace The namespace binding.
 * @param options `maxUpdateDepth` (default 32, as the hub's).
 *
 * @returns The publisher.
 */
export function cloudflarePublisher(
  namespace: AgentObjectNamespace,
  options: { maxUpdateDepth?: number } = {},
): CloudflarePublisher {
  const maxUpdateDepth = wholeNumber('maxUpdateDepth', options.maxUpdateDepth ?? 32);
  const publish = async (
    agentId: string,
    type: 'status_update' | 'task_update',
    schema: typeof StatusUpdateFieldsSchema | typeof TaskUpdateFieldsSchema,
    update: unknown,
  ): Promise<void> => {
    const what = type === 'status_update' ? 'status update' : 'task update';
    const id = v.safeParse(AgentIdSchema, agentId);
    if (!id.success) throw new InvalidUpdateError('agent id', id.issues);
    const fields = v.safeParse(schema, update);
    if (!fields.success) throw new InvalidUpdateError(what, fields.issues);
    const output = fields.output as { result?: unknown };
    if (output.result !== undefined && nestsDeeperThan(output.result, maxUpdateDepth)) {
      const deep = v.safeParse(
        v.object({
          result: v.custom(() => false, `result nests deeper than ${maxUpdateDepth} levels (maxUpdateDepth)`),
        }),
        output,
      );
      throw new InvalidUpdateError(what, deep.issues as [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]);
    }
    const response = await publishTo(namespace, agentId, [
      { type, agent_id: agentId, ...fields.output, timestamp: new Date().toISOString() },
    ]);
    if (response.status !== 202) throw new Error(`the agent's object refused the update: HTTP ${response.status}`);
  };
  return {
    publishStatus: (agentId, update) => publish(agentId, 'status_update', StatusUpdateFieldsSchema, update),
    publishTask: (agentId, update) => publish(agentId, 'task_update', TaskUpdateFieldsSchema, update),
  };
}

/**
 * Options of `cloudflareRoutes`.
 */
export interface CloudflareRoutesOptions {
  /** The name of the Durable Object namespace binding of `AgentChannelObject`. Default `AGENT_WS`. */
  binding?: string;
  /** Decides whether a request may proceed, as the hub's `authorize`; runs in the Worker before any upgrade. */
  authorize?: AuthorizeHook;
  /** Mounts `POST /:agent_id/updates`. Default `false`. */
  ingest?: boolean;
  /** Largest ingest body, in bytes; larger gets 413. Default 1 MiB, as the hub's. */
  maxIngestBytes?: number;
  /** Deepest nesting of an update's `result`; deeper gets 400. Default 32, as the hub's. */
  maxUpdateDepth?: number;
}

/** `application/json`, with no charset or UTF-8 (as the hub's ingest route accepts). */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/**
 * Builds the Worker's routes to mount: `app.route('/agents', cloudflareRoutes())`. Each agent's
 * requests reach its `AgentChannelObject`: `GET /:agent_id/ws` (the WebSocket) and, with
 * `ingest`, `POST /:agent_id/updates`.
 *
 * @param options The binding's name, `authorize` and `ingest`.
 *
 * @returns The Hono app.
 */
export function cloudflareRoutes(options: CloudflareRoutesOptions = {}): Hono {
  const bindingName = options.binding ?? 'AGENT_WS';
  const app = new Hono();

  const refuse = (c: Context, status: number, error: HttpErrorCode, message: string, issues?: IssueAt[]) => {
    const headers: Record<string, string> = { 'X-Agent-WS-Error': error };
    if (status === 426) headers.Upgrade = 'websocket';
    return c.json(issues ? { error, message, issues } : { error, message }, status as 400, headers);
  };

  /** 400 `invalid_update`, naming each refused field as the hub's ingest route does. */
  const invalidUpdate = (c: Context, issues: IssueAt[]) =>
    refuse(c, 400, 'invalid_update', describeIssues(issues), issues);

  const namespaceOf = (c: Context): AgentObjectNamespace => {
    const namespace = (c.env as Record<string, AgentObjectNamespace | undefined> | undefined)?.[bindingName];
    if (!namespace) throw new Error(`no Durable Object binding named ${bindingName}`);
    return namespace;
  };

  /** The agent id of the path, or the refusal. */
  const agentIdOf = (c: Context): string | Response => {
    const agentId = c.req.param('agent_id') ?? '';
    if (AGENT_ID.test(agentId)) return agentId;
    const checked = v.safeParse(AgentIdSchema, agentId);
    return refuse(c, 400, 'invalid_agent_id', checked.issues?.[0]?.message ?? 'invalid agent_id');
  };

  const authorized = async (c: Context, agentId: string, action: 'watch' | 'publish') => {
    if (!options.authorize) return undefined;
    try {
      if (await options.authorize(agentId, c, action)) return undefined;
      return refuse(c, 403, 'forbidden', 'not allowed');
    } catch (error) {
      if (error instanceof HTTPException) {
        return refuse(c, error.status, error.status === 401 ? 'unauthorized' : 'forbidden', error.message);
      }
      throw error;
    }
  };

  app.get('/:agent_id/ws', async (c) => {
    const agentId = agentIdOf(c);
    if (agentId instanceof Response) return agentId;
    const refused = await authorized(c, agentId, 'watch');
    if (refused) return refused;
    if (c.req.header('Upgrade')?.toLowerCase() !== 'websocket') {
      return refuse(c, 426, 'upgrade_required', 'this route expects a WebSocket upgrade');
    }
    const resume = resumePointOf(new URL(c.req.url).searchParams);
    if (resume === null) {
      return refuse(
        c,
        400,
        'invalid_resume',
        'since must be a whole number and epoch 1 to 64 characters of A-Z a-z 0-9 _ -, given together',
      );
    }
    const headers = new Headers(c.req.raw.headers);
    headers.set(AGENT_HEADER, agentId);
    const query = resume ? `?since=${resume.since}&epoch=${resume.epoch}` : '';
    const namespace = namespaceOf(c);
    return namespace.get(namespace.idFromName(agentId)).fetch(new Request(`${OBJECT_ORIGIN}/ws${query}`, { headers }));
  });

  if (options.ingest) {
    const maxIngestBytes = wholeNumber('maxIngestBytes', options.maxIngestBytes ?? 1024 * 1024);
    const maxUpdateDepth = wholeNumber('maxUpdateDepth', options.maxUpdateDepth ?? 32);
    const limitBody = bodyLimit({
      maxSize: maxIngestBytes,
      onError: (c) => refuse(c, 413, 'payload_too_large', `body larger than ${maxIngestBytes} bytes`),
    });
    app.post('/:agent_id/updates', limitBody, async (c) => {
      const agentId = agentIdOf(c);
      if (agentId instanceof Response) return agentId;
      const refused = await authorized(c, agentId, 'publish');
      if (refused) return refused;
      if (!JSON_MEDIA_TYPE.test(c.req.header('content-type') ?? '')) {
        return refuse(c, 415, 'unsupported_media_type', 'send Content-Type: application/json');
      }
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        return refuse(c, 400, 'invalid_json', 'body is not valid JSON');
      }
      const parsed = v.safeParse(IngestBodySchema, body);
      if (!parsed.success) return invalidUpdate(c, issuesAt(parsed.issues));
      const items = Array.isArray(parsed.output) ? parsed.output : [parsed.output];
      for (const [index, item] of items.entries()) {
        if ('result' in item && nestsDeeperThan(item.result, maxUpdateDepth)) {
          const message = `result nests deeper than ${maxUpdateDepth} levels (maxUpdateDepth)`;
          return invalidUpdate(c, [{ path: Array.isArray(parsed.output) ? `${index}.result` : 'result', message }]);
        }
      }
      const timestamp = new Date().toISOString();
      const updates = items.map(({ type, ...fields }) => ({ type, agent_id: agentId, ...fields, timestamp }));
      return publishTo(namespaceOf(c), agentId, updates);
    });
  }

  return app;
}
