/**
 * `hono-agent-ws watch` (cli/): its pure parts (arguments, the state it folds events into, the
 * lines and screens it draws), then the command itself from its sources (through tsx) against
 * the demo server over real sockets:
 *
 * - piped: plain lines for the status, task progress and results, a server restart on the same
 *   port shown as reconnecting, then the watch goes on; no escape codes;
 * - on a pseudo-terminal (`script` from util-linux): the screen is redrawn in place with cursor
 *   movement, and its last frame shows the progress bar at the published value; Ctrl-C ends it
 *   with exit code 0;
 * - a refused handshake (AUTH_TOKEN on the server, none given) exits 3 at once with the status
 *   printed; with the token (option or environment) it connects.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { EXIT, parseCommand } from '../cli/args.ts';
import {
  agentIdOf,
  clean,
  initialState,
  MAX_ENDED_TASKS,
  progressBar,
  redactUrl,
  redraw,
  reduce,
  screen,
  stripAnsi,
  type WatchEvent,
  type WatchState,
} from '../cli/render.ts';
import type { StatusUpdate, TaskUpdate } from '../plugin/schemas.ts';
import { ingest, node, ROOT, type ServerHandle, startServer, statsWith } from './helpers/server.ts';
import { sleep } from './helpers/wait.ts';

const EPOCH = 'epoch1';
const ESC = '\u001b';
const TIME = '2026-11-27T13:37:00.000Z';

const taskUpdate = (seq: number, fields: Partial<TaskUpdate> & { task_id: string }): TaskUpdate => ({
  type: 'task_update',
  agent_id: 'a1',
  status: 'running',
  progress: 0,
  timestamp: TIME,
  seq,
  epoch: EPOCH,
  ...fields,
});

const statusUpdate = (seq: number, fields: Partial<StatusUpdate> = {}): StatusUpdate => ({
  type: 'status_update',
  agent_id: 'a1',
  status: 'busy',
  timestamp: TIME,
  seq,
  epoch: EPOCH,
  ...fields,
});

/** Folds `events` into a fresh state; returns it with every line printed. */
function fold(events: WatchEvent[], state: WatchState = initialState('ws://h/agents/a1/ws')) {
  const lines: string[] = [];
  for (const event of events) {
    const reduction = reduce(state, event);
    state = reduction.state;
    lines.push(...reduction.lines);
  }
  return { state, lines };
}

const open = (reconnects = 0, recovered = false, seq = 0): WatchEvent => ({
  type: 'open',
  info: { recovered, epoch: EPOCH, seq, connectionId: 'c', reconnects },
});

describe('watch: arguments', () => {
  it('parses watch <url>, --token, AGENT_WS_TOKEN, --plain, --help, --version', () => {
    assert.deepEqual(parseCommand(['watch', 'ws://h:1/agents/a/ws'], {}), {
      kind: 'watch',
      url: 'ws://h:1/agents/a/ws',
      plain: false,
    });
    assert.deepEqual(parseCommand(['watch', 'http://h/agents/a/ws', '--token', 't', '--plain'], {}), {
      kind: 'watch',
      url: 'ws://h/agents/a/ws',
      token: 't',
      plain: true,
    });
    assert.equal(parseCommand(['watch', 'https://h/agents/a/ws'], {}).kind, 'watch');
    assert.deepEqual(parseCommand(['watch', 'wss://h/agents/a/ws'], { AGENT_WS_TOKEN: 'e' }), {
      kind: 'watch',
      url: 'wss://h/agents/a/ws',
      token: 'e',
      plain: false,
    });
    assert.equal(
      (parseCommand(['watch', 'ws://h/x', '--token=o'], { AGENT_WS_TOKEN: 'e' }) as { token: string }).token,
      'o',
    );
    assert.deepEqual(parseCommand(['--help'], {}), { kind: 'help' });
    assert.deepEqual(parseCommand(['watch', '-h'], {}), { kind: 'help' });
    assert.deepEqual(parseCommand(['--version'], {}), { kind: 'version' });
    for (const argv of [[], ['look'], ['watch'], ['watch', 'nope'], ['watch', 'ftp://h/'], ['watch', 'ws://h', 'x']])
      assert.equal(parseCommand(argv, {}).kind, 'usage', argv.join(' '));
    assert.equal(parseCommand(['watch', 'ws://h', '--bogus'], {}).kind, 'usage');
    assert.equal(parseCommand(['watch', 'ws://h', '--token'], {}).kind, 'usage');
    assert.equal((parseCommand(['watch', 'ws://h', '--retries', '3'], {}) as { retries: number }).retries, 3);
    assert.equal(parseCommand(['watch', 'ws://h', '--retries', '-1'], {}).kind, 'usage');
  });

  it('finds the agent id and hides a token in the URL', () => {
    assert.equal(agentIdOf('ws://h:1/agents/research-7/ws?x=1'), 'research-7');
    assert.equal(agentIdOf('ws://h:1/elsewhere'), undefined);
    assert.equal(redactUrl('ws://h/agents/a/ws?token=secret&x=1'), 'ws://h/agents/a/ws?token=***&x=1');
    assert.equal(initialState('ws://h/agents/a/ws?token=secret').url.includes('secret'), false);
  });
});

