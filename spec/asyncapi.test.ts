/**
 * The spec is valid, fresh, self-consistent, and says what the valibot schemas say.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Parser } from '@asyncapi/parser';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import * as v from 'valibot';
import { parse } from 'yaml';
import { ClientMessageSchema, IngestBodySchema, ServerMessageSchema } from '../plugin/schemas.ts';
import { ROOT } from './asyncapi.ts';
import { loadContract, type Sender, unobservedMessageTypes } from './contract.ts';
import { generatedFiles } from './generate.ts';
import { type AnySchema, messageType, variantMembers } from './json-schema.ts';

const contract = loadContract();
const TIME = '2026-11-27T13:37:00.000Z';
const AGENT = 'research-agent-7';

describe('asyncapi.yaml', () => {
  it('parses with @asyncapi/parser with no errors or warnings', async () => {
    const text = readFileSync(new URL('asyncapi.yaml', ROOT), 'utf8');
    const { document, diagnostics } = await new Parser().parse(text);
    // Spectral severities: 0 error, 1 warning, 2 information, 3 hint.
    const problems = diagnostics
      .filter((diagnostic) => diagnostic.severity <= 1)
      .map((diagnostic) => `${diagnostic.code} at ${diagnostic.path.join('.')}: ${diagnostic.message}`);
    assert.deepEqual(problems, []);
    assert.ok(document, 'the parser returned a document');
    assert.equal(document.version(), '3.0.0');
    const channel = document.channels().all()[0];
    assert.equal(channel?.address(), '/agents/{agent_id}/ws');
    assert.ok(channel?.parameters().get('agent_id')?.description(), 'agent_id is documented');
    assert.ok(channel?.bindings().has('ws'), 'the ws binding is set');
  });

  for (const file of Object.keys(generatedFiles())) {
    it(`${file} is what the generator produces now`, () => {
      let committed = '';
      try {
        committed = readFileSync(new URL(file, ROOT), 'utf8');
      } catch {}
      // Compared whole, so any drift fails; the message says how to fix it.
      assert.ok(committed === generatedFiles()[file], `${file} is stale: run npm run spec`);
    });
  }

  it('generates the same bytes twice', () => {
    assert.deepEqual(generatedFiles(), generatedFiles());
  });

  it('has one message per type each side sends, as the valibot variants list them', () => {
    const valibotTypes = (schema: AnySchema) => variantMembers(schema).map(messageType).sort();
    assert.deepEqual([...contract.messages.server.keys()].sort(), valibotTypes(ServerMessageSchema));
    assert.deepEqual([...contract.messages.client.keys()].sort(), valibotTypes(ClientMessageSchema));
    for (const type of [
      'connection_established',
      'status_update',
      'task_update',
      'batch_update',
      'ping',
      'pong',
      'error',
    ]) {
      assert.ok(contract.messages.server.has(type) || contract.messages.client.has(type), type);
    }
  });

  it('gives every message a title, a description and at least one example', () => {
    const messages = contract.document.components.messages as Record<string, Record<string, unknown>>;
    for (const [id, message] of Object.entries(messages)) {
      assert.ok(typeof message.title === 'string' && message.title.length > 0, `${id} title`);
      assert.ok(typeof message.description === 'string' && message.description.length > 0, `${id} description`);
      assert.ok(Array.isArray(message.examples) && message.examples.length > 0, `${id} examples`);
    }
  });

  it('documents close codes, heartbeat, batching, the offline queue and error codes', () => {
    const channel = contract.document.channels.agentSocket;
    const codes = (channel['x-close-codes'] as { code: number; description: string }[]).map(({ code }) => code);
    assert.deepEqual(codes, [1001, 1002, 1007, 1008, 1009, 1011, 4000, 4001]);
    for (const extension of ['x-heartbeat', 'x-batching', 'x-offline-queue', 'x-limits']) {
      assert.ok(channel[extension]?.rule, extension);
    }
    assert.deepEqual(channel['x-error-codes'], [
      'invalid_json',
      'invalid_message',
      'unknown_type',
      'binary_not_supported',
    ]);
    for (const heading of ['## Heartbeat', '## Batching', '## Offline queue', '## Close codes']) {
      assert.ok((contract.document.info.description as string).includes(heading), heading);
    }
  });

  it('holds each side to its own messages (a client may not send `error`, the server may not send `subscribe`)', () => {
    assert.deepEqual(
      contract.check('server', { type: 'error', code: 'unknown_type', message: 'x', timestamp: TIME }),
      [],
    );
    assert.match(
      contract.check('client', { type: 'error', code: 'unknown_type', message: 'x', timestamp: TIME })[0] ?? '',
      /sent by the client/,
    );
    assert.match(contract.check('server', { type: 'subscribe' })[0] ?? '', /no message of type "subscribe"/);
    assert.match(contract.check('server', 'not an object')[0] ?? '', /no message of type undefined/);
    assert.ok(contract.check('server', { type: 'task_update', agent_id: AGENT }).length > 0);
  });

  it("names every spec'd type no test saw, with its sender", () => {
    const all = { server: new Set(contract.messages.server.keys()), client: new Set(contract.messages.client.keys()) };
    assert.deepEqual(unobservedMessageTypes(contract, all), []);
    const missing = unobservedMessageTypes(contract, {
      server: new Set([...all.server].filter((type) => type !== 'pong')),
      client: new Set([...all.client].filter((type) => type !== 'ping')),
    });
    assert.deepEqual(missing, [
      'message type pong (sent by the server) is in asyncapi.yaml but no test saw it on the wire',
      'message type ping (sent by the client) is in asyncapi.yaml but no test saw it on the wire',
    ]);
  });

  it('has examples that validate against their own schemas', () => {
    let checked = 0;
    for (const sender of ['server', 'client'] as const) {
      for (const message of contract.messages[sender].values()) {
        for (const example of message.examples) {
          assert.deepEqual(contract.checkSchema(message.schema, example), [], `${message.id} example`);
          checked++;
        }
      }
    }
    for (const [name, schema] of Object.entries<{ examples?: unknown[] }>(contract.document.components.schemas)) {
      for (const example of schema.examples ?? []) {
        assert.deepEqual(contract.checkSchema(name, example), [], `schema ${name} example`);
        checked++;
      }
    }
    assert.ok(checked >= 9);
  });
});

/** A copy of `base` with `patch` applied; `undefined` removes a key. */
const patched = (base: Record<string, unknown>, patch: Record<string, unknown>) =>
  Object.fromEntries(Object.entries({ ...base, ...patch }).filter(([, value]) => value !== undefined));

