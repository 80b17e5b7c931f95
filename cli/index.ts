#!/usr/bin/env node
/**
 * `hono-agent-ws watch <ws-url>`: a terminal watcher for one agent, on the package's client.
 *
 * On a terminal it draws a header (agent, status, connection, reconnects) and one line per task
 * with a progress bar, redrawn in place; piped, it prints one plain line per event and no
 * escape codes. `--help` lists the options and the exit codes (cli/args.ts).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connectAgent, retryAfterStatus, type WebSocketConstructor } from '../client/index.ts';
import { type Command, EXIT, HELP, parseCommand } from './args.ts';
import {
  CLEAR_SCREEN,
  type FatalInfo,
  fatalHint,
  fatalText,
  HIDE_CURSOR,
  initialState,
  redraw,
  reduce,
  SHOW_CURSOR,
  screen,
  type WatchEvent,
  type WatchState,
} from './render.ts';

/** The package's version: package.json is one level up from cli/, two from dist/cli/. */
function version(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'hono-agent-ws' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next
    }
  }
  return 'unknown';
}

/**
 * The WebSocket constructor: the `ws` package when it can be loaded (its error on a refused
 * handshake names the HTTP status, so the client stops at once), else the runtime's own (Node
 * 22 and later), whose refusals the CLI reads itself (`probeHandshake`).
 */
async function webSocketConstructor(): Promise<{ WebSocket: unknown; standard: boolean } | undefined> {
  try {
    const ws = await import('ws');
    return { WebSocket: ws.WebSocket ?? ws.default, standard: false };
  } catch {
    const WebSocket = (globalThis as { WebSocket?: unknown }).WebSocket;
    return WebSocket ? { WebSocket, standard: true } : undefined;
  }
}

/** Where the events go: plain lines, or a screen redrawn in place. */
interface View {
  show(state: WatchState, lines: readonly string[]): void;
  /** Draws what is pending, and leaves the terminal as it was. */
  end(state: WatchState): void;
}

/** Piped output: one line per change, as it happens. */
function plainView(out: NodeJS.WriteStream): View {
  return {
    show: (_state, lines) => {
      if (lines.length > 0) out.write(`${lines.join('\n')}\n`);
    },
    end: () => {},
  };
}

/** The least time between two redraws, so a busy agent does not flood the terminal. */
const FRAME_MS = 50;

/** A terminal: the whole screen redrawn in place, at most once per `FRAME_MS`. */
function ttyView(out: NodeJS.WriteStream): View {
  let drawn = 0;
  let lastDraw = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let current: WatchState | undefined;
  const draw = () => {
    timer = undefined;
    if (!current) return;
    const lines = screen(current, { columns: out.columns || 80, rows: out.rows || 24 });
    out.write(redraw(drawn, lines));
    drawn = lines.length;
    lastDraw = Date.now();
  };
  const schedule = () => {
    if (timer) return;
    const wait = lastDraw + FRAME_MS - Date.now();
    if (wait <= 0) draw();
    else timer = setTimeout(draw, wait);
  };
  // Lines drawn at the old width may have wrapped (or been reflowed): start over at the top.
  const resized = () => {
    out.write(CLEAR_SCREEN);
    drawn = 0;
    schedule();
  };
  out.write(HIDE_CURSOR);
  out.on('resize', resized);
  return {
    show: (state) => {
      current = state;
      schedule();
    },
    end: (state) => {
      clearTimeout(timer);
      current = state;
      draw();
      out.off('resize', resized);
      out.write(SHOW_CURSOR);
    },
  };
}

/** What the server answers an upgrade request of the watched URL. */
interface HandshakeAnswer {
  status: number;
  /** Its `X-Agent-WS-Error` header. */
  code?: string;
}

/**
 * Asks the server what it answers a WebSocket upgrade of the watched URL, with the same token:
 * one upgrade request, read and closed (accepted: `101`). `undefined` when it cannot tell.
 *
 * The client reads the refusal itself (from `ws`'s response, else with one `fetch`); this is the
 * fallback for when it could not: no `fetch`, or the probe failed.
 */
async function probeHandshake(command: Extract<Command, { kind: 'watch' }>): Promise<HandshakeAnswer | undefined> {
  const url = new URL(command.url);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  if (command.token !== undefined) url.searchParams.set('token', command.token);
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve) => {
    const req = request(url, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
      },
      timeout: 3000,
    });
    const done = (answer?: HandshakeAnswer) => {
      resolve(answer);
      req.destroy();
    };
    req.on('response', (response) => {
      response.resume();
      const code = [response.headers['x-agent-ws-error']].flat()[0];
      done({ status: response.statusCode ?? 0, ...(code ? { code } : {}) });
    });
    req.on('upgrade', (_response, socket) => {
      socket.destroy();
      done({ status: 101 });
    });
    req.on('timeout', () => done());
    req.on('error', () => done());
    req.end();
  });
}