describe('watch: state and lines', () => {
  it('prints a line per change: connection, status, progress, the end with its result or error', () => {
    const { lines, state } = fold([
      { type: 'state', state: 'connecting' },
      open(),
      { type: 'snapshot', snapshot: { status: null, tasks: [], seq: 0, epoch: EPOCH } },
      {
        type: 'update',
        update: statusUpdate(1, { execution_status: { state: 'executing', task_id: 't1', progress: 10 } }),
      },
      { type: 'update', update: taskUpdate(2, { task_id: 't1', progress: 40, message: 'reading' }) },
      { type: 'update', update: taskUpdate(3, { task_id: 't1', progress: 40, message: 'reading' }) },
      {
        type: 'update',
        update: taskUpdate(4, { task_id: 't1', status: 'completed', progress: 100, result: { pages: 3 } }),
      },
      { type: 'update', update: taskUpdate(5, { task_id: 't2', status: 'failed', progress: 20, error: 'boom' }) },
      { type: 'close', info: { code: 1006, reason: '', willReconnect: true, delayMs: 500 } },
      { type: 'state', state: 'reconnecting' },
      open(1, true, 5),
      { type: 'snapshot', snapshot: { status: null, tasks: [], seq: 5, epoch: EPOCH } },
    ]);
    assert.deepEqual(lines, [
      `connected: agent a1, epoch ${EPOCH}, seq 0`,
      'status: busy (executing, t1, 10%)',
      'task t1: running 40% — reading',
      'task t1: completed 100% result {"pages":3}',
      'task t2: failed 20% error boom',
      'disconnected (code 1006), reconnecting in 0.5 s',
      'reconnected (reconnect 1): recovered, nothing lost',
    ]);
    // The recovered connection's snapshot did not wipe what the watcher had.
    assert.deepEqual([...state.tasks.keys()], ['t1', 't2']);
    assert.equal(state.reconnects, 1);
  });

  it('takes a snapshot as the truth unless recovered, and skips updates it already reflects', () => {
    const snapshot: WatchEvent = {
      type: 'snapshot',
      snapshot: {
        status: statusUpdate(3),
        tasks: [
          taskUpdate(2, { task_id: 't1', progress: 60 }),
          taskUpdate(3, { task_id: 't9', status: 'done', progress: 100 }),
        ],
        seq: 3,
        epoch: EPOCH,
      },
    };
    const first = fold([open(0, false, 3), snapshot]);
    assert.deepEqual(first.lines.slice(1), ['status: busy', 'task t1: running 60%', 'task t9: done 100%']);
    // A resume that repeats what the snapshot showed prints nothing; what is new prints.
    const resumed = fold(
      [
        { type: 'update', update: taskUpdate(2, { task_id: 't1', progress: 60 }), source: 'resume' },
        { type: 'update', update: taskUpdate(4, { task_id: 't1', progress: 70 }), source: 'resume' },
      ],
      first.state,
    );
    assert.deepEqual(resumed.lines, ['task t1: running 70%']);
    // History lost (another epoch): the new snapshot replaces everything.
    const lost = fold(
      [
        open(1, false, 0),
        { type: 'snapshot', snapshot: { status: null, tasks: [], seq: 0, epoch: 'epoch2' } },
        { type: 'update', update: { ...taskUpdate(1, { task_id: 't5', progress: 5 }), epoch: 'epoch2' } },
      ],
      resumed.state,
    );
    assert.match(lost.lines[0]!, /^reconnected \(reconnect 1\): history not recovered/);
    assert.deepEqual([...lost.state.tasks.keys()], ['t5']);
  });

  it('says why it gave up, and keeps at most MAX_ENDED_TASKS ended tasks', () => {
    assert.deepEqual(
      fold([{ type: 'fatal', error: { kind: 'handshake_refused', status: 401, code: 'unauthorized' } }]).lines,
      ['handshake refused: HTTP 401 (unauthorized)'],
    );
    assert.deepEqual(fold([{ type: 'fatal', error: { kind: 'retries_exhausted' } }]).lines, [
      'gave up: every reconnect attempt failed',
    ]);
    const events: WatchEvent[] = [open()];
    for (let n = 1; n <= MAX_ENDED_TASKS + 5; n++)
      events.push({ type: 'update', update: taskUpdate(n, { task_id: `t${n}`, status: 'done', progress: 100 }) });
    events.push({ type: 'update', update: taskUpdate(100, { task_id: 'live', progress: 1 }) });
    const { state } = fold(events);
    assert.equal(state.tasks.size, MAX_ENDED_TASKS + 1);
    assert.equal([...state.tasks.keys()][0], 't6');
  });

  it('keeps control characters out of the terminal', () => {
    assert.equal(clean('a\u001b[2Jb\nc\u0007\u009b'), 'a [2Jb c  ');
    const { lines } = fold([
      open(),
      { type: 'update', update: taskUpdate(1, { task_id: 't\u001b]0;x', message: 'm\r\n' }) },
    ]);
    assert.equal(lines.join('').includes('\u001b'), false);
    assert.equal(lines.join('').includes('\r'), false);
  });
});

