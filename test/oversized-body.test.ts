/**
 * An ingest body over `maxIngestBytes` gets its 413 and the JSON error every time, on every
 * runtime, from a client that writes the whole body before it reads (the server answers early,
 * then reads and discards the rest: adapters/linger.ts); and a client that never stops sending,
 * or dribbles, is cut within `LINGER_LIMITS` (16 MiB, 5 s).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LINGER_LIMITS } from '../adapters/linger.ts';
import { answerOf, connect, head, type SentAnswer, sendAll } from './helpers/raw-http.ts';
import { bun, deno, node, type Runtime, type ServerHandle, startServer } from './helpers/server.ts';

/** Posts per runtime and connection kind. */
const POSTS = 40;
/** Over the default `maxIngestBytes` (1 MiB) twice. */
const oversized = Buffer.from(
  JSON.stringify({ type: 'task_update', task_id: 't', status: 'running', progress: 1, message: 'x'.repeat(2 << 20) }),
);
/** Generous, for a shared, loaded machine: the bounds proper are LINGER_LIMITS. */
const SLACK_MS = 15_000;

const ingestHead = (length: number, connection?: 'close') =>
  head('POST /agents/big/updates HTTP/1.1', {
    'Content-Type': 'application/json',
    'Content-Length': String(length),
    ...(connection ? { Connection: connection } : {}),
  });

/** A chunked request head (no declared length), and `body` in 64 KiB chunks with the last. */
const chunkedHead = () =>
  head('POST /agents/big/updates HTTP/1.1', {
    'Content-Type': 'application/json',
    'Transfer-Encoding': 'chunked',
    Connection: 'close',
  });
function chunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += 64 * 1024) {
    const part = body.subarray(at, at + 64 * 1024);
    parts.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
  }
  return Buffer.concat([...parts, Buffer.from('0\r\n\r\n')]);
}

/** Asserts `answer` is the 413 with the hub's JSON error, whatever the framing. */
function assert413(answer: SentAnswer, what: string): void {
  assert.equal(
    answer.status,
    413,
    `${what}: no 413 (${answer.closedBy} after ${answer.ms} ms): ${answer.text.slice(0, 200)}`,
  );
  assert.match(answer.body, /"error":"payload_too_large"/, `${what}: no JSON error`);
}

for (const runtime of [node, deno, bun] as Runtime[]) {
  describe(`oversized ingest bodies on ${runtime.name}`, { concurrency: false, timeout: 300_000 }, () => {
    let server: ServerHandle;
    before(async () => {
      server = await startServer(runtime);
    });
    after(() => server?.stop());

    for (const connection of ['close', undefined] as const) {
      it(`answers ${POSTS} posts of 2 MB written whole with 413 and the JSON error (${connection ?? 'keep-alive'})`, async () => {
        const failures: string[] = [];
        for (let post = 0; post < POSTS; post++) {
          const answer = await sendAll(server.port, ingestHead(oversized.length, connection), oversized);
          if (answer.status !== 413 || !answer.body.includes('"error":"payload_too_large"'))
            failures.push(
              `post ${post}: ${answer.status} ${answer.closedBy} ${JSON.stringify(answer.text.slice(0, 80))}`,
            );
          else assert.equal(answer.sent, oversized.length, 'the whole body was written');
        }
        assert.deepEqual(failures, []);
      });
    }

    it(`answers ${POSTS} chunked posts of 2 MB (no declared length) with 413 and the JSON error`, async () => {
      const body = chunked(oversized);
      const failures: string[] = [];
      for (let post = 0; post < POSTS; post++) {
        const answer = await sendAll(server.port, chunkedHead(), body);
        if (answer.status !== 413 || !answer.body.includes('"error":"payload_too_large"'))
          failures.push(
            `post ${post}: ${answer.status} ${answer.closedBy} ${JSON.stringify(answer.text.slice(0, 80))}`,
          );
      }
      assert.deepEqual(failures, []);
    });

    it('still accepts a chunked body within the limit', async () => {
      const update = Buffer.from(JSON.stringify({ type: 'task_update', task_id: 't', status: 'running', progress: 2 }));
      const answer = await sendAll(server.port, chunkedHead(), chunked(update));
      assert.equal(answer.status, 202, answer.text);
      assert.match(answer.body, /"accepted":1/);
    });

    it('answers 413, then cuts a client that never stops sending past the byte bound', async () => {
      // 100 MB declared (under Bun's own 128 MiB ceiling, which refuses before the app).
      const declared = 100_000_000;
      const answer = await sendAll(server.port, ingestHead(declared, 'close'), declared, 60_000);
      assert413(answer, 'flood');
      assert.equal(answer.closedBy, 'server');
      // What the kernel buffers hold on both sides comes on top of the bound.
      assert.ok(answer.sent < LINGER_LIMITS.maxBytes + 32 * 1024 * 1024, `${answer.sent} bytes sent before the cut`);
      assert.ok(answer.ms < LINGER_LIMITS.maxMs + SLACK_MS, `cut after ${answer.ms} ms`);
    });

    // Deno gives a handler no way to end a connection whose request body it has read: erroring
    // the answer's stream cuts a flood (above), not a connection that stays quiet.
    it(
      'answers 413, then cuts a client that dribbles its body past the time bound',
      runtime === deno ? { todo: 'Deno keeps such a connection open (adapters/linger.ts)' } : {},
      async () => {
        const socket = await connect(server.port);
        const answer = answerOf(socket, LINGER_LIMITS.maxMs + SLACK_MS);
        socket.write(ingestHead(oversized.length, 'close'), 'latin1');
        const dribble = setInterval(() => {
          if (!socket.destroyed) socket.write('x'.repeat(100));
        }, 100);
        try {
          const seen = await answer;
          assert413({ ...seen, sent: 0 }, 'dribble');
          assert.equal(seen.closedBy, 'server', `still open after ${seen.ms} ms`);
          assert.ok(seen.ms >= LINGER_LIMITS.maxMs - 500, `cut after ${seen.ms} ms, before the time bound`);
        } finally {
          clearInterval(dribble);
          socket.destroy();
        }
      },
    );

    it('still serves after the hostile clients', async () => {
      const answer = await sendAll(server.port, ingestHead(oversized.length, 'close'), oversized);
      assert413(answer, 'after');
      assert.equal(server.process.exitCode, null, 'the server is alive');
    });
  });
}