/** Watches until stopped; resolves with the exit code. */
async function watch(command: Extract<Command, { kind: 'watch' }>): Promise<number> {
  const implementation = await webSocketConstructor();
  if (!implementation) {
    process.stderr.write(
      'hono-agent-ws: no WebSocket implementation: install the ws package (npm install ws) or use Node 22 or later\n',
    );
    return EXIT.ERROR;
  }
  const tty = !command.plain && process.stdout.isTTY === true;
  const view = tty ? ttyView(process.stdout) : plainView(process.stdout);
  let state = initialState(command.url);
  if (tty) process.on('exit', () => process.stdout.write(SHOW_CURSOR));
  view.show(state, [`connecting to ${state.url}`]);

  const handle = (event: WatchEvent) => {
    const reduction = reduce(state, event);
    state = reduction.state;
    // A fatal error is written once, to stderr, when the watch ends.
    view.show(state, event.type === 'fatal' ? [] : reduction.lines);
  };

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      view.end(state);
      if (state.fatal) {
        const hint = fatalHint(state.fatal, command.token !== undefined);
        process.stderr.write(`hono-agent-ws: ${fatalText(state.fatal)}\n${hint ? `hono-agent-ws: ${hint}\n` : ''}`);
      }
      resolve(code);
    };
    const client = connectAgent(command.url, {
      WebSocket: implementation.WebSocket as WebSocketConstructor,
      ...(command.token !== undefined ? { token: command.token } : {}),
      ...(command.retries !== undefined ? { reconnect: { maxRetries: command.retries } } : {}),
    });
    const stop = () => {
      client.close();
      finish(EXIT.OK);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    // The reader went away (`| head`): nothing more to show.
    process.stdout.on('error', stop);

    /** Set once the watch failed for good; the exit code waits for the refusal's details. */
    let failed = false;
    const fail = (error: FatalInfo) => {
      handle({ type: 'fatal', error });
      finish(exitCode(state));
    };
    client.on('state', (connection) => {
      handle({ type: 'state', state: connection });
      // A fatal error may follow the close in the same turn: it names the exit code then.
      if (connection === 'closed') setTimeout(() => failed || finish(EXIT.OK), 0);
    });
    client.on('open', (info) => handle({ type: 'open', info }));
    client.on('snapshot', (snapshot) => handle({ type: 'snapshot', snapshot }));
    client.on('update', (update, meta) => handle({ type: 'update', update, source: meta?.source }));
    client.on('close', (info) => {
      const attemptFailed = !state.online;
      handle({ type: 'close', info });
      // The standard WebSocket hides why an attempt failed: ask, and stop on a refusal.
      if (!implementation.standard || !attemptFailed || !info.willReconnect) return;
      void probeHandshake(command).then((answer) => {
        if (done || failed || !answer || answer.status === 101 || retryAfterStatus(answer.status)) return;
        failed = true;
        client.close();
        fail({ kind: 'handshake_refused', ...answer });
      });
    });
    client.on('fatal', (error) => {
      if (failed) return;
      failed = true;
      if (error.kind !== 'handshake_refused' || error.code !== undefined) return fail(error);
      // The client could not read the error code (its probe failed): ask once more.
      void probeHandshake(command).then((answer) =>
        fail(answer?.code && answer.status === error.status ? { ...error, code: answer.code } : error),
      );
    });
  });
}

/** The exit code for a watch that ended by itself. */
function exitCode(state: WatchState): number {
  if (state.fatal?.kind === 'handshake_refused') return EXIT.REFUSED;
  if (state.fatal?.kind === 'retries_exhausted') return EXIT.RETRIES_EXHAUSTED;
  return EXIT.OK;
}

/** Runs the command line; resolves with the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  const command = parseCommand(argv, process.env);
  switch (command.kind) {
    case 'help':
      process.stdout.write(HELP);
      return EXIT.OK;
    case 'version':
      process.stdout.write(`${version()}\n`);
      return EXIT.OK;
    case 'usage':
      process.stderr.write(`hono-agent-ws: ${command.message}\nRun hono-agent-ws --help for the options.\n`);
      return EXIT.USAGE;
    case 'watch':
      return watch(command);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`hono-agent-ws: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT.ERROR);
  },
);