const EPOCH = 'k3v9x2m1q7tz';
const status = { type: 'status_update', agent_id: AGENT, status: 'running', timestamp: TIME, seq: 1, epoch: EPOCH };
const task = {
  type: 'task_update',
  agent_id: AGENT,
  task_id: 'task-1',
  status: 'running',
  progress: 10,
  timestamp: TIME,
  seq: 2,
  epoch: EPOCH,
};
const hello = {
  type: 'connection_established',
  agent_id: AGENT,
  connection_id: 'c-1',
  heartbeat_interval: 30000,
  batch_interval: 100,
  epoch: EPOCH,
  seq: 2,
  recovered: false,
  timestamp: TIME,
};
const snapshot = {
  type: 'snapshot',
  agent_id: AGENT,
  epoch: EPOCH,
  seq: 2,
  status,
  tasks: [task],
  timestamp: TIME,
};
const batch = {
  type: 'batch_update',
  agent_id: AGENT,
  source: 'window',
  updates: [
    { type: 'status_update', content: status },
    { type: 'task_update', content: task },
  ],
  timestamp: TIME,
};
const error = { type: 'error', code: 'invalid_json', message: 'not JSON', timestamp: TIME };

/** Timestamps where `isoTimestamp()` and `format: date-time` used to disagree, plus plain ones. */
const goodTimes = [TIME, '2026-11-27T13:37:00Z', '2026-11-27T13:37:00.123456789+02:00', '2028-02-29T00:00:00Z'];
const badTimes = [
  'yesterday',
  '2026-11-27',
  '2026-11-27 13:37:00Z',
  '2026-11-27t13:37:00z',
  '2026-11-27T13:37:00',
  '2026-11-27T23:59:60Z',
  '2026-02-30T00:00:00Z',
  '2027-02-29T00:00:00Z',
  '2026-04-31T00:00:00Z',
  '2026-11-27T13:37:00.1234567890Z',
  '2026-11-27T13:37:00+0200',
  '2026-11-27T24:00:00Z',
  1764250620000,
  null,
];

