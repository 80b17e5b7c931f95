/**
 * A refused update says which field is wrong and what it must be, on the ingest route and from
 * `publishStatus`/`publishTask`: the `type` picks the branch, and a body is checked as an
 * object or as an array by what it is, never answered "Expected (Object | Array)".
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeRuntime } from '../test/helpers/fake-runtime.ts';
import { type AgentHubOptions, createAgentHub, InvalidUpdateError } from './index.ts';

const quiet: AgentHubOptions = { logger: false, heartbeatInterval: 0, snapshot: false, ingest: true };

/** The 400 body of a refused ingest. */
interface Refusal {
  error: string;
  message: string;
  issues: { path: string | null; message: string }[];
}

/** A bad input, where it goes wrong, and the words a refusal must use. */
interface BadInput {
  name: string;
  body: unknown;
  path: string;
  message: RegExp;
}

const CASES: readonly BadInput[] = [
  {
    name: 'a task_update without task_id',
    body: { type: 'task_update', status: 'running', progress: 40 },
    path: 'task_id',
    message: /^task_id is required in a task_update: a string of 1 to 256 characters$/,
  },
  {
    name: 'an unknown type',
    body: { type: 'task_progress', task_id: 't', status: 'running', progress: 40 },
    path: 'type',
    message: /^type must be "status_update" or "task_update", received "task_progress"$/,
  },
  {
    name: 'status: 5',
    body: { type: 'status_update', status: 5 },
    path: 'status',
    message: /^status must be a string of 1 to 256 characters, received 5$/,
  },
  {
    name: 'progress: "40"',
    body: { type: 'task_update', task_id: 't', status: 'running', progress: '40' },
    path: 'progress',
    message: /^progress must be a number from 0 to 100, received "40"$/,
  },
  {
    name: 'an agent_id in the body',
    body: { type: 'status_update', status: 'running', agent_id: 'someone-else' },
    path: 'agent_id',
    message: /^agent_id is not a field of a status_update: the server sets agent_id.*the URL or the publish call/,
  },
  {
    name: 'a progress out of range inside execution_status',
    body: { type: 'status_update', status: 'running', execution_status: { state: 'executing', progress: 140 } },
    path: 'execution_status.progress',
    message: /^progress must be a number from 0 to 100, received 140$/,
  },
  {
    name: 'an unknown field',
    body: { type: 'task_update', task_id: 't', status: 'running', progress: 1, percent: 1 },
    path: 'percent',
    message: /^percent is not a field of a task_update, which has (type, )?task_id, status, progress, message/,
  },
];

const post = async (body: unknown): Promise<{ status: number; answer: Refusal }> => {
  const hub = createAgentHub(quiet);
  const runtime = fakeRuntime(hub);
  const response = await runtime.app.request('/agents/research-7/updates', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = (await response.json()) as Refusal;
  assert.equal(hub.stats().updates_published, 0, 'nothing of a refused body is published');
  await hub.close();
  return { status: response.status, answer };
};

describe('the ingest route names the wrong field', () => {
  for (const bad of CASES) {
    it(`${bad.name}: 400 with the field, what it must be, and its path`, async () => {
      const { status, answer } = await post(bad.body);
      assert.equal(status, 400);
      assert.equal(answer.error, 'invalid_update');
      assert.equal(answer.issues.length, 1, JSON.stringify(answer.issues));
      assert.equal(answer.issues[0]?.path, bad.path);
      assert.match(answer.issues[0]?.message ?? '', bad.message);
      const [issue] = answer.issues;
      const located = bad.path.includes('.') ? ` (at ${bad.path})` : '';
      assert.equal(answer.message, `${issue?.message}${located}`);
      assert.doesNotMatch(answer.message, /Object \| Array/);
    });

    it(`${bad.name}, as the second item of a batch: the path starts at its index`, async () => {
      const { status, answer } = await post([{ type: 'status_update', status: 'ok' }, bad.body]);
      assert.equal(status, 400);
      assert.equal(answer.issues[0]?.path, `1.${bad.path}`);
      assert.match(answer.issues[0]?.message ?? '', bad.message);
    });
  }

  it('answers a body that is neither an object nor an array, and an empty or oversized batch, by kind', async () => {
    for (const [body, message] of [
      [
        'running',
        /^the body must be an update \(an object with `type`\) or an array of 1 to 1000 of them, received "running"$/,
      ],
      [null, /received null$/],
      [[], /^a batch must hold 1 to 1000 updates, received 0$/],
      [Array.from({ length: 1001 }, () => ({ type: 'status_update', status: 'ok' })), /received 1001$/],
      [[7], /^an update must be an object, received 7$/],
    ] as const) {
      const { status, answer } = await post(body);
      assert.equal(status, 400, JSON.stringify(body).slice(0, 40));
      assert.match(answer.issues[0]?.message ?? '', message);
    }
  });

  it('still accepts the bodies the spec shows', async () => {
    const hub = createAgentHub(quiet);
    const runtime = fakeRuntime(hub);
    for (const body of [
      { type: 'status_update', status: 'running', execution_status: { state: 'executing', task_id: 't', progress: 5 } },
      [
        { type: 'task_update', task_id: 't', status: 'running', progress: 60 },
        { type: 'task_update', task_id: 't', status: 'completed', progress: 100, result: { pages: 3 } },
      ],
    ]) {
      const response = await runtime.app.request('/agents/a/updates', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 202);
    }
    assert.equal(hub.stats().updates_published, 3);
    await hub.close();
  });
});

describe('publishStatus and publishTask name the wrong field', () => {
  /** The error a publish call rejects with, asserted to be an InvalidUpdateError. */
  const refusal = async (publish: Promise<void>): Promise<InvalidUpdateError> => {
    const error = await publish.then(
      () => assert.fail('the update was accepted'),
      (reason: unknown) => reason,
    );
    assert.ok(error instanceof InvalidUpdateError, String(error));
    return error;
  };

  for (const bad of CASES) {
    const { type, ...fields } = bad.body as { type: string } & Record<string, unknown>;
    // An unknown `type` has no publish method: the method is the type.
    if (type !== 'status_update' && type !== 'task_update') continue;
    it(`${bad.name}: an InvalidUpdateError with the field, what it must be, and its path`, async () => {
      const hub = createAgentHub(quiet);
      const publish =
        type === 'status_update'
          ? hub.publishStatus('research-7', fields as never)
          : hub.publishTask('research-7', fields as never);
      const error = await refusal(publish);
      assert.equal(error.issues.length, 1);
      const issue = error.issues[0];
      assert.equal(issue?.path?.map((item) => item.key).join('.'), bad.path);
      assert.match(issue?.message ?? '', bad.message);
      const located = bad.path.includes('.') ? ` (at ${bad.path})` : '';
      assert.equal(error.message, `invalid ${type.replace('_', ' ')}: ${issue?.message}${located}`);
      assert.equal(hub.stats().updates_published, 0);
      await hub.close();
    });
  }

  it('a non-object names what it had to be', async () => {
    const hub = createAgentHub(quiet);
    const error = await refusal(hub.publishTask('research-7', 'done' as never));
    assert.match(error.message, /^invalid task update: a task_update must be an object, received "done"$/);
    await hub.close();
  });
});
