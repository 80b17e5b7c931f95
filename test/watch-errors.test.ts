/**
 * The watcher's errors, as a user meets them: each written once, to stderr (never also on
 * stdout), and a 401 says how to pass the token.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { EXIT } from '../cli/args.ts';
import { connectionText, fatalHint, initialState, reduce, screen } from '../cli/render.ts';
import { node, ROOT, type ServerHandle, startServer } from './helpers/server.ts';

/** What one run of the CLI left behind. */
interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from its sources with `args` until it exits on its own (at most 20 s). */
const cli = (args: string[]): Promise<Finished> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/index.ts', ...args],
      { cwd: ROOT, env: { ...process.env, AGENT_WS_TOKEN: '' }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: unknown }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });

/** How many times `text` occurs in `output`. */
const occurrences = (output: string, text: string): number => output.split(text).length - 1;

const servers = new Set<ServerHandle>();
after(async () => {
  await Promise.all([...servers].map((server) => server.stop()));
});

describe('watch: errors', { timeout: 120_000 }, () => {
  it('a 401 is written once, to stderr, with how to pass the token', async () => {
    const demo = await startServer(node, { AUTH_TOKEN: 's3cret' });
    servers.add(demo);
    const url = `${demo.ws}/agents/watch-401/ws`;

    const bare = await cli(['watch', url]);
    assert.equal(bare.code, EXIT.REFUSED);
    assert.equal(occurrences(bare.stderr, 'handshake refused: HTTP 401 (unauthorized)'), 1, bare.stderr);
    assert.match(bare.stderr, /pass --token <token> \(or set AGENT_WS_TOKEN\)/);
    assert.equal(occurrences(bare.stdout, 'handshake refused'), 0, `stdout: ${bare.stdout}`);
    assert.match(bare.stdout, /^connecting to ws:/);

    const wrong = await cli(['watch', url, '--token', 'nope']);
    assert.equal(wrong.code, EXIT.REFUSED);
    assert.equal(occurrences(wrong.stderr, 'handshake refused: HTTP 401 (unauthorized)'), 1, wrong.stderr);
    assert.match(wrong.stderr, /refused this token: check the value of --token/);
    assert.equal(wrong.stderr.includes('nope'), false, 'the token is not printed');
    assert.equal(occurrences(wrong.stdout, 'handshake refused'), 0);
  });

  it('giving up after --retries is written once, to stderr', async () => {
    const gone = await startServer(node);
    await gone.stop();
    const run = await cli(['watch', `${gone.ws}/agents/watch-gone/ws`, '--retries', '1']);
    assert.equal(run.code, EXIT.RETRIES_EXHAUSTED);
    assert.equal(occurrences(run.stderr, 'gave up: every reconnect attempt failed'), 1, run.stderr);
    assert.equal(occurrences(run.stdout, 'gave up'), 0, `stdout: ${run.stdout}`);
    assert.equal(fatalHint({ kind: 'retries_exhausted' }, false), undefined, 'no token hint for a network failure');
  });

  it('on a terminal the header says closed: the error itself is left to stderr', () => {
    const { state } = reduce(initialState('ws://127.0.0.1:1/agents/a/ws'), {
      type: 'fatal',
      error: { kind: 'handshake_refused', status: 403, code: 'forbidden' },
    });
    assert.equal(connectionText(state), 'closed');
    assert.equal(
      screen(state, { columns: 80, rows: 24 }).some((line) => line.includes('refused')),
      false,
    );
    assert.equal(fatalHint({ kind: 'handshake_refused', status: 403, code: 'forbidden' }, true), undefined);
  });
});