describe('watch: screen', () => {
  it('draws a header and a bar per task, fitted to the terminal', () => {
    const { state } = fold([
      open(),
      { type: 'update', update: statusUpdate(1, { status: 'working' }) },
      { type: 'update', update: taskUpdate(2, { task_id: 'fetch', progress: 60, message: 'page 3 of 5' }) },
      {
        type: 'update',
        update: taskUpdate(3, { task_id: 'summarize', status: 'completed', progress: 100, result: { ok: true } }),
      },
      { type: 'update', update: taskUpdate(4, { task_id: 'x', status: 'failed', progress: 5, error: 'timeout' }) },
    ]);
    const lines = screen(state, { columns: 100, rows: 30 });
    assert.deepEqual(lines, [
      'agent a1 · status: working · open',
      'fetch      [############--------]   60%  running    page 3 of 5',
      'summarize  [####################]  100%  completed  result: {"ok":true}',
      'x          [#-------------------]    5%  failed     error: timeout',
    ]);
    for (const line of screen(state, { columns: 30, rows: 3 })) assert.ok(line.length <= 29, line);
    assert.match(screen(state, { columns: 100, rows: 3 })[1]!, /… 2 earlier tasks/);
    const reconnecting = fold(
      [
        { type: 'close', info: { code: 1001, reason: 'server shutting down', willReconnect: true, delayMs: 1200 } },
        { type: 'state', state: 'reconnecting' },
      ],
      state,
    ).state;
    assert.equal(
      screen(reconnecting, { columns: 100, rows: 30 })[0],
      'agent a1 · status: working · reconnecting in 1.2 s (code 1001)',
    );
    assert.equal(progressBar(33.4, 10), '[###-------]');
  });

  it('redraws in place: up to the first line, each line erased, the rest of the screen erased', () => {
    assert.equal(redraw(0, ['a', 'b']), '\u001b[2Ka\n\u001b[2Kb\n\u001b[J');
    assert.equal(redraw(2, ['c']), '\r\u001b[2A\u001b[2Kc\n\u001b[J');
    assert.equal(stripAnsi(redraw(2, ['c'])), '\rc\n');
  });
});

/** The CLI from its sources, as a child process. */
interface Cli {
  readonly child: ChildProcess;
  /** stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Waits until stdout matches `pattern`; fails with the output after `timeout`. */
  waitFor(pattern: RegExp, timeout?: number): Promise<void>;
  /** The exit code (`null` for a signal). */
  readonly exited: Promise<number | null>;
}

const CLI = [process.execPath, '--import', 'tsx', 'cli/index.ts'];