/** Good and bad frames per message type; valibot and the spec must agree on each. */
const fixtures: Record<string, { good: unknown[]; bad: unknown[] }> = {
  connection_established: {
    good: [
      hello,
      patched(hello, { heartbeat_interval: 0, batch_interval: 0 }),
      patched(hello, { extra: true }),
      patched(hello, { seq: 0, recovered: true }),
    ],
    bad: [
      patched(hello, { connection_id: '' }),
      patched(hello, { connection_id: undefined }),
      patched(hello, { heartbeat_interval: 1.5 }),
      patched(hello, { batch_interval: -1 }),
      patched(hello, { agent_id: 'bad$id' }),
      patched(hello, { agent_id: 'x'.repeat(129) }),
      patched(hello, { agent_id: '' }),
      patched(hello, { type: 'connection_establish' }),
      patched(hello, { seq: -1 }),
      patched(hello, { seq: 1.5 }),
      patched(hello, { epoch: '' }),
      patched(hello, { epoch: 'has space' }),
      patched(hello, { epoch: undefined }),
      patched(hello, { recovered: 'yes' }),
      patched(hello, { recovered: undefined }),
      ...badTimes.map((timestamp) => patched(hello, { timestamp })),
    ],
  },
  status_update: {
    good: [
      status,
      patched(status, { agent_id: 'A-z_0.9:x'.padEnd(128, 'y') }),
      patched(status, { execution_status: { state: 'executing' } }),
      patched(status, { execution_status: { state: 'executing', task_id: 't', progress: 0, message: '' } }),
      ...goodTimes.map((timestamp) => patched(status, { timestamp })),
    ],
    bad: [
      patched(status, { status: '' }),
      patched(status, { status: 'x'.repeat(257) }),
      patched(status, { status: 5 }),
      patched(status, { execution_status: {} }),
      patched(status, { execution_status: { state: 'executing', extra: 1 } }),
      patched(status, { execution_status: { state: 'executing', progress: 100.5 } }),
      patched(status, { execution_status: { state: 'executing', task_id: '' } }),
      patched(status, { execution_status: null }),
      patched(status, { timestamp: undefined }),
      patched(status, { seq: 0 }),
      patched(status, { seq: undefined }),
      patched(status, { epoch: undefined }),
      patched(status, { epoch: 'x'.repeat(65) }),
    ],
  },
  task_update: {
    good: [
      task,
      patched(task, { progress: 0 }),
      patched(task, { progress: 99.5 }),
      patched(task, { result: null }),
      patched(task, { result: [1, 'two', { three: 3 }] }),
      patched(task, { status: 'failed', error: 'boom', message: 'x'.repeat(8192) }),
    ],
    bad: [
      patched(task, { progress: -1 }),
      patched(task, { progress: 101 }),
      patched(task, { progress: '50' }),
      patched(task, { progress: undefined }),
      patched(task, { task_id: '' }),
      patched(task, { message: 'x'.repeat(8193) }),
      patched(task, { error: 42 }),
      patched(task, { agent_id: undefined }),
      patched(task, { seq: '2' }),
      patched(task, { epoch: 'bad/epoch' }),
    ],
  },
  snapshot: {
    good: [
      snapshot,
      patched(snapshot, { status: null, tasks: [], seq: 0 }),
      patched(snapshot, { tasks: [task, patched(task, { task_id: 'task-2', status: 'completed', seq: 3 })] }),
    ],
    bad: [
      patched(snapshot, { status: undefined }),
      patched(snapshot, { tasks: undefined }),
      patched(snapshot, { tasks: [status] }),
      patched(snapshot, { status: task }),
      patched(snapshot, { epoch: '' }),
      patched(snapshot, { seq: -1 }),
      patched(snapshot, { timestamp: 'now' }),
    ],
  },
  batch_update: {
    good: [
      batch,
      patched(batch, { source: 'queue' }),
      patched(batch, { source: 'resume' }),
      patched(batch, { updates: [{ type: 'task_update', content: task }] }),
    ],
    bad: [
      patched(batch, { updates: [] }),
      patched(batch, { source: 'live' }),
      patched(batch, { updates: [{ type: 'status_update', content: task }] }),
      patched(batch, { updates: [{ type: 'task_update', content: patched(task, { timestamp: undefined }) }] }),
      patched(batch, { updates: [{ type: 'ping', content: { type: 'ping' } }] }),
      patched(batch, { updates: [task] }),
    ],
  },
  ping: {
    good: [{ type: 'ping' }, ...goodTimes.map((timestamp) => ({ type: 'ping', timestamp }))],
    bad: [{ type: 'pong' }, {}, ...badTimes.map((timestamp) => ({ type: 'ping', timestamp }))],
  },
  pong: {
    good: [{ type: 'pong' }, { type: 'pong', timestamp: TIME }, { type: 'pong', extra: 'ignored' }],
    bad: [
      { type: 'PONG' },
      { type: 'pong', timestamp: 'yesterday' },
      { type: 'pong', timestamp: '2026-02-30T00:00:00Z' },
    ],
  },
  error: {
    good: [
      error,
      ...['invalid_json', 'invalid_message', 'unknown_type', 'binary_not_supported'].map((code) =>
        patched(error, { code }),
      ),
      patched(error, { message: '' }),
    ],
    bad: [
      patched(error, { code: 'nope' }),
      patched(error, { code: undefined }),
      patched(error, { message: undefined }),
      patched(error, { message: 5 }),
      patched(error, { timestamp: 'now' }),
    ],
  },
};

