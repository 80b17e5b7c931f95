/**
 * The command line of `hono-agent-ws`, parsed without side effects (tested on its own).
 *
 * @module
 */
import { parseArgs } from 'node:util';

/** Exit codes, as `--help` documents them. */
export const EXIT = {
  /** Stopped by SIGINT/SIGTERM, or the connection ended normally. */
  OK: 0,
  /** Anything unexpected (no WebSocket implementation, a crash). */
  ERROR: 1,
  /** Bad arguments. */
  USAGE: 2,
  /** The server refused the WebSocket handshake (bad token, forbidden, bad agent id, ...). */
  REFUSED: 3,
  /** Every reconnect attempt failed. */
  RETRIES_EXHAUSTED: 4,
} as const;

export const HELP = `Usage: hono-agent-ws watch <ws-url> [options]

Watches one agent of a hono-agent-ws server: its status, one line per task with a progress bar
(redrawn in place on a terminal, one plain line per event when piped), and the connection,
reconnecting with backoff and resuming where it left off.

  <ws-url>          the agent's WebSocket URL, ws://HOST:PORT/agents/AGENT_ID/ws
                    (http:// and https:// are taken as ws:// and wss://)

Options:
  --token <token>   credential for a server with AUTH_TOKEN (also AGENT_WS_TOKEN in the
                    environment); sent as ?token=
  --retries <n>     give up (exit 4) after n failed attempts in a row; default: never
  --plain           plain lines even on a terminal
  -h, --help        this text
  -v, --version     the package version

Exit codes:
  0  stopped (Ctrl-C, SIGTERM) or the connection ended normally
  1  unexpected error (e.g. no WebSocket implementation: Node 20 needs the ws package)
  2  usage error
  3  the server refused the handshake (the HTTP status and error code are printed)
  4  every reconnect attempt failed
`;

/** What the command line asks for. */
export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'usage'; message: string }
  | { kind: 'watch'; url: string; token?: string; retries?: number; plain: boolean };

/**
 * Parses `argv` (without `node` and the script) with `env` for `AGENT_WS_TOKEN`.
 */
export function parseCommand(argv: readonly string[], env: Record<string, string | undefined>): Command {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv);
  } catch (error) {
    return { kind: 'usage', message: (error as Error).message };
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const [command, url, ...rest] = positionals;
  if (command === undefined) return { kind: 'usage', message: 'missing command: watch <ws-url>' };
  if (command !== 'watch') return { kind: 'usage', message: `unknown command: ${command}` };
  if (url === undefined) return { kind: 'usage', message: 'missing <ws-url>' };
  if (rest.length > 0) return { kind: 'usage', message: `unexpected argument: ${rest[0]}` };
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    return { kind: 'usage', message: `not a URL: ${url}` };
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[parsedUrl.protocol];
  if (!scheme) return { kind: 'usage', message: `not a ws:// or wss:// URL: ${url}` };
  parsedUrl.protocol = scheme;
  const token = values.token ?? (env.AGENT_WS_TOKEN || undefined);
  if (values.token === '') return { kind: 'usage', message: '--token needs a value' };
  if (values.retries !== undefined && !/^\d+$/.test(values.retries))
    return { kind: 'usage', message: `--retries needs a whole number, not ${values.retries}` };
  return {
    kind: 'watch',
    url: parsedUrl.toString(),
    ...(token !== undefined ? { token } : {}),
    ...(values.retries !== undefined ? { retries: Number(values.retries) } : {}),
    plain: !!values.plain,
  };
}

function parseOptions(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      token: { type: 'string' },
      retries: { type: 'string' },
      plain: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
}