/** Runs `command` (argv) with its output piped; stdin a pipe, kept open. */
function run(command: string[], env: NodeJS.ProcessEnv = {}): Cli {
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, AGENT_WS_TOKEN: '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const waiter of waiters) waiter();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  running.add(child);
  void exited.then(() => running.delete(child));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: (pattern, timeout = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pattern.test(stripAnsi(out))) return;
          cleanup();
          resolve();
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${pattern} within ${timeout} ms; stdout:\n${out}\nstderr:\n${err}`));
        }, timeout);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Waits for the exit code, at most `timeout`. */
async function exitCode(cli: Cli, timeout = 10_000): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running after ${timeout} ms; stdout:\n${cli.stdout()}\nstderr:\n${cli.stderr()}`)),
      timeout,
    );
  });
  try {
    return await Promise.race([cli.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

const running = new Set<ChildProcess>();
const servers = new Set<ServerHandle>();
after(async () => {
  for (const child of running) child.kill('SIGKILL');
  await Promise.all([...servers].map((server) => server.stop()));
});

async function server(env: Record<string, string> = {}): Promise<ServerHandle> {
  const handle = await startServer(node, env);
  servers.add(handle);
  return handle;
}

const posted = async (handle: ServerHandle, agent: string, body: unknown, headers: Record<string, string> = {}) =>
  assert.equal((await ingest(handle, agent, body, headers)).status, 202);

describe('watch: the command', { timeout: 120_000 }, () => {
  it('answers --help, --version and a usage error', async () => {
    const help = spawnSync(CLI[0]!, [...CLI.slice(1), '--help'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Usage: hono-agent-ws watch <ws-url>/);
    assert.match(help.stdout, /3 {2}the server refused the handshake/);
    const version = spawnSync(CLI[0]!, [...CLI.slice(1), '--version'], { cwd: ROOT, encoding: 'utf8' });
    const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { version: string };
    assert.equal(version.stdout.trim(), pkg.version);
    const usage = spawnSync(CLI[0]!, [...CLI.slice(1), 'watch'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(usage.status, EXIT.USAGE);
    assert.match(usage.stderr, /missing <ws-url>/);
  });

  it('piped: plain lines for status, progress and results; a server restart shows as reconnecting', async () => {
    let demo = await server();
    const cli = run([...CLI, 'watch', `${demo.ws}/agents/watch-pipe/ws`]);
    await cli.waitFor(/^connected: agent watch-pipe, epoch \S+, seq 0$/m);
    await posted(demo, 'watch-pipe', {
      type: 'status_update',
      status: 'busy',
      execution_status: { state: 'executing', task_id: 't1', progress: 30 },
    });
    await cli.waitFor(/^status: busy \(executing, t1, 30%\)$/m);
    await posted(demo, 'watch-pipe', {
      type: 'task_update',
      task_id: 't1',
      status: 'running',
      progress: 30,
      message: 'reading',
    });
    await cli.waitFor(/^task t1: running 30% — reading$/m);
    await posted(demo, 'watch-pipe', [
      { type: 'task_update', task_id: 't1', status: 'running', progress: 60 },
      { type: 'task_update', task_id: 't1', status: 'completed', progress: 100, result: { pages: 3 } },
      { type: 'task_update', task_id: 't2', status: 'failed', progress: 10, error: 'quota exceeded' },
    ]);
    await cli.waitFor(/^task t1: completed 100% result \{"pages":3\}$/m);
    await cli.waitFor(/^task t2: failed 10% error quota exceeded$/m);

    const port = demo.port;
    assert.equal(await demo.stop(), 0);
    servers.delete(demo);
    await cli.waitFor(/^disconnected \(code 1001 server shutting down\), reconnecting in [\d.]+ s$/m);
    demo = await server({ PORT: String(port) });
    await cli.waitFor(
      /^reconnected \(reconnect 1\): history not recovered \(epoch \S+\), state from the snapshot$/m,
      20_000,
    );
    await posted(demo, 'watch-pipe', { type: 'task_update', task_id: 't3', status: 'running', progress: 50 });
    await cli.waitFor(/^task t3: running 50%$/m);

    cli.child.kill('SIGINT');
    assert.equal(await exitCode(cli), 0);
    assert.equal(cli.stdout().includes('\u001b'), false, 'no escape codes when piped');
    assert.equal(cli.stderr(), '');
    assert.match(cli.stdout(), /^connecting to ws:\/\/127\.0\.0\.1:\d+\/agents\/watch-pipe\/ws$/m);
    // Every progress step is a line of its own, in order.
    const t1 = cli
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('task t1:'));
    assert.deepEqual(t1, [
      'task t1: running 30% — reading',
      'task t1: running 60%',
      'task t1: completed 100% result {"pages":3}',
    ]);
  });

  const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
  it('on a pseudo-terminal: redrawn in place, the last frame shows the bar at the published value', {
    skip: !hasScript && 'no script(1)',
  }, async () => {
    const demo = await server();
    const url = `${demo.ws}/agents/watch-tty/ws`;
    // A 100x30 terminal; exec, so Ctrl-C reaches node itself.
    const inner = `stty cols 100 rows 30; exec ${CLI.map((word) => `'${word}'`).join(' ')} watch '${url}'`;
    const cli = run(['script', '-qfec', inner, '/dev/null']);
    await cli.waitFor(/agent watch-tty · status: unknown · open/);
    await posted(demo, 'watch-tty', { type: 'status_update', status: 'busy' });
    await posted(demo, 'watch-tty', { type: 'task_update', task_id: 'fetch', status: 'running', progress: 20 });
    await posted(demo, 'watch-tty', {
      type: 'task_update',
      task_id: 'fetch',
      status: 'running',
      progress: 60,
      message: 'page 3',
    });
    await posted(demo, 'watch-tty', {
      type: 'task_update',
      task_id: 'done-1',
      status: 'completed',
      progress: 100,
      result: 'ok',
    });
    await cli.waitFor(/done-1 +\[#{20}\] +100% +completed +result: "ok"/);
    // A pause before Ctrl-C, as a user's: the close is then drawn as a frame of its own, past
    // the redraw throttle (FRAME_MS), and nothing shows that but the output this test reads.
    await sleep(200);
    cli.child.stdin!.write('\u0003'); // Ctrl-C, through the terminal
    assert.equal(await exitCode(cli), 0);

    const output = cli.stdout();
    const cursorUp = new RegExp(`${ESC}\\[\\d+A`);
    assert.match(output, cursorUp, 'moves the cursor up to redraw');
    assert.ok(output.includes(`${ESC}[2K`), 'erases lines it redraws');
    const frames = output.split(cursorUp);
    assert.ok(frames.length >= 3, `redrawn ${frames.length - 1} times`);
    const last = stripAnsi(frames.at(-1)!)
      .split(/\r?\n/)
      .map((line) => line.replace(/^\r/, '').trimEnd())
      .filter(Boolean);
    assert.deepEqual(last, [
      // Ctrl-C closed the client: the last frame says so.
      'agent watch-tty · status: busy · closed',
      'fetch   [############--------]   60%  running    page 3',
      'done-1  [####################]  100%  completed  result: "ok"',
    ]);
    assert.ok(output.endsWith('\u001b[?25h') || output.includes('\u001b[?25h'), 'shows the cursor again');
  });

  it('gives up with exit code 4 after --retries failed attempts in a row', async () => {
    // A port nothing listens on: a server started and stopped leaves one.
    const gone = await server();
    await gone.stop();
    const cli = run([...CLI, 'watch', `${gone.ws}/agents/watch-gone/ws`, '--retries', '2']);
    assert.equal(await exitCode(cli, 15_000), EXIT.RETRIES_EXHAUSTED);
    assert.match(cli.stdout(), /^connection failed \(code 1006\), reconnecting in [\d.]+ s$/m);
    assert.match(cli.stderr(), /gave up: every reconnect attempt failed/);
  });

  it('a refused handshake exits 3 at once with the status; with the token it connects', async () => {
    const demo = await server({ AUTH_TOKEN: 's3cret' });
    const started = Date.now();
    const refused = run([...CLI, 'watch', `${demo.ws}/agents/watch-auth/ws`]);
    assert.equal(await exitCode(refused), EXIT.REFUSED);
    assert.ok(Date.now() - started < 8000, 'quickly');
    assert.match(refused.stderr(), /handshake refused: HTTP 401 \(unauthorized\)/);
    const stats = await statsWith(demo, { authorization: 'Bearer s3cret' });
    // One attempt: `ws` hands the client the refusal's error code, so no retry and no probe.
    assert.equal(stats.errors_by_kind.unauthorized, 1);

    const wrong = run([...CLI, 'watch', `${demo.ws}/agents/watch-auth/ws`, '--token', 'nope']);
    assert.equal(await exitCode(wrong), EXIT.REFUSED);

    const auth = { authorization: 'Bearer s3cret' };
    for (const [progress, args, env] of [
      [1, ['--token', 's3cret'], {}],
      [2, [], { AGENT_WS_TOKEN: 's3cret' }],
    ] as const) {
      const cli = run([...CLI, 'watch', `${demo.ws}/agents/watch-auth/ws`, ...args], env);
      await cli.waitFor(/^connected: agent watch-auth/m);
      await posted(demo, 'watch-auth', { type: 'task_update', task_id: 'a', status: 'running', progress }, auth);
      await cli.waitFor(new RegExp(`^task a: running ${progress}%$`, 'm'));
      cli.child.kill('SIGTERM');
      assert.equal(await exitCode(cli), 0);
      assert.equal(cli.stdout().includes('s3cret'), false, 'the token is not printed');
    }
  });
});
