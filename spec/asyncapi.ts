/**
 * Builds the AsyncAPI 3 document of the WebSocket channel from the code: message shapes, titles,
 * descriptions and examples from the valibot schemas, close codes from plugin/close-codes.ts,
 * defaults from the hub's option schema, error codes from `ERROR_CODES`.
 */
import { readFileSync } from 'node:fs';
import type { JsonSchema } from '@valibot/to-json-schema';
import * as v from 'valibot';
import { CLOSE_CODES, CloseCode } from '../plugin/close-codes.ts';
import { QUEUE_HANDOVER_MS } from '../plugin/hub.ts';
import { HubOptionsSchema } from '../plugin/options.ts';
import { AgentIdSchema, ClientMessageSchema, ERROR_CODES, ServerMessageSchema } from '../plugin/schemas.ts';
import { type AnySchema, componentSchemas, messageType, metadataOf, nameOf, variantMembers } from './json-schema.ts';

/** Project root. */
export const ROOT = new URL('../', import.meta.url);

/** The package version, so the spec's `info.version` follows releases. */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string })
  .version;

/** The channel's id in `channels`. */
export const CHANNEL_ID = 'agentSocket';

/** Operation ids by who sends: the document describes the server, so the server `send`s. */
export const OPERATIONS = { server: 'sendToClient', client: 'receiveFromClient' } as const;

/** One close code the hub uses, as documented in the spec. */
export interface CloseCodeDoc {
  code: number;
  name: string;
  reason: string;
  description: string;
}

/** The close codes with their meaning, from the one table in plugin/close-codes.ts. */
export function closeCodes(): CloseCodeDoc[] {
  return Object.entries(CLOSE_CODES).map(([code, { name, reason, description }]) => ({
    code: Number(code),
    name,
    reason,
    description,
  }));
}

/** The default of one hub option, read from the option schema. */
function optionDefault(name: keyof typeof HubOptionsSchema.entries): number {
  const value = v.getDefault(HubOptionsSchema.entries[name] as v.GenericSchema);
  if (typeof value !== 'number') throw new Error(`hub option ${name} has no numeric default`);
  return value;
}

/** First sentence of a description, for `summary`. */
function firstSentence(text: string): string {
  return /^.*?[.!?](?=\s|$)/.exec(text)?.[0] ?? text;
}

/** Strips `examples` off a payload schema: they move to the message, where AsyncAPI tools show them. */
function withoutExamples(schema: JsonSchema): JsonSchema {
  const { examples: _examples, ...rest } = schema;
  return rest;
}

/**
 * Builds the AsyncAPI document.
 *
 * @returns The document as a plain object, keys in output order.
 */
