/**
 * The demo's environment (examples/demo/app.ts, `DEMO_ENV`): one list maps every variable to
 * its setting; an unset variable keeps the code's default, a bad one stops the demo with its
 * name, and every variable the project has documented stays.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEMO_ENV, readSettings } from '../examples/demo/app.ts';
import { createAgentHub } from '../plugin/index.ts';
import { HubOptionsSchema } from '../plugin/options.ts';

/** Variables other code, scripts and people rely on: their names are contracts. */
const CONTRACT = [
  'PORT',
  'HOST',
  'HEARTBEAT_INTERVAL_MS',
  'MAX_QUEUE_SIZE',
  'MAX_QUEUE_BYTES',
  'MAX_TOTAL_QUEUE_BYTES',
  'QUEUE_TTL_MS',
  'BATCH_INTERVAL_MS',
  'MAX_MESSAGE_SIZE',
  'MAX_INBOUND_RATE',
  'MAX_INBOUND_BURST',
  'HISTORY_SIZE',
  'MAX_HISTORY_BYTES',
  'MAX_TOTAL_HISTORY_BYTES',
  'MAX_STATE_BYTES',
  'MAX_TOTAL_STATE_BYTES',
  'SNAPSHOT',
  'DEMO_AGENTS',
  'AUTH_TOKEN',
  'ALLOWED_ORIGINS',
  'HEADERS_TIMEOUT_MS',
  'REQUEST_TIMEOUT_MS',
  'KEEP_ALIVE_TIMEOUT_MS',
  'CONNECTIONS_CHECK_INTERVAL_MS',
  'LOG',
  'REDIS_URL',
  'PRESENCE_TTL_MS',
  'STREAM_TTL_MS',
  'DB_PATH',
];

describe('the demo environment', () => {
  it('has every documented variable, each once', () => {
    const names = DEMO_ENV.map((variable) => variable.name);
    assert.equal(new Set(names).size, names.length, 'a variable is listed twice');
    for (const name of CONTRACT) assert.ok(names.includes(name), `${name} is gone`);
  });

  it('maps only to options the hub has', () => {
    const known = Object.keys(HubOptionsSchema.entries);
    const missing = DEMO_ENV.filter((variable) => variable.target === 'hub' && !known.includes(variable.option));
    assert.deepEqual(
      missing.map((variable) => variable.option),
      [],
    );
  });

  it('leaves every option at the schema default when nothing is set, and the demo at its own', () => {
    const settings = readSettings({});
    assert.deepEqual(settings.hub, { ingest: true });
    assert.deepEqual(settings.timeouts, {});
    assert.equal(settings.redis, undefined);
    assert.equal(settings.port, 8787);
    assert.equal(settings.host, '127.0.0.1');
    assert.equal(settings.demoAgents, 3);
    assert.equal(settings.authToken, undefined);
    assert.equal(settings.dbPath, undefined);
    // Empty counts as unset.
    assert.deepEqual(readSettings({ MAX_QUEUE_BYTES: '', MAX_INBOUND_BURST: '' }).hub, { ingest: true });
  });

  it('sets each hub option from its variable, and the hub accepts the result', async () => {
    const env: Record<string, string> = {
      HEARTBEAT_INTERVAL_MS: '1000',
      MAX_QUEUE_SIZE: '7',
      MAX_QUEUE_BYTES: '2048',
      MAX_TOTAL_QUEUE_BYTES: '4096',
      QUEUE_TTL_MS: '0',
      BATCH_INTERVAL_MS: '0',
      MAX_MESSAGE_SIZE: '1024',
      MAX_INBOUND_RATE: '0.5',
      MAX_INBOUND_BURST: '3',
      HISTORY_SIZE: '5',
      MAX_HISTORY_BYTES: '100',
      MAX_TOTAL_HISTORY_BYTES: '1000',
      SNAPSHOT: 'off',
      ALLOWED_ORIGINS: 'https://a.example, ,https://b.example',
      LOG: 'off',
    };
    const { hub } = readSettings(env);
    assert.deepEqual(hub, {
      ingest: true,
      heartbeatInterval: 1000,
      maxQueueSize: 7,
      maxQueueBytes: 2048,
      maxTotalQueueBytes: 4096,
      queueTtl: 0,
      batchInterval: 0,
      maxMessageSize: 1024,
      maxInboundRate: 0.5,
      maxInboundBurst: 3,
      historySize: 5,
      maxHistoryBytes: 100,
      maxTotalHistoryBytes: 1000,
      snapshot: false,
      allowedOrigins: ['https://a.example', 'https://b.example'],
      logger: false,
    });
    await createAgentHub(hub).close();
    assert.equal(readSettings({ LOG: 'json' }).hub.logger, undefined);
    assert.equal(readSettings({ SNAPSHOT: 'on' }).hub.snapshot, true);
  });

  it('sets the server, timeouts and Redis from theirs', () => {
    const settings = readSettings({
      PORT: '0',
      HOST: '0.0.0.0',
      DEMO_AGENTS: '0',
      AUTH_TOKEN: 's3cret',
      HEADERS_TIMEOUT_MS: '1',
      REQUEST_TIMEOUT_MS: '2',
      KEEP_ALIVE_TIMEOUT_MS: '3',
      CONNECTIONS_CHECK_INTERVAL_MS: '4',
      REDIS_URL: 'redis://127.0.0.1:1',
      PRESENCE_TTL_MS: '500',
      STREAM_TTL_MS: '0',
      DB_PATH: './data/agents.db',
    });
    assert.equal(settings.dbPath, './data/agents.db');
    assert.equal(settings.port, 0);
    assert.equal(settings.host, '0.0.0.0');
    assert.equal(settings.demoAgents, 0);
    assert.equal(settings.authToken, 's3cret');
    assert.deepEqual(settings.timeouts, {
      headersTimeout: 1,
      requestTimeout: 2,
      keepAliveTimeout: 3,
      connectionsCheckingInterval: 4,
    });
    assert.deepEqual(settings.redis, { url: 'redis://127.0.0.1:1', presenceTtl: 500, streamTtl: 0 });
    // Redis options without REDIS_URL do not turn Redis on.
    assert.equal(readSettings({ PRESENCE_TTL_MS: '500' }).redis, undefined);
  });

  it('refuses a value it cannot read, naming the variable', () => {
    for (const [name, raw] of [
      ['MAX_QUEUE_BYTES', '-1'],
      ['MAX_INBOUND_BURST', '1.5'],
      ['PORT', 'http'],
      ['MAX_INBOUND_RATE', 'Infinity'],
      ['SNAPSHOT', 'of'],
      ['QUEUE_TTL_MS', '1e400'],
    ] as const)
      assert.throws(() => readSettings({ [name]: raw }), new RegExp(`^Error: ${name} must be`), `${name}=${raw}`);
  });
});
