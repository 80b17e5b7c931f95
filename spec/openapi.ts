/**
 * Builds the OpenAPI 3.1 document of the hub's HTTP routes (stats and ingest) from the same
 * valibot schemas as the AsyncAPI document.
 */
import { AgentIdSchema, HttpErrorSchema, IngestAcceptedSchema, IngestBodySchema } from '../plugin/schemas.ts';
import {
  AGENT_TASKS_DEFAULT,
  AGENT_TASKS_MAX,
  AGENTS_PAGE_DEFAULT,
  AGENTS_PAGE_MAX,
  AgentsPageSchema,
  HubStatsSchema,
} from '../plugin/stats.ts';
import { PACKAGE_VERSION } from './asyncapi.ts';
import { componentSchemas, metadataOf, nameOf } from './json-schema.ts';

const ref = (schema: Parameters<typeof nameOf>[0]) => ({ $ref: `#/components/schemas/${nameOf(schema)}` });
const json = (schema: Parameters<typeof nameOf>[0], description: string) => ({
  description,
  content: { 'application/json': { schema: ref(schema) } },
});
const refusal = (description: string) => json(HttpErrorSchema, description);

/**
 * Builds the OpenAPI document.
 *
 * @returns The document as a plain object, keys in output order.
 */
export function buildOpenApi(): Record<string, unknown> {
  const stats = metadataOf(HubStatsSchema);
  const agents = metadataOf(AgentsPageSchema);
  const body = metadataOf(IngestBodySchema);
  return {
    openapi: '3.1.0',
    info: {
      title: 'hono-agent-ws HTTP routes',
      version: PACKAGE_VERSION,
      description:
        'The HTTP side of the hub, mounted next to the WebSocket channel (see asyncapi.yaml). Paths assume the hub is mounted at `/agents`.',
      license: { name: 'MIT' },
    },
    servers: [{ url: 'http://localhost:8787', description: 'The demo server (`npm start`).' }],
    paths: {
      '/agents/ws/stats': {
        get: {
          operationId: 'getStats',
          summary: stats.title,
          description: stats.description,
          responses: {
            '200': json(HubStatsSchema, 'The counters.'),
            '401': refusal('`unauthorized`: the `authorize` hook refused the credentials (action `stats`).'),
            '403': refusal('`forbidden`: the `authorize` hook refused (action `stats`).'),
          },
        },
      },
      '/agents/ws/agents': {
        get: {
          operationId: 'listAgents',
          summary: agents.title,
          description: agents.description,
          parameters: [
            {
              name: 'limit',
              in: 'query',
              required: false,
              description: `Agents per page: a whole number from 1; default ${AGENTS_PAGE_DEFAULT}, larger values give ${AGENTS_PAGE_MAX}.`,
              schema: { type: 'integer', minimum: 1, default: AGENTS_PAGE_DEFAULT },
            },
            {
              name: 'cursor',
              in: 'query',
              required: false,
              description: 'The `next_cursor` of the previous page; absent or empty for the first.',
              schema: { type: 'string' },
            },
            {
              name: 'tasks',
              in: 'query',
              required: false,
              description: `Open tasks listed per agent, most recently updated first: a whole number from 0; default ${AGENT_TASKS_DEFAULT}, larger values give ${AGENT_TASKS_MAX}.`,
              schema: { type: 'integer', minimum: 0, default: AGENT_TASKS_DEFAULT },
            },
          ],
          responses: {
            '200': json(AgentsPageSchema, 'One page of agents, by agent id.'),
            '400': refusal('`invalid_query`: `limit`, `tasks` or `cursor` is malformed.'),
            '401': refusal('`unauthorized`: the `authorize` hook refused the credentials (action `agents`).'),
            '403': refusal('`forbidden`: the `authorize` hook refused (action `agents`).'),
            '503': refusal('`unavailable`: the broker could not be read; retry later.'),
          },
        },
      },
      '/agents/ws/metrics': {
        get: {
          operationId: 'getMetrics',
          summary: 'Prometheus metrics',
          description:
            'The stats as Prometheus metrics (text format 0.0.4): counters (`_total`) and gauges named `hono_agent_ws_*`, `hono_agent_ws_errors_total{kind}`, `hono_agent_ws_evictions_total{kind}`, and the histograms `hono_agent_ws_batch_size_updates` and `hono_agent_ws_send_delay_seconds`. docs/operations.md lists every metric.',
          responses: {
            '200': {
              description: 'The metrics.',
              content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } },
            },
            '401': refusal('`unauthorized`: the `authorize` hook refused the credentials (action `metrics`).'),
            '403': refusal('`forbidden`: the `authorize` hook refused (action `metrics`).'),
          },
        },
      },
      '/agents/{agent_id}/updates': {
        post: {
          operationId: 'ingestUpdates',
          summary: 'Publish updates of an agent',
          description:
            'Mounted only with the hub option `ingest: true`. Each update is sent to the connections of the agent, or queued while it has none.',
          parameters: [
            {
              name: 'agent_id',
              in: 'path',
              required: true,
              description: 'The agent the updates belong to.',
              schema: ref(AgentIdSchema),
            },
          ],
          requestBody: {
            required: true,
            description: body.description,
            content: {
              'application/json': {
                schema: ref(IngestBodySchema),
                examples: Object.fromEntries(body.examples.map((value, index) => [`example_${index + 1}`, { value }])),
              },
            },
          },
          responses: {
            '202': json(IngestAcceptedSchema, 'Accepted.'),
            '400': refusal(
              '`invalid_agent_id`, `invalid_json` or `invalid_update` (with `issues`; a `result` nesting deeper than `maxUpdateDepth`, 32 by default, included). Nothing of a refused body is published.',
            ),
            '401': refusal('`unauthorized`: the `authorize` hook refused the credentials (action `publish`).'),
            '403': refusal('`forbidden`: the `authorize` hook refused (action `publish`).'),
            '413': refusal('`payload_too_large`: the body is over `maxIngestBytes`.'),
            '415': refusal(
              '`unsupported_media_type`: the body is not `application/json` (or `application/*+json`), or names a charset other than UTF-8.',
            ),
            '503': refusal('`unavailable`: the server is shutting down or could not publish; retry later.'),
          },
        },
      },
    },
    components: {
      schemas: componentSchemas([
        AgentIdSchema,
        HubStatsSchema,
        AgentsPageSchema,
        IngestBodySchema,
        IngestAcceptedSchema,
        HttpErrorSchema,
      ]),
    },
  };
}