export function buildAsyncApi(): Record<string, unknown> {
  const server = variantMembers(ServerMessageSchema);
  const client = variantMembers(ClientMessageSchema);
  // One message per wire type, in the order the server list then the client list name them.
  const messages = new Map<string, { schema: AnySchema; senders: ('server' | 'client')[] }>();
  for (const [sender, members] of [
    ['server', server],
    ['client', client],
  ] as const) {
    for (const schema of members) {
      const type = messageType(schema);
      const entry = messages.get(type) ?? { schema, senders: [] };
      if (entry.schema !== schema) throw new Error(`two schemas for message type ${type}`);
      entry.senders.push(sender);
      messages.set(type, entry);
    }
  }

  const schemas = componentSchemas([...messages.values()].map(({ schema }) => schema));
  for (const { schema } of messages.values()) {
    const name = nameOf(schema);
    schemas[name] = withoutExamples(schemas[name] as JsonSchema);
  }

  const heartbeat = optionDefault('heartbeatInterval');
  const batch = optionDefault('batchInterval');
  const queue = optionDefault('maxQueueSize');
  const history = optionDefault('historySize');
  const maxMessage = optionDefault('maxMessageSize');
  const maxBuffered = optionDefault('maxBufferedAmount');
  const inboundRate = optionDefault('maxInboundRate');
  const inboundBurst = optionDefault('maxInboundBurst');
  const codes = closeCodes();
  const agentId = metadataOf(AgentIdSchema);

  const rules = {
    'x-heartbeat': {
      defaultIntervalMs: heartbeat,
      rule: `The server sends \`ping\` every \`heartbeat_interval\` ms (announced in \`connection_established\`; default ${heartbeat}, 0 disables). A connection that has not sent \`pong\` since the previous sweep is closed with ${CloseCode.HEARTBEAT_TIMEOUT}. A client may send \`ping\` at any time; the server answers \`pong\`.`,
    },
    'x-batching': {
      defaultWindowMs: batch,
      rule: `The first update after a quiet period goes out at once, alone, and opens a window of \`batch_interval\` ms (default ${batch}; 0 sends every update alone). Updates arriving inside the window are sent when it closes: alone if there is one, as one \`batch_update\` with \`source: window\`, oldest first, if there are several. Order is kept across windows, connections and the offline queue.`,
    },
    'x-offline-queue': {
      defaultMaxSize: queue,
      handoverMs: QUEUE_HANDOVER_MS,
      rule: `While an agent has no open connection its updates are queued, keeping the newest \`maxQueueSize\` (default ${queue}; the oldest are dropped). The first connection to the agent receives the queue as a \`batch_update\` with \`source: queue\` right after \`connection_established\` and the snapshot; connections that join within ${QUEUE_HANDOVER_MS} ms after it receive the same queue followed by everything sent since; later connections do not.`,
    },
    'x-resume': {
      defaultHistorySize: history,
      rule: `Every \`status_update\` and \`task_update\` carries \`seq\` (1, 2, 3, … per agent, strictly +1) and \`epoch\` (changes whenever history may have been lost). A client reconnects with \`?since=<seq>&epoch=<epoch>\`: if the server holds every later update (history of \`historySize\`, default ${history}, per agent), \`connection_established\` says \`recovered: true\` and one \`batch_update\` with \`source: resume\` brings exactly those, right after the snapshot; otherwise \`recovered: false\`. Every connection gets a \`snapshot\` (latest status, open and recently ended tasks) right after \`connection_established\`, before any queue or resume batch. A malformed \`since\`/\`epoch\` is refused with HTTP 400 \`invalid_resume\`.`,
    },
    'x-limits': {
      defaultMaxMessageBytes: maxMessage,
      defaultMaxBufferedBytes: maxBuffered,
      defaultMaxInboundRate: inboundRate,
      defaultMaxInboundBurst: inboundBurst,
      rule: `An inbound frame over \`maxMessageSize\` bytes (default ${maxMessage}) closes the connection with ${CloseCode.MESSAGE_TOO_BIG}, a text frame that is not valid UTF-8 with ${CloseCode.INVALID_UTF8}, a WebSocket protocol violation with ${CloseCode.PROTOCOL_ERROR}. A client may send \`maxInboundRate\` frames per second on average (default ${inboundRate}) after a burst of \`maxInboundBurst\` (default ${inboundBurst}); more closes the connection with ${CloseCode.RATE_LIMITED}. A client that reads so slowly that more than \`maxBufferedAmount\` bytes (default ${maxBuffered}) wait in its send buffer is closed with ${CloseCode.SLOW_CONSUMER}.`,
    },
    'x-close-codes': codes,
    'x-error-codes': [...ERROR_CODES],
  };

  const closeTable = [
    '| Code | Reason text | Meaning |',
    '| --- | --- | --- |',
    ...codes.map(({ code, reason, description }) => `| ${code} | \`${reason}\` | ${description} |`),
  ].join('\n');

  const description = [
    'A real-time channel per agent: every client connected to `/agents/{agent_id}/ws` receives the status and task updates of that agent. This document describes the **server**: `send` operations are frames the server sends, `receive` operations frames it accepts from clients. Every frame is one JSON text message.',
    '## Connection',
    `The first frame is always \`connection_established\`, carrying the intervals the server runs with. The handshake is refused with an HTTP status and a JSON body \`{ "error", "message" }\` (the code also travels in the \`X-Agent-WS-Error\` header): 400 \`invalid_agent_id\`, 403 \`origin_forbidden\` for a browser \`Origin\` other than the server's own host or the listed \`allowedOrigins\` (requests without \`Origin\` are not affected), 401 \`unauthorized\` and 403 \`forbidden\` (from the application's \`authorize\` hook), 426 \`upgrade_required\` for a plain HTTP request, 503 \`unavailable\` while the server shuts down.`,
    '## Heartbeat',
    rules['x-heartbeat'].rule,
    '## Batching',
    rules['x-batching'].rule,
    '## Offline queue',
    rules['x-offline-queue'].rule,
    '## Resume and snapshot',
    rules['x-resume'].rule,
    '## Errors',
    `A frame the server cannot accept is answered with an \`error\` frame (codes: ${ERROR_CODES.map((code) => `\`${code}\``).join(', ')}) and discarded; the connection stays open. ${rules['x-limits'].rule}`,
    '## Close codes',
    closeTable,
    'The same facts are machine-readable in the channel extensions `x-heartbeat`, `x-batching`, `x-offline-queue`, `x-resume`, `x-limits`, `x-close-codes` and `x-error-codes`.',
  ].join('\n\n');

  const messageRef = (type: string) => ({ $ref: `#/channels/${CHANNEL_ID}/messages/${type}` });
  const typesSentBy = (sender: 'server' | 'client') =>
    [...messages].filter(([, { senders }]) => senders.includes(sender)).map(([type]) => type);

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'hono-agent-ws',
      version: PACKAGE_VERSION,
      description,
      license: { name: 'MIT' },
    },
    defaultContentType: 'application/json',
    servers: {
      demo: {
        host: 'localhost:8787',
        protocol: 'ws',
        description:
          'The demo server (`npm start`). Applications mount the hub where they like; the channel address assumes `/agents`. Use `wss` in production.',
      },
    },
    channels: {
      [CHANNEL_ID]: {
        address: '/agents/{agent_id}/ws',
        title: 'Agent updates',
        summary: 'Live status and task updates of one agent.',
        description:
          'Open a WebSocket here to watch one agent. Every connection to the same agent receives the same frames; frames of other agents never arrive here.',
        messages: Object.fromEntries(
          [...messages.keys()].map((type) => [type, { $ref: `#/components/messages/${type}` }]),
        ),
        parameters: {
          agent_id: {
            description: agentId.description,
            examples: agentId.examples,
          },
        },
        bindings: { ws: { method: 'GET', bindingVersion: '0.1.0' } },
        ...rules,
      },
    },
    operations: {
      [OPERATIONS.server]: {
        action: 'send',
        channel: { $ref: `#/channels/${CHANNEL_ID}` },
        title: 'Frames the server sends',
        summary: 'connection_established first, then updates, heartbeats, and answers to client frames.',
        messages: typesSentBy('server').map(messageRef),
      },
      [OPERATIONS.client]: {
        action: 'receive',
        channel: { $ref: `#/channels/${CHANNEL_ID}` },
        title: 'Frames a client may send',
        summary:
          '`pong` to answer the heartbeat, `ping` to probe the connection. Anything else is answered with `error`.',
        messages: typesSentBy('client').map(messageRef),
      },
    },
    components: {
      messages: Object.fromEntries(
        [...messages].map(([type, { schema, senders }]) => {
          const meta = metadataOf(schema);
          if (!meta.title || !meta.description) throw new Error(`${nameOf(schema)} needs v.title and v.description`);
          if (meta.examples.length === 0) throw new Error(`${nameOf(schema)} needs v.examples`);
          return [
            type,
            {
              name: type,
              title: meta.title,
              // A one-sentence description needs no summary repeating it.
              ...(firstSentence(meta.description) === meta.description
                ? {}
                : { summary: firstSentence(meta.description) }),
              description: meta.description,
              contentType: 'application/json',
              payload: { $ref: `#/components/schemas/${nameOf(schema)}` },
              examples: meta.examples.map((payload, index) => ({
                name: meta.examples.length > 1 ? `${type}_${index + 1}` : type,
                payload,
              })),
              'x-sent-by': senders,
            },
          ];
        }),
      ),
      schemas,
    },
  };
}
