import type { Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import * as v from 'valibot';
import { describeIssues, InvalidUpdateError, issuesAt } from './errors.ts';
import { emptyAgentId, type RouteKit } from './route-kit.ts';
import { IngestBodySchema, type IngestItem, type UnsequencedUpdate } from './schemas.ts';

/** `application/json` or `application/*+json`, with no charset or UTF-8 (RFC 8259 §8.1). */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;
const JSON_ANY_CHARSET = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Mounts `POST /:agent_id/updates` (with the `ingest` option): an agent's updates over HTTP,
 * one or a batch, checked whole before any is published.
 *
 * @internal
 */
export function mountIngestRoute(app: Hono, kit: RouteKit): void {
  const { hub, refuse, guard } = kit;
  const { maxIngestBytes } = hub.config;

  /** 400 with what is wrong; `index` is the item's place in a batch, where paths start. */
  const invalidUpdate = (c: Context, agentId: string, issues: readonly v.BaseIssue<unknown>[], index?: number) => {
    hub.countError('ingest_rejected', c);
    hub.log('warn', 'ingest_rejected', { agent_id: agentId, status: 400, error: 'invalid_update' });
    const list = issuesAt(issues, index);
    return c.json({ error: 'invalid_update', message: describeIssues(list), issues: list }, 400);
  };

  /** The refusal of a body that is not UTF-8 JSON by its `Content-Type`, or `undefined`. */
  const refuseMediaType = (c: Context, agentId: string) => {
    const contentType = c.req.header('content-type') ?? '';
    if (contentType === 'application/json' || JSON_MEDIA_TYPE.test(contentType)) return undefined;
    const message = JSON_ANY_CHARSET.test(contentType)
      ? 'JSON must be UTF-8: send no charset or charset=utf-8'
      : 'send Content-Type: application/json';
    return refuse(c, 'ingest_rejected', 415, 'unsupported_media_type', message, agentId);
  };

  /** The body's updates, complete, or the 400 refusing them: every item is checked before any is published. */
  const prepare = (c: Context, agentId: string, body: unknown): UnsequencedUpdate[] | Response => {
    const parsed = v.safeParse(IngestBodySchema, body);
    if (!parsed.success) return invalidUpdate(c, agentId, parsed.issues);
    const output = parsed.output;
    const batch = Array.isArray(output);
    const items = batch ? output : [output];
    const updates: UnsequencedUpdate[] = [];
    for (let index = 0; index < items.length; index++) {
      try {
        updates.push(hub.prepareUpdate(agentId, items[index] as IngestItem));
      } catch (error) {
        if (!(error instanceof InvalidUpdateError)) throw error;
        return invalidUpdate(c, agentId, error.issues, batch ? index : undefined);
      }
    }
    return updates;
  };

  const ingest = async (c: Context) => {
    const agentId = kit.parseAgentId(c);
    if (agentId === undefined) return kit.invalidAgentId(c, 'ingest_rejected');
    const refused = (await guard(c, 'publish', agentId)) ?? refuseMediaType(c, agentId);
    if (refused) return refused;
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return refuse(c, 'ingest_rejected', 400, 'invalid_json', 'body is not valid JSON', agentId);
    }
    const updates = prepare(c, agentId, body);
    if (updates instanceof Response) return updates;
    if (hub.isClosing()) return refuse(c, 'unavailable', 503, 'unavailable', 'the server is shutting down', agentId);
    try {
      await hub.publish(updates, c);
    } catch {
      // The broker failure is already counted and logged by the hub.
      return c.json({ error: 'unavailable', message: 'could not publish; retry later' }, 503);
    }
    return c.json({ accepted: updates.length }, 202);
  };

  const limitBody = bodyLimit({
    maxSize: maxIngestBytes,
    onError: (c) => refuse(c, 'ingest_rejected', 413, 'payload_too_large', `body larger than ${maxIngestBytes} bytes`),
  });
  // One handler per route: Hono calls a lone handler directly, without composing a chain.
  const limited = async (c: Context) => {
    // A declared length within the limit is enforced by the HTTP parser itself: no need
    // for bodyLimit's byte counting, which on Node wraps every body in a stream.
    const declared = c.req.header('content-length');
    const length = declared === undefined ? Number.NaN : Number(declared);
    if (length <= maxIngestBytes && c.req.header('transfer-encoding') === undefined) return ingest(c);
    let response: Response | undefined;
    const limitedResponse = await limitBody(c, async () => {
      response = await ingest(c);
    });
    return limitedResponse ?? (response as Response);
  };
  app.post('/:agent_id/updates', limited);
  app.post('//*', emptyAgentId('updates', limited));
}
