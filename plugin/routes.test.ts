import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as v from 'valibot';
import { AGENT_ID } from './routes.ts';
import { AgentIdSchema, EPOCH, EpochSchema } from './schemas.ts';

test('the routes’ agent id check accepts exactly what AgentIdSchema accepts', () => {
  const samples = [
    '',
    'a',
    'agent-1',
    'a.b_c:d-e',
    'a/b',
    'a b',
    'é',
    'a\n',
    'x'.repeat(128),
    'x'.repeat(129),
    '..',
    ':',
  ];
  for (const sample of samples)
    assert.equal(AGENT_ID.test(sample), v.is(AgentIdSchema, sample), JSON.stringify(sample));
});

test('the WebSocket route’s epoch check accepts exactly what EpochSchema accepts', () => {
  const samples = [
    '',
    'a',
    'k3v9x2m1q7tz',
    'A_b-9',
    'a.b',
    'a b',
    'é',
    'a\n',
    'x'.repeat(64),
    'x'.repeat(65),
    '-',
    ':',
  ];
  for (const sample of samples) assert.equal(EPOCH.test(sample), v.is(EpochSchema, sample), JSON.stringify(sample));
});