describe('valibot and asyncapi.yaml agree', () => {
  const members = new Map<string, { sender: Sender; schema: AnySchema }[]>();
  for (const [sender, variant] of [
    ['server', ServerMessageSchema],
    ['client', ClientMessageSchema],
  ] as const) {
    for (const schema of variantMembers(variant)) {
      const type = messageType(schema);
      members.set(type, [...(members.get(type) ?? []), { sender, schema }]);
    }
  }

  it('has good and bad fixtures for every message type', () => {
    assert.deepEqual(Object.keys(fixtures).sort(), [...members.keys()].sort());
    for (const [type, { good, bad }] of Object.entries(fixtures)) assert.ok(good.length > 0 && bad.length > 0, type);
  });

  for (const [type, { good, bad }] of Object.entries(fixtures)) {
    it(`gives the same verdicts on ${type}`, () => {
      for (const { sender, schema } of members.get(type) ?? []) {
        const payload: string | undefined = contract.messages[sender].get(type)?.schema;
        assert.ok(payload, `asyncapi.yaml has ${type} sent by the ${sender}`);
        for (const [expected, frames] of [
          [true, good],
          [false, bad],
        ] as const) {
          for (const frame of frames) {
            const fromValibot = v.safeParse(schema, frame).success;
            const fromSpec: boolean = contract.checkSchema(payload, frame).length === 0;
            const shown = JSON.stringify(frame).slice(0, 160);
            assert.equal(fromValibot, expected, `valibot on ${shown}`);
            assert.equal(fromSpec, expected, `asyncapi.yaml (${sender}) on ${shown}`);
          }
        }
      }
    });
  }
});

describe('openapi.yaml', () => {
  const document = parse(readFileSync(new URL('openapi.yaml', ROOT), 'utf8')) as Record<string, any>;
  const ajv = new Ajv({ strict: true, allErrors: true });
  addFormatsModule.default(ajv);
  ajv.addKeyword({ keyword: 'components', schemaType: 'object' });
  ajv.addSchema({ $id: 'openapi.yaml', components: { schemas: document.components.schemas } });
  const validate = (name: string, value: unknown) => {
    const check = ajv.getSchema(`openapi.yaml#/components/schemas/${name}`);
    assert.ok(check, name);
    return check(value);
  };

  it('describes the stats and ingest routes with schemas that exist', () => {
    assert.equal(document.openapi, '3.1.0');
    assert.ok(document.paths['/agents/ws/stats'].get);
    assert.ok(document.paths['/agents/{agent_id}/updates'].post);
    const refs = JSON.stringify(document).match(/#\/components\/schemas\/\w+/g) ?? [];
    for (const ref of new Set(refs)) assert.ok(document.components.schemas[ref.split('/').pop() as string], ref);
  });

  it('agrees with valibot on ingest bodies, and its examples validate', () => {
    const examples = Object.values<{ value: unknown }>(
      document.paths['/agents/{agent_id}/updates'].post.requestBody.content['application/json'].examples,
    ).map(({ value }) => value);
    const item = { type: 'task_update', task_id: 't', status: 'running', progress: 1 };
    const good = [...examples, item, [item, { type: 'status_update', status: 'idle' }]];
    const bad = [
      [],
      { ...item, progress: 140 },
      { ...item, agent_id: 'a' },
      { type: 'connection_established' },
      Array.from({ length: 1001 }, () => item),
      'hello',
    ];
    for (const body of good) {
      assert.equal(v.safeParse(IngestBodySchema, body).success, true, JSON.stringify(body).slice(0, 80));
      assert.equal(validate('IngestBody', body), true, JSON.stringify(body).slice(0, 80));
    }
    for (const body of bad) {
      assert.equal(v.safeParse(IngestBodySchema, body).success, false, JSON.stringify(body).slice(0, 80));
      assert.equal(validate('IngestBody', body), false, JSON.stringify(body).slice(0, 80));
    }
    for (const [name, schema] of Object.entries<{ examples?: unknown[] }>(document.components.schemas)) {
      for (const example of schema.examples ?? []) assert.equal(validate(name, example), true, `${name} example`);
    }
  });
});
